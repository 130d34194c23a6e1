//! Telegram HTML (`parse_mode: HTML`, plain text escaped by
//! [`escape_text`](crate::util::markup::escape_text)): chunking it at Telegram's 4,096-character
//! limit, and undoing the escape for the plain-text fallback.
//!
//! Telegram applies that limit after entity parsing: it counts the visible text in UTF-16 units, so
//! a tag counts 0 and an entity counts as the one character it stands for (`&amp;` is 1,
//! `&#128512;` is 2, a surrogate pair). Counting the raw HTML instead would split an escaped reply
//! into nearly twice the messages. A chunk never splits a tag, an entity or a character (so never a
//! surrogate pair), and is cut only where no tag is open, so every chunk is valid on its own and
//! the chunks re-join to the input.

/// Reverses [`escape_text`](crate::util::markup::escape_text) (and the numeric and `&quot;`
/// entities), for the plain-text fallback.
pub fn unescape(html: &str) -> String {
    html.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// Splits `html` into pieces whose visible text (what Telegram counts: tags 0, an entity its decoded
/// character) is at most `max` UTF-16 units. A split happens only at a safe point: outside tags and
/// entities, between characters, with no tag open; a line end or space is preferred in the last
/// third of the window. A single unsplittable run longer than `max` (text inside one long tag pair,
/// say) becomes its own piece.
pub fn chunk_html(html: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    // Visible units from `start` up to `at`.
    let mut units = 0;
    // Safe split points in the current chunk, with the visible units before them: any safe point,
    // and one right after a line end or space late enough in the window.
    let mut last_safe: Option<(usize, usize)> = None;
    let mut last_break: Option<(usize, usize)> = None;
    // Open tags; a stray closing tag must not make every later point unsafe, hence saturating.
    let mut depth = 0usize;
    let mut at = 0;
    while at < html.len() {
        let atom = Atom::at(html, at);
        // Between grapheme clusters only: a ZWJ emoji sequence or a flag is never torn apart.
        let safe = depth == 0 && crate::util::graphemes::is_boundary(html, at);
        let after_space = html[..at].ends_with(['\n', ' ']);
        if safe && at > start {
            last_safe = Some((at, units));
            if after_space && units * 3 >= max * 2 {
                last_break = Some((at, units));
            }
        }
        if units + atom.units > max {
            // With no safe point yet the chunk keeps growing: it is an unsplittable run and ends at
            // the next safe point, where this check fires again.
            if let Some((cut, before)) = last_break.or(last_safe) {
                chunks.push(html[start..cut].to_owned());
                start = cut;
                units -= before;
                // What is left is under a third of the window, too early for a preferred break.
                last_safe = (safe && at > start).then_some((at, units));
                last_break = None;
            }
        }
        units += atom.units;
        depth = match atom.tag {
            Some(Tag::Open) => depth + 1,
            Some(Tag::Close) => depth.saturating_sub(1),
            Some(Tag::SelfClosing) | None => depth,
        };
        at = atom.end;
    }
    // Never empty unless the input is, which stays one (empty) piece as before.
    chunks.push(html[start..].to_owned());
    chunks
}

/// The kind of a tag, for tracking whether one is open.
enum Tag {
    Open,
    Close,
    SelfClosing,
}

/// One indivisible piece of HTML: a tag, an entity or a character.
struct Atom {
    /// Byte index just past the piece.
    end: usize,
    /// UTF-16 units Telegram shows for it.
    units: usize,
    tag: Option<Tag>,
}

impl Atom {
    /// The piece starting at byte `at`, which must be a character boundary before the end.
    fn at(html: &str, at: usize) -> Atom {
        let rest = &html[at..];
        if rest.starts_with('<') {
            let Some(close) = rest.find('>') else {
                // An unterminated tag runs to the end; Telegram would not hide it, so count it.
                return Atom { end: html.len(), units: rest.encode_utf16().count(), tag: None };
            };
            let inner = &rest[1..close];
            let tag = if inner.starts_with('/') {
                Tag::Close
            } else if inner.ends_with('/') {
                Tag::SelfClosing
            } else {
                Tag::Open
            };
            return Atom { end: at + close + 1, units: 0, tag: Some(tag) };
        }
        if let Some(after) = rest.strip_prefix('&') {
            // The name or number runs over ASCII letters, digits and `#`, then an optional `;`.
            let name = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'#').count();
            let len = 1 + name + usize::from(after[name..].starts_with(';'));
            let token = &rest[..len];
            // Anything not decoded here counts as its raw text, which is never less than what
            // Telegram shows (it shows an unknown entity literally).
            let units = entity_units(token).unwrap_or(len);
            return Atom { end: at + len, units, tag: None };
        }
        // `at` is before the end, so there is a character; NUL stands in only to avoid a panic path.
        let c = rest.chars().next().unwrap_or('\0');
        Atom { end: at + c.len_utf8(), units: c.len_utf16(), tag: None }
    }
}

/// The UTF-16 length of the character a complete entity stands for: the four named ones Telegram
/// supports, or a decimal (`&#N;`) or hexadecimal (`&#xH;`) reference Telegram decodes. Telegram
/// shows a reference it refuses (zero, U+10FFFF or above, ten or more characters before the `;`)
/// as written, so those must count raw or a chunk could be longer than it looks.
fn entity_units(token: &str) -> Option<usize> {
    let name = token.strip_prefix('&')?.strip_suffix(';')?;
    let c = match name {
        "lt" | "gt" | "amp" | "quot" => return Some(1),
        _ => {
            let number = name.strip_prefix('#').filter(|n| n.len() <= 7)?;
            let code = match number.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse::<u32>().ok()?,
            };
            char::from_u32(code).filter(|&c| c != '\0' && c < '\u{10FFFF}')?
        }
    };
    Some(c.len_utf16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::markup::escape_text;
    use proptest::prelude::*;

    #[test]
    fn chunks_never_tear_an_emoji_sequence() {
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
        let text = family.repeat(10);
        let chunks = chunk_html(&text, 30);
        assert_eq!(chunks.concat(), text);
        for chunk in &chunks {
            assert!(chunk.starts_with('\u{1F468}') && chunk.ends_with('\u{1F466}'), "{chunk:?}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_text("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(unescape(&escape_text("<b>&amp;</b>")), "<b>&amp;</b>");
    }

    /// What Telegram counts, worked out independently of the chunker: strip the tags, decode the
    /// entities the escape writes, count UTF-16 units.
    fn visible(html: &str) -> usize {
        let mut text = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        unescape(&text).encode_utf16().count()
    }

    #[test]
    fn chunks_respect_entities_tags_and_lines() {
        let html = format!("{}\n{}", "x".repeat(3000), "&amp;".repeat(1500));
        let chunks = chunk_html(&html, 4096);
        // 4,501 visible units: the line end is the preferred break.
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert!(chunks[0].ends_with('\n'));
        for chunk in &chunks {
            assert!(visible(chunk) <= 4096);
            assert!(!chunk.ends_with('&') && !chunk.starts_with("amp;"), "an entity was split");
        }
        assert_eq!(chunks.concat(), html);
        let tagged = format!("<b>{}</b> {}", "y".repeat(50), "z".repeat(200));
        let chunks = chunk_html(&tagged, 100);
        assert!(chunks[0].starts_with("<b>") && chunks[0].contains("</b>"), "{chunks:?}");
        assert_eq!(chunks.concat(), tagged);
    }

    #[test]
    fn tags_count_nothing_and_entities_count_their_character() {
        // 10 visible units in 57 bytes: one piece at 10.
        let html = format!("<b>{}</b><i>x</i>", "&amp;&lt;&gt;".repeat(3));
        assert_eq!(chunk_html(&html, 10), vec![html.clone()]);
        let split = chunk_html(&html, 9);
        assert_eq!(split.len(), 2, "{split:?}");
        assert_eq!(split.concat(), html);
        // A numeric reference to an astral character is a surrogate pair: 2 units, decimal or hex.
        let emoji = "&#128512;&#x1F600;&#128512;";
        assert_eq!(chunk_html(emoji, 5), vec!["&#128512;&#x1F600;", "&#128512;"]);
        assert_eq!(chunk_html("&#233;&#233;", 2), vec!["&#233;&#233;"]);
        assert_eq!(chunk_html("&#0000065;&#xFFFFF;", 3), vec!["&#0000065;&#xFFFFF;"]);
        // Not decoded (unknown name, no `;`, zero, upper-case X, U+10FFFF, ten characters before
        // the `;`): counted as written, never less than Telegram shows.
        for raw in ["&nbsp;", "&amp", "&#0;", "&#X41;", "&#1114111;", "&#x10FFFF;", "&#00000065;"] {
            assert_eq!(chunk_html(raw, raw.len()), vec![raw]);
            assert_eq!(chunk_html(raw, raw.len() - 1), vec![raw], "an entity-like run is not split");
        }
    }

    #[test]
    fn surrogate_pairs_and_long_tag_runs_stay_whole() {
        assert_eq!(chunk_html(&"😀".repeat(3), 3), vec!["😀"; 3]);
        // An open tag longer than the window is its own piece; what follows starts a new one.
        let html = format!("ab <b>{}</b> cd", "y".repeat(30));
        assert_eq!(chunk_html(&html, 10), vec!["ab ".to_owned(), format!("<b>{}</b>", "y".repeat(30)), " cd".into()]);
        // A stray closing tag does not make the rest unsplittable.
        let stray = format!("</b>{}", "z".repeat(30));
        assert_eq!(chunk_html(&stray, 10).len(), 3);
        assert_eq!(chunk_html("", 10), vec![""]);
    }

    #[test]
    fn escaped_reply_of_14300_characters_is_four_messages() {
        // Words with `&` and `<`, escaped: 14,300 visible characters are 25,136 bytes of HTML.
        // Counting raw HTML (as before) made 7 chunks of it; counting what Telegram counts makes 4.
        let words = ["Q&A", "a<b", "R&D", "x<y&z", "plain", "AT&T", "i<j"];
        let mut text = String::new();
        for word in words.iter().cycle() {
            if text.len() >= 14_300 {
                break;
            }
            text.push_str(word);
            text.push(' ');
        }
        text.truncate(14_300);
        let html = escape_text(&text);
        assert_eq!((visible(&html), html.len()), (14_300, 25_136));
        let chunks = chunk_html(&html, 4096);
        assert_eq!(chunks.len(), 4, "{:?}", chunks.iter().map(|c| visible(c)).collect::<Vec<_>>());
        assert_eq!(chunks.concat(), html);
        for chunk in &chunks {
            assert!(visible(chunk) <= 4096 && valid(chunk));
        }
        // Full chunks go well past 4,096 bytes: raw length is not what limits them.
        assert!(chunks[..3].iter().all(|c| c.len() > 4096 && visible(c) > 4000));
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
            let escaped = escape_text(&text);
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
                // Over the window only as a bold word longer than it, alone in its chunk.
                let alone_in_tags = chunk.starts_with("<b>") && chunk.ends_with("</b>") && chunk.matches("<b>").count() == 1;
                prop_assert!(visible(chunk) <= max || alone_in_tags, "chunk too long {:?}", chunk);
            }
        }

        /// The renderer and the delivery path cut text for the channel before it gets here, by
        /// the same count: such a piece is never cut again.
        #[test]
        fn a_piece_the_core_cut_stays_one_message(text in "[a-z<>&;# 😀\n]{0,600}", max in 100usize..200) {
            let capabilities = crate::channel::Capabilities::text_only(max);
            for piece in crate::render::split::split(&capabilities, &text) {
                prop_assert_eq!(chunk_html(&escape_text(&piece), max), vec![escape_text(&piece)]);
            }
        }
    }
}
