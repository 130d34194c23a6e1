//! The fake provider's settings: a local stand-in channel for demos and tests.

/// The fake provider has no settings of its own (and no secrets); what it needs comes from the
/// server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeSettings {
    /// Largest file it accepts: `server.maxRequestBodyBytes`, as upstream's fake provider uses the
    /// body cap for `maxFileBytes` (the global body setting).
    pub max_file_bytes: usize,
}
