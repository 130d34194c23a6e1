//! The local CLI channel's settings.

/// Empty on purpose: upstream accepts and ignores any `credentials` or `settings` on a CLI entry,
/// and how the CLI writes its output is the caller's choice (JSON lines for the daemon, text for
/// the demo), not configuration. The struct is the place a future CLI setting goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliSettings {}
