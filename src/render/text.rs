//! Text helpers of the renderer: UTF-16 lengths (channel limits count UTF-16 units, as
//! JavaScript does), chunking that keeps code fences balanced, streaming-text merging, channel
//! text sanitisation and base64url for button tokens.

/// Length in UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Byte index of the longest prefix of `text` that is at most `units` UTF-16 units.
fn byte_index_at_utf16(text: &str, units: usize) -> usize {
    let mut count = 0;
    for (index, c) in text.char_indices() {
        if count + c.len_utf16() > units {
            return index;
        }
        count += c.len_utf16();
    }
    text.len()
}

fn is_fence_line(line: &str) -> bool {
    line.trim_start().starts_with("```")
}

/// `chunkText`: pieces of at most `max` UTF-16 units, split after a blank line, a line end or a
/// space past 65 % of the window when possible, else at a grapheme cluster boundary (an emoji
/// sequence or an accented letter is never torn apart). Nothing is dropped at a split: outside
/// code fences the pieces joined are the input. An open code fence is closed at the end of a
/// chunk and reopened at the start of the next.
pub(super) fn chunk_text(input: &str, max: usize) -> Vec<String> {
    let max = max.max(100);
    if utf16_len(input) <= max {
        return vec![input.to_owned()];
    }
    let mut chunks = Vec::new();
    let mut rest = input;
    let mut in_fence = false;
    while !rest.is_empty() {
        let prefix = if in_fence { "```\n" } else { "" };
        if utf16_len(prefix) + utf16_len(rest) <= max {
            chunks.push(format!("{prefix}{rest}"));
            break;
        }
        // Room for the separator kept at the end and a closing fence.
        let window = max - prefix.len() - 5;
        let end = crate::util::graphemes::boundary_at_or_before(rest, byte_index_at_utf16(rest, window));
        let floor = byte_index_at_utf16(rest, (max as f64 * 0.65) as usize);
        let slice = &rest[..end];
        // Just past the separator, so it stays with the text before it.
        let split =
            [slice.rfind("\n\n").map(|i| i + 2), slice.rfind('\n').map(|i| i + 1), slice.rfind(' ').map(|i| i + 1)]
                .into_iter()
                .flatten()
                .find(|&i| i > floor && i > 0)
                .unwrap_or(end);
        let piece = &rest[..split];
        let fences = piece.lines().filter(|l| is_fence_line(l)).count();
        let open_after = in_fence ^ (fences % 2 == 1);
        if !piece.trim().is_empty() || !open_after {
            let mut chunk = format!("{prefix}{piece}");
            if open_after {
                if !chunk.ends_with('\n') {
                    chunk.push('\n');
                }
                chunk.push_str("```");
            }
            chunks.push(chunk);
        }
        rest = &rest[split..];
        if open_after {
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        }
        in_fence = open_after;
    }
    chunks
}

/// `mergeStreamingText`: snapshots replace, deltas append, overlaps are not repeated.
pub fn merge_streaming_text(existing: &str, incoming: &str) -> String {
    if incoming.starts_with(existing) {
        return incoming.to_owned();
    }
    if existing.ends_with(incoming) {
        return existing.to_owned();
    }
    let overlap = (1..=incoming.len().min(existing.len()))
        .rev()
        .filter(|&n| incoming.is_char_boundary(n) && existing.is_char_boundary(existing.len() - n))
        .find(|&n| existing.ends_with(&incoming[..n]))
        .unwrap_or(0);
    format!("{existing}{}", &incoming[overlap..])
}

/// `sanitizeChannelText`: secrets and home directories redacted, control characters (but tab,
/// LF, CR) removed, and the result cut to `max` with `\n...[truncated]`.
pub fn sanitize(text: &str, max: usize) -> String {
    let redacted = crate::config::redact::redact_text(text);
    let cleaned: String = redacted.chars().filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')).collect();
    truncate(&cleaned, max)
}

/// A file name as chat text may show it: what [`sanitize`] redacts, and also the value of a
/// secret-named `key=value` part however short it is (`report-token=secret.txt` becomes
/// `report-token=[redacted].txt`): a file name is a single word, so the length rule that spares
/// ordinary `key=value` prose does not protect anything here. The extension stays.
pub fn redact_file_name(name: &str) -> String {
    let (stem, extension) = match name.rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => name.split_at(dot),
        None => (name, ""),
    };
    let mut out = String::with_capacity(name.len());
    let mut rest = stem;
    while let Some(equals) = rest.find('=') {
        let key = &rest[..equals];
        let key_tail = key.rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')).next().unwrap_or(key);
        let value_end = rest[equals + 1..].find(['&', ' ', '+', ',', ';']).map_or(rest.len(), |i| equals + 1 + i);
        out.push_str(&rest[..=equals]);
        if crate::config::redact::is_secret_key(key_tail) && value_end > equals + 1 {
            out.push_str("[redacted]");
        } else {
            out.push_str(&rest[equals + 1..value_end]);
        }
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out.push_str(extension);
    crate::config::redact::redact_text(&out)
}

/// Cuts to `max` UTF-16 units with a `\n...[truncated]` marker.
pub fn truncate(text: &str, max: usize) -> String {
    if utf16_len(text) <= max {
        return text.to_owned();
    }
    let keep = byte_index_at_utf16(text, max.saturating_sub(15));
    format!("{}\n...[truncated]", text[..keep].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunks_split_at_line_ends_and_keep_fences_balanced() {
        let text = format!("{}\n\n{}", "a".repeat(90), "b".repeat(90));
        assert_eq!(chunk_text(&text, 100), vec![format!("{}\n\n", "a".repeat(90)), "b".repeat(90)]);
        let code = format!("intro\n```\n{}\n```\nafter", "let x = 1;\n".repeat(30));
        let chunks = chunk_text(&code, 120);
        assert!(chunks.len() > 2);
        for chunk in &chunks {
            assert!(utf16_len(chunk) <= 120, "{chunk:?}");
            assert_eq!(chunk.lines().filter(|l| is_fence_line(l)).count() % 2, 0, "balanced: {chunk:?}");
        }
        assert_eq!(chunk_text("short", 4096), ["short"]);
    }

    #[test]
    fn streaming_merge() {
        assert_eq!(merge_streaming_text("Hello", "Hello world"), "Hello world");
        assert_eq!(merge_streaming_text("Hello world", "world"), "Hello world");
        assert_eq!(merge_streaming_text("Hello wo", "world!"), "Hello world!");
        assert_eq!(merge_streaming_text("abc", "xyz"), "abcxyz");
        assert_eq!(merge_streaming_text("", "x"), "x");
    }

    #[test]
    fn sanitising_and_truncating() {
        assert_eq!(
            sanitize("tool failed: token=abcdefghijklmnopqrstu in /home/ana/x\u{7}", 512),
            "tool failed: token=[redacted] in /home/[redacted]"
        );
        let long = "word ".repeat(200);
        let cut = truncate(&long, 100);
        assert!(utf16_len(&cut) <= 100 && cut.ends_with("\n...[truncated]"));
    }

    #[test]
    fn splits_keep_whitespace_and_grapheme_clusters() {
        let text = "word ".repeat(60);
        let chunks = chunk_text(&text, 100);
        assert!(chunks.len() > 2);
        assert_eq!(chunks.concat(), text, "no space lost at a split");
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
        let emoji = family.repeat(40);
        let chunks = chunk_text(&emoji, 100);
        assert_eq!(chunks.concat(), emoji);
        for chunk in &chunks {
            assert!(utf16_len(chunk) <= 100);
            assert!(chunk.starts_with('\u{1F468}') && chunk.ends_with('\u{1F466}'), "a family stays whole: {chunk:?}");
        }
        let flags = "\u{1F1E9}\u{1F1EA}".repeat(30);
        for chunk in chunk_text(&flags, 100) {
            assert_eq!(chunk.chars().count() % 2, 0, "flags stay pairs");
        }
    }

    #[test]
    fn file_names_are_redacted_like_text() {
        assert_eq!(redact_file_name("report-token=secret.txt"), "report-token=[redacted].txt");
        assert_eq!(redact_file_name("x_api_key=k1&page=2.csv"), "x_api_key=[redacted]&page=2.csv");
        assert_eq!(redact_file_name("size=10.txt"), "size=10.txt", "not a secret name");
        assert_eq!(redact_file_name("ops@example.com.txt"), "[redacted-email]");
        assert_eq!(redact_file_name("plain report.pdf"), "plain report.pdf");
    }

    proptest! {
        #[test]
        fn chunks_fit_and_keep_the_words(words in proptest::collection::vec("[a-zé😀]{1,30}", 1..200), max in 100usize..400) {
            let text = words.join(" ");
            let chunks = chunk_text(&text, max);
            for chunk in &chunks {
                prop_assert!(utf16_len(chunk) <= max);
            }
            prop_assert_eq!(chunks.concat(), text);
        }
    }
}
