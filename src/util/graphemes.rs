//! Where a text may be split without tearing a user-perceived character apart: the parts of
//! Unicode's extended grapheme cluster rules (UAX #29) that chat text meets. Not split: CR LF;
//! before a combining mark, a variation selector, an emoji skin-tone modifier, a tag character
//! or a zero-width joiner; after a zero-width joiner (emoji ZWJ sequences such as the family
//! emoji); inside a pair of regional indicators (a flag). Hangul syllable sequences and Indic
//! spacing marks outside the combining blocks below are not covered; a split there is still
//! between two valid characters.

/// Zero-width joiner.
const ZWJ: char = '\u{200D}';

/// Characters that extend the one before them (grapheme `Extend`, as far as listed here).
fn is_extend(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'       // combining diacritical marks
        | '\u{0483}'..='\u{0489}'     // Cyrillic combining marks
        | '\u{0591}'..='\u{05BD}'     // Hebrew points
        | '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}' | '\u{0670}' // Arabic marks
        | '\u{0900}'..='\u{0903}' | '\u{093A}'..='\u{094F}' | '\u{0951}'..='\u{0957}' // Devanagari signs
        | '\u{0E31}' | '\u{0E34}'..='\u{0E3A}' | '\u{0E47}'..='\u{0E4E}' // Thai vowels and tones
        | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' // combining marks extended and supplement
        | '\u{200C}' | ZWJ            // zero-width non-joiner and joiner
        | '\u{20D0}'..='\u{20FF}'     // combining marks for symbols (keycaps)
        | '\u{3099}'..='\u{309A}'     // kana voicing marks
        | '\u{FE00}'..='\u{FE0F}'     // variation selectors (emoji presentation)
        | '\u{FE20}'..='\u{FE2F}'     // combining half marks
        | '\u{1F3FB}'..='\u{1F3FF}'   // emoji skin-tone modifiers
        | '\u{E0020}'..='\u{E007F}'   // tags (subdivision flags)
        | '\u{E0100}'..='\u{E01EF}'   // variation selectors supplement
    )
}

fn is_regional_indicator(c: char) -> bool {
    matches!(c, '\u{1F1E6}'..='\u{1F1FF}')
}

/// Whether byte index `at` of `text` is a place to split: a char boundary between two grapheme
/// clusters (the ends of the text always are).
pub fn is_boundary(text: &str, at: usize) -> bool {
    if at == 0 || at >= text.len() {
        return at == 0 || at == text.len();
    }
    if !text.is_char_boundary(at) {
        return false;
    }
    let (before, after) = text.split_at(at);
    let (Some(previous), Some(next)) = (before.chars().next_back(), after.chars().next()) else { return true };
    if previous == '\r' && next == '\n' {
        return false;
    }
    if is_extend(next) || previous == ZWJ {
        return false;
    }
    if is_regional_indicator(previous) && is_regional_indicator(next) {
        // Indicators pair up from the start of their run: split only after a complete pair.
        let run = before.chars().rev().take_while(|c| is_regional_indicator(*c)).count();
        return run % 2 == 0;
    }
    true
}

/// The nearest boundary at or before byte index `at`; past the first cluster when that is 0,
/// so a caller always makes progress (a single cluster longer than its window stays whole).
pub fn boundary_at_or_before(text: &str, at: usize) -> usize {
    let mut index = at.min(text.len());
    while index > 0 && !is_boundary(text, index) {
        index -= 1;
    }
    if index > 0 {
        return index;
    }
    (1..=text.len()).find(|&i| is_boundary(text, i)).unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every boundary of `text`, as the pieces between them.
    fn clusters(text: &str) -> Vec<&str> {
        let mut pieces = Vec::new();
        let mut start = 0;
        for at in 1..=text.len() {
            if is_boundary(text, at) {
                pieces.push(&text[start..at]);
                start = at;
            }
        }
        pieces
    }

    #[test]
    fn clusters_stay_whole() {
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
        assert_eq!(clusters(&format!("a{family}b")), ["a", family, "b"], "ZWJ sequence");
        assert_eq!(clusters("e\u{301}x"), ["e\u{301}", "x"], "combining mark");
        assert_eq!(clusters("\u{1F44D}\u{1F3FD}!"), ["\u{1F44D}\u{1F3FD}", "!"], "skin tone");
        assert_eq!(clusters("\u{2764}\u{FE0F}x"), ["\u{2764}\u{FE0F}", "x"], "variation selector");
        assert_eq!(
            clusters("\u{1F1E9}\u{1F1EA}\u{1F1EB}\u{1F1F7}\u{1F1EE}"),
            ["\u{1F1E9}\u{1F1EA}", "\u{1F1EB}\u{1F1F7}", "\u{1F1EE}"],
            "regional indicators pair up"
        );
        assert_eq!(clusters("1\u{FE0F}\u{20E3}"), ["1\u{FE0F}\u{20E3}"], "keycap");
        assert_eq!(clusters("a\r\nb"), ["a", "\r\n", "b"]);
        assert_eq!(clusters("नमस्ते"), ["न", "म", "स्", "ते"], "Devanagari signs");
    }

    #[test]
    fn the_nearest_boundary_backs_off_and_always_progresses() {
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
        let text = format!("ab{family}");
        for at in 3..text.len() {
            assert_eq!(boundary_at_or_before(&text, at), 2, "{at}");
        }
        assert_eq!(boundary_at_or_before(family, 5), family.len(), "one long cluster stays whole");
        assert_eq!(boundary_at_or_before("abc", 2), 2);
    }
}
