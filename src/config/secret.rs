//! A value that must never reach a log line, a panic message or an operator response.

use std::fmt;

/// A configured secret (token, signing secret, password). `Debug` and `Display` print
/// `[redacted]`; the only way to the plaintext is [`Secret::expose`], called at the one place
/// that puts the value on the wire or compares it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext. Call it only where the secret is used, never to build a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in UTF-16 code units, as upstream's `[redacted:<n> chars]` fingerprint counts it.
    pub fn utf16_len(&self) -> usize {
        self.0.encode_utf16().count()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Serialised configuration (`check-config --print`, `/diagnostics`) shows the same marker.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("occ_abc_supersecret");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "occ_abc_supersecret");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"[redacted]\"");
        assert_eq!(Secret::new("é😀").utf16_len(), 3);
    }
}
