//! The integration tests, one binary (it links once): the daemon as a child process, the gateway
//! in process against the dev Cloud and fake platform servers, the channel conformance battery,
//! and the packaging checks. Everything talks to loopback only.
//!
//! Tests that need tools a developer machine may lack (podman, kubectl, lintian, dpkg, Chromium,
//! Prometheus, the cross builds) are `#[ignore]`d with the reason; `.ci/run` installs the tools
//! and runs them with `cargo test --test gateway -- --ignored`.
//! Kept apart: `tests/layers.rs` (reads `src/`, not the binary) and `tests/http2.rs` (needs the
//! `http2` feature, which this binary would otherwise have to be built twice for).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

#[path = "../support/mod.rs"]
mod support;
#[path = "../tooling/mod.rs"]
mod tooling;

mod attack;
mod cli_stop;
mod config_golden;
mod conformance;
mod container;
mod daemon;
mod delivery_pacing;
mod deploy;
mod devcloud_control;
mod doctor;
mod email;
mod gateway_loop;
mod half_open;
mod hostile;
mod inbound_logs;
mod inbound_receipt;
mod monitoring;
mod packaging;
mod pi_gen;
mod probe;
mod slack;
mod status_page;
mod stream_budget;
mod telegram;
mod telegram_logs;
mod webhook;
