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

/// `chunkText`: pieces of at most `max` UTF-16 units, split at a blank line, a line end or a space
/// past 65 % of the window when possible; an open code fence is closed at the end of a chunk and
/// reopened at the start of the next.
pub fn chunk_text(input: &str, max: usize) -> Vec<String> {
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
        let window = max - prefix.len() - 4;
        let end = byte_index_at_utf16(rest, window).max(rest.chars().next().map_or(1, char::len_utf8));
        let floor = byte_index_at_utf16(rest, (max as f64 * 0.65) as usize);
        let slice = &rest[..end];
        let split = [slice.rfind("\n\n"), slice.rfind('\n'), slice.rfind(' ')]
            .into_iter()
            .flatten()
            .find(|&i| i >= floor && i > 0)
            .unwrap_or(end);
        let piece = rest[..split].trim_end();
        let fences = piece.lines().filter(|l| is_fence_line(l)).count();
        let open_after = in_fence ^ (fences % 2 == 1);
        if !piece.is_empty() {
            let mut chunk = format!("{prefix}{piece}");
            if open_after {
                chunk.push_str("\n```");
            }
            chunks.push(chunk);
        }
        rest = &rest[split..];
        rest = if open_after { rest.strip_prefix('\n').unwrap_or(rest) } else { rest.trim_start() };
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
        assert_eq!(chunk_text(&text, 100), vec!["a".repeat(90), "b".repeat(90)]);
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

    proptest! {
        #[test]
        fn chunks_fit_and_keep_the_words(words in proptest::collection::vec("[a-zé😀]{1,30}", 1..200), max in 100usize..400) {
            let text = words.join(" ");
            let chunks = chunk_text(&text, max);
            for chunk in &chunks {
                prop_assert!(utf16_len(chunk) <= max);
            }
            prop_assert_eq!(chunks.join(" ").split_whitespace().collect::<Vec<_>>().concat(), text.split_whitespace().collect::<Vec<_>>().concat());
        }
    }
}
