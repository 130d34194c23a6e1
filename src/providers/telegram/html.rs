//! Telegram HTML: escaping plain text for `parse_mode: HTML`, and chunking HTML at Telegram's
//! 4,096-unit limit without splitting a tag, an entity or a character (so never a UTF-16
//! surrogate pair), and only where no tag is open, so every chunk is valid on its own and the
//! chunks re-join to the input.

/// Escapes `&`, `<` and `>` (all Telegram's HTML mode requires outside attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
    out
}

/// Reverses [`escape`] (and the numeric and `&quot;` entities), for the plain-text fallback.
pub fn unescape(html: &str) -> String {
    html.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// Splits `html` into pieces of at most `max` UTF-16 units. A split happens only at a safe point:
/// outside tags and entities, between characters, with no tag open; a line end or space is
/// preferred in the last third of the window. A single unsplittable run longer than `max` (a huge
/// tag) becomes its own piece.
pub fn chunk_html(html: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    if html.encode_utf16().count() <= max {
        return vec![html.to_owned()];
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    // Safe split points seen in the current chunk: (byte index, is a preferred break).
    let mut last_safe: Option<usize> = None;
    let mut last_break: Option<usize> = None;
    let mut units = 0;
    let mut depth = 0i32;
    let mut in_tag = false;
    let mut in_entity = false;
    let mut tag_is_close = false;
    let mut tag_self_closing = false;
    let mut previous = '\0';
    for (index, c) in html.char_indices() {
        let safe_here = !in_tag && !in_entity && depth == 0;
        if safe_here && index > start {
            last_safe = Some(index);
            if matches!(previous, '\n' | ' ') && units * 3 >= max * 2 {
                last_break = Some(index);
            }
        }
        if units + c.len_utf16() > max && index > start {
            let cut = last_break.or(last_safe).filter(|&i| i > start);
            if let Some(cut) = cut {
                chunks.push(html[start..cut].to_owned());
                units = html[cut..index].encode_utf16().count();
                start = cut;
                last_safe = (index > start && safe_here).then_some(index);
                last_break = None;
            }
        }
        units += c.len_utf16();
        match c {
            '<' if !in_tag => {
                in_tag = true;
                tag_is_close = false;
                tag_self_closing = false;
            }
            '/' if in_tag && previous == '<' => tag_is_close = true,
            '/' if in_tag => tag_self_closing = true,
            '>' if in_tag => {
                in_tag = false;
                if tag_is_close {
                    depth -= 1;
                } else if !tag_self_closing {
                    depth += 1;
                }
            }
            '&' if !in_tag => in_entity = true,
            ';' if in_entity => in_entity = false,
            c if in_entity && !(c.is_ascii_alphanumeric() || c == '#') => in_entity = false,
            _ => {}
        }
        if !in_tag && c != '/' {
            tag_self_closing = false;
        }
        previous = c;
    }
    chunks.push(html[start..].to_owned());
    chunks.retain(|c| !c.is_empty());
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(unescape(&escape("<b>&amp;</b>")), "<b>&amp;</b>");
    }

    #[test]
    fn chunks_respect_entities_tags_and_lines() {
        let html = format!("{}\n{}", "x".repeat(3000), "&amp;".repeat(500));
        for chunk in chunk_html(&html, 4096) {
            assert!(chunk.encode_utf16().count() <= 4096);
            assert!(!chunk.ends_with('&') && !chunk.starts_with("amp;"), "an entity was split");
        }
        let tagged = format!("<b>{}</b> {}", "y".repeat(50), "z".repeat(200));
        let chunks = chunk_html(&tagged, 100);
        assert!(chunks[0].starts_with("<b>") && chunks[0].contains("</b>"), "{chunks:?}");
        assert_eq!(chunks.concat(), tagged);
    }

    fn valid(html: &str) -> bool {
        // Balanced tags, no open tag or entity at the end.
        let (mut depth, mut in_tag, mut close, mut in_entity, mut previous) = (0i32, false, false, false, '\0');
        for c in html.chars() {
            match c {
                '<' => {
                    in_tag = true;
                    close = false;
                }
                '/' if in_tag && previous == '<' => close = true,
                '>' if in_tag => {
                    in_tag = false;
                    depth += if close { -1 } else { 1 };
                }
                '&' => in_entity = true,
                ';' => in_entity = false,
                _ => {}
            }
            if depth < 0 {
                return false;
            }
            previous = c;
        }
        depth == 0 && !in_tag && !in_entity
    }

    proptest! {
        #[test]
        fn chunks_rejoin_are_valid_and_fit(text in "[a-z <>&😀é\n]{0,600}", bold in proptest::collection::vec(0usize..600, 0..4), max in 20usize..200) {
            // Escaped text with a few bold spans: the shape Telegram messages take.
            let escaped = escape(&text);
            let mut html = String::new();
            let mut words = escaped.split(' ').peekable();
            let mut index = 0;
            while let Some(word) = words.next() {
                if bold.contains(&index) && !word.is_empty() {
                    html.push_str(&format!("<b>{word}</b>"));
                } else {
                    html.push_str(word);
                }
                if words.peek().is_some() {
                    html.push(' ');
                }
                index += 1;
            }
            let chunks = chunk_html(&html, max);
            prop_assert_eq!(chunks.concat(), html.clone());
            for chunk in &chunks {
                prop_assert!(valid(chunk), "invalid chunk {:?}", chunk);
                let longest_word = html.split(' ').map(|w| w.encode_utf16().count()).max().unwrap_or(0);
                prop_assert!(chunk.encode_utf16().count() <= max.max(longest_word + 7), "chunk too long {:?}", chunk);
            }
        }
    }
}
