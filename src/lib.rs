//! open-cowork-gateway: the Open Cowork Cloud Channel Gateway as one small appliance binary.
//!
//! Module map (one concern per module):
//!
//! | Module | Concern |
//! |---|---|
//! | `main.rs` | process entry: builds the current_thread runtime, maps errors to exit codes |
//! | [`cli`] | command-line parsing: `run`, `check-config`, `version`, flags; usage errors |
//! | [`config`] | typed configuration: env + env file, JSON layers, provider list, fail-closed checks, secrets, redaction |
//! | [`http`] | operator/webhook HTTP server: accept loop, router, operator routes, admin auth, webhook pipeline, rate limiter, client IP |
//! | [`cloud`] | the Cloud-facing interfaces the HTTP surface calls (delivery operations) and their record types |
//! | [`providers`] | the provider registry: configured channel providers, their state and webhook dispatch |
//! | [`runtime`] | the running gateway: shared state and readiness conditions |
//! | [`metrics`] | counters and the Prometheus text writer |
//! | [`shutdown`] | the drain signal and the "all in-flight work done" wait |
//! | [`signals`] | SIGTERM/SIGINT through signal-hook into the runtime |
//! | [`notify`] | sd_notify READY/STOPPING/WATCHDOG |
//! | [`logging`] | tracing setup: journald or compact stderr, rate-limited warnings |
//! | [`setup`] | `setup`: writes an appliance env file that passes `check-config` |
//! | [`time`] | epoch milliseconds and ISO-8601 timestamps as Cloud writes them |
//! | [`daemon`] | `run`: wires everything, binds, serves, drains, exits |

pub mod cli;
pub mod cloud;
pub mod config;
pub mod daemon;
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

/// The crate version, as `version` and `build_info` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The target triple this binary was built for.
pub const TARGET: &str = env!("OPEN_COWORK_GATEWAY_TARGET");
