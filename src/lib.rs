//! open-cowork-gateway: the Open Cowork Cloud Channel Gateway as one small appliance binary.
//!
//! # Data flow
//!
//! ```text
//!  channels (a poller | POST /webhooks/<id> | CLI stdin)       Cloud (HTTPS JSON + 2 SSE streams)
//!     │ verify + map → inbound messages                            ▲                │
//!     ▼                                                            │                ▼
//!  channel::Ingress (bounded) ──► runtime::inbound: claim → identity → bind → prompt   cloud::streams
//!    (webhooks answered at receipt: journaled, or claimed on arrival)    (status on a watch)
//!                                        runtime::sessions (ordered per session) ◄───┤ session events
//!                                        runtime::deliveries (lanes, retries, ack) ◄──┘ deliveries
//!                                              │ render → outbound messages
//!                                              ▼
//!                                        dyn Channel: send / edit / buttons / file ──► the platform
//! ```
//!
//! # Layers (imports only point down; `tests/layers.rs` enforces it)
//!
//! `util`, `time`, `shutdown`, `notify`, `signals` · `net` · `config` · `logging`, `metrics` ·
//! `cloud`, `channel` · `providers`, `render` · `runtime` · `http` · `app`, `devcloud`, `setup`, `doctor` ·
//! `cli` (and the binary, `main.rs`). Nothing in `runtime`, `http`, `cloud`, `render`, `channel` or
//! `app` names a channel kind: a kind lives in `providers/<kind>/` and its entry in the table
//! of kinds (`providers/table_of_kinds.rs`); the first kinds keep their settings types in `config/providers/<kind>.rs`.
//! The table is handed down, never read upwards: `config::resolve` takes it as an argument (the
//! binary, `setup` and the tests pass `providers::KINDS`), a resolved `ProviderKind` keeps
//! the table it came from, and redaction learns the kinds' token prefixes from it.
//!
//! # Module map (one concern per module)
//!
//! The linked modules are the crate's public face: what the binary (`main.rs`, a crate of its
//! own), the integration tests (a whole gateway through `app`, the dev Cloud, counters, the fake
//! channel) and their fake platforms use. The others are the crate's own, tested from inside.
//!
//! | Module | Concern |
//! |---|---|
//! | `main.rs` | process entry: builds the current_thread runtime, runs a command, maps outcomes to exit codes |
//! | [`cli`] | command-line parsing: `run`, `demo`, `setup`, `check-config`, `doctor`, `dev-cloud`, `probe`, `version` |
//! | [`app`] | the wiring: builds every piece, hands each its narrow handles, owns the tasks and the shutdown order |
//! | [`config`] | typed configuration: env + env file, JSON layers, provider list, typed settings per channel kind (`config/providers/`), fail-closed checks, secrets, redaction |
//! | [`channel`] | the [`channel::Channel`] trait, its data types, receiving/sending health, the ingress queue, the registry |
//! | [`providers`] | the channels this build implements, one folder each (`cli/`, `fake/`, `telegram/`, `slack/`, `email/`, `webhook/` for the generic webhook and the bridges), the table of kinds (`table_of_kinds.rs`), the short button ids they share (`buttons.rs`) and the factory that builds them |
//! | `cloud` | the Cloud client (`client.rs` calls, `requests.rs` bodies, `transport.rs` HTTP), SSE parser, resubscribing streams, Cloud's clock as measured (`clock.rs`) |
//! | `render` | session events into plans of channel messages, decided without Cloud or the channel (streaming text, tools, approvals, questions, artifacts; `runtime::plan_executor` carries them out), delivery text, and the one cut of text for a channel's limits (`split.rs`) |
//! | `runtime` | the pipelines: ingress consumer, webhook receipts and the inbound journal, interactions, session streams, deliveries, readiness, state file |
//! | `http` | the HTTP surface: accept loop, route table, operator routes, admin auth, webhook ingress, rate limiter, client IP |
//! | [`metrics`] | the registry (`mod.rs`), Prometheus text (`prometheus.rs`), the `/diagnostics` JSON view (`json.rs`) |
//! | [`net`] | the shared HTTPS client (rustls on ring), the outbound URL policy with DNS pinning (`url_policy`), the one retry policy (`backoff`), the one `Retry-After` parser (`retry_after`) |
//! | `util` | base64, percent-encoding, random ids, constant-time compare, durable (fsync) state files, grapheme cluster boundaries |
//! | `shutdown` | the drain signal and the "all in-flight work done" wait |
//! | [`signals`] | SIGTERM/SIGINT through signal-hook into the runtime |
//! | [`notify`] | sd_notify READY/STOPPING/WATCHDOG |
//! | [`logging`] | tracing setup: journald or compact stderr, rate-limited warnings |
//! | [`setup`] | `setup`: writes an appliance env file that passes `check-config` |
//! | [`doctor`] | `doctor`: checks the install end to end (state directory, port, Cloud, clock, each channel through its provider), one ✓/✗ line each |
//! | [`time`] | epoch milliseconds and ISO-8601 timestamps as Cloud writes them |
//! | `devcloud` | (feature `devcloud`) the in-memory Cloud for the demo and the tests: `routes/` per resource, `sse.rs`, `store.rs` |
//!
//! # Where to add …
//!
//! - **A channel kind**: a folder `providers/<kind>/` with a type implementing
//!   [`channel::Channel`] (only the methods the platform has; background work is started in
//!   `start` and ended in `stop`; inbound messages go to the `Ingress` in its context) and a
//!   `kind.rs` describing the kind once (`config::providers::kind::KindParts`: env shortcuts,
//!   settings check, secret prefixes, dev Cloud binding, `setup` flags, constructor), and a
//!   `conformance.rs` for the channel conformance battery (its fake platform); plus one entry in
//!   the table `providers/table_of_kinds.rs` (name, cargo feature, environment trigger), which
//!   also declares the folder, and the cargo feature in `Cargo.toml`. Nothing in the core, the
//!   configuration, `setup`, the dev Cloud or the tests changes.
//! - **An operator endpoint**: a `Route` in `http/router.rs`, its handler in `http/operator.rs`
//!   (reading only the handles in `http::state::HttpState`), one line in `http/server.rs`'s dispatch.
//! - **A Cloud call**: its request body in `cloud/requests.rs`, one typed function on
//!   `cloud::client::CloudClient`, and the route in the dev Cloud (`devcloud/routes/<resource>.rs`)
//!   so the tests can exercise it.

#![forbid(unsafe_code)]

/// Declares a module the crate keeps to itself, except in a cargo-fuzz build (`--cfg fuzzing`),
/// where the targets in `fuzz/` call the parsers inside it directly.
macro_rules! fuzzed_mod {
    ($name:ident) => {
        #[cfg(fuzzing)]
        pub mod $name;
        #[cfg(not(fuzzing))]
        pub(crate) mod $name;
    };
}

// The public face: what the binary (`main.rs`, a crate of its own) and the integration tests use.
pub mod app;
pub mod channel;
pub mod cli;
pub mod config;
#[cfg(feature = "devcloud")]
pub mod devcloud;
pub mod doctor;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod providers;
pub mod setup;
pub mod signals;
pub mod time;

// The crate's own: the tests drive them through a whole gateway (`app`) or as unit tests.
fuzzed_mod!(cloud);
fuzzed_mod!(http);
mod render;
mod runtime;
mod shutdown;
fuzzed_mod!(util);

/// What the console macros (`outln!`, `out!`, `errln!`) call, from whichever crate expands them
/// (the binary too); not an interface of its own.
#[doc(hidden)]
pub use util::console;

/// The crate version, as `version` and `build_info` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The target triple this binary was built for.
pub const TARGET: &str = env!("OPEN_COWORK_GATEWAY_TARGET");
