//! open-cowork-gateway: the Open Cowork Cloud Channel Gateway as one small appliance binary.
//!
//! Module map (one concern per module):
//!
//! | Module | Concern |
//! |---|---|
//! | `main.rs` | process entry: builds the current_thread runtime, runs a command, maps outcomes to exit codes |
//! | [`cli`] | command-line parsing: `run`, `demo`, `setup`, `check-config`, `dev-cloud`, `version`; usage errors |
//! | [`config`] | typed configuration: env + env file, JSON layers, provider list, fail-closed checks, secrets, redaction |
//! | [`http`] | the HTTP server: accept loop, route table, operator routes, admin auth, webhook pipeline, rate limiter, client IP |
//! | [`net`] | the shared HTTPS client (rustls on ring) and backoff with jitter |
//! | [`cloud`] | the Cloud client: one function per call, the SSE parser, the two resubscribing streams, errors, records |
//! | [`providers`] | the provider registry and the channels: `fake`, `cli`, `telegram` |
//! | [`render`] | session events and deliveries into channel messages: streaming text, tools, approvals, questions, artifacts |
//! | [`runtime`] | the running gateway: shared state, readiness, inbound claims, interactions, session streams, deliveries, state file |
//! | [`metrics`] | counters and the Prometheus text writer |
//! | [`shutdown`] | the drain signal and the "all in-flight work done" wait |
//! | [`signals`] | SIGTERM/SIGINT through signal-hook into the runtime |
//! | [`notify`] | sd_notify READY/STOPPING/WATCHDOG |
//! | [`logging`] | tracing setup: journald or compact stderr, rate-limited warnings |
//! | [`setup`] | `setup`: writes an appliance env file that passes `check-config` |
//! | [`time`] | epoch milliseconds and ISO-8601 timestamps as Cloud writes them |
//! | [`daemon`] | `run`: starts providers, the Cloud subscription and the listener; drains and stops |
//! | `devcloud` | (feature `devcloud`) the in-memory Cloud for the demo and the tests |

#![forbid(unsafe_code)]

pub mod app;
pub mod channel;
pub mod cli;
pub mod cloud;
pub mod config;
#[cfg(feature = "devcloud")]
pub mod devcloud;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod providers;
pub mod render;
pub mod runtime;
pub mod setup;
pub mod shutdown;
pub mod signals;
pub mod time;
pub mod util;

/// The crate version, as `version` and `build_info` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The target triple this binary was built for.
pub const TARGET: &str = env!("OPEN_COWORK_GATEWAY_TARGET");
