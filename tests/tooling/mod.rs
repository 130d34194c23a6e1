//! Helpers for the packaging tests that need outside tools (podman, kubectl, lintian, dpkg) or
//! build artifacts (the cross builds, the .deb files). Such a test is `#[ignore]`d, so a plain
//! `cargo test` leaves it out and says so; run with `--ignored` (as .ci/run does) it fails on a
//! missing tool, naming it, rather than passing without having checked anything.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// True when `tool --version`-style `probe_args` runs successfully.
pub fn has_tool(tool: &str, probe_args: &[&str]) -> bool {
    Command::new(tool).args(probe_args).output().is_ok_and(|o| o.status.success())
}

/// Fails the test, saying what is missing and how to get it, unless `present`.
pub fn require(present: bool, what: &str, how: &str) {
    assert!(present, "{what} is missing: {how}");
}

/// A release binary of the repository's cross builds (`./target`, scripts/cross-build).
pub fn cross_binary(triple: &str) -> PathBuf {
    Path::new(ROOT).join("target").join(triple).join("release/open-cowork-gateway")
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
