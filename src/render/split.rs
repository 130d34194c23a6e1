//! The one place that decides how text is cut into messages for a channel: by the channel's
//! [`Capabilities`], in UTF-16 units (what the platforms count), at grapheme cluster boundaries,
//! with code fences kept balanced (see [`super::text::chunk_text`]). Session replies and Cloud
//! deliveries both come through here.
//!
//! A channel whose wire format is not plain text may still cut again, as a last safety net: one
//! that sends HTML cuts it by what it shows (a tag counts nothing, an entity the one character it
//! stands for). Escaping plain text leaves what is shown unchanged, so a piece cut here never
//! exceeds that channel's limit and passes through its cut whole; that cut only matters for text
//! the runtime sends without coming here (a short error reply, say).

use crate::channel::Capabilities;

use super::text::{chunk_text, utf16_len};

/// `text` as the messages the channel takes: each within its `max_text_length` (never below
/// 100 units), joined they are the text. Pieces may be blank; whether to send those is the
/// caller's decision.
pub fn split(capabilities: &Capabilities, text: &str) -> Vec<String> {
    chunk_text(text, capabilities.max_text_length)
}

/// Whether `text` fits one message of the channel.
pub fn fits(capabilities: &Capabilities, text: &str) -> bool {
    utf16_len(text) <= capabilities.max_text_length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_limit_decides_the_pieces() {
        let text = "word ".repeat(100);
        let pieces = split(&Capabilities::text_only(200), &text);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| utf16_len(p) <= 200));
        assert_eq!(pieces.concat(), text);
        assert_eq!(split(&Capabilities::text_only(4096), &text), std::slice::from_ref(&text));
        assert!(fits(&Capabilities::text_only(500), &text) && !fits(&Capabilities::text_only(499), &text));
    }
}
