//! Message bodies: Slack text escaping and the Block Kit of approval and question buttons.
//!
//! Slack reads `&`, `<` and `>` as the start of entities, links and mentions in every `text`,
//! even with `mrkdwn: false`; agent output is escaped so `a < b` arrives as written and a
//! `<!channel>` in a reply cannot ping a whole channel (upstream sent it unescaped).

use serde_json::{json, Value};

use crate::channel::{Button, SendError};
use crate::util::markup::escape_text;

/// Slack's documented limits on buttons, as this channel declares them.
pub const MAX_BUTTONS: usize = 10;
pub const MAX_ROWS: usize = 5;
/// A button `value` holds the Cloud interaction token itself: Slack allows 2000 characters.
pub const MAX_TOKEN_BYTES: usize = 2000;
/// A button label is cut at this many UTF-16 units (Slack's `plain_text` limit for buttons).
const MAX_LABEL_UNITS: usize = 75;
/// Slack refuses a `section` text longer than this.
const MAX_SECTION_CHARS: usize = 3000;

/// The first `units` UTF-16 units of `text`, never splitting a character.
fn cut_utf16(text: &str, units: usize) -> &str {
    let mut count = 0;
    for (index, c) in text.char_indices() {
        if count + c.len_utf16() > units {
            return &text[..index];
        }
        count += c.len_utf16();
    }
    text
}

/// Checks the buttons against Slack's limits before any call, with upstream's messages.
pub fn check_buttons(rows: &[Vec<Button>]) -> Result<(), SendError> {
    if rows.len() > MAX_ROWS {
        return Err(SendError::permanent(format!("Slack buttons exceed maxButtonRowsPerMessage {MAX_ROWS}.")));
    }
    if rows.iter().map(Vec::len).sum::<usize>() > MAX_BUTTONS {
        return Err(SendError::permanent(format!("Slack buttons exceed maxButtonsPerMessage {MAX_BUTTONS}.")));
    }
    for button in rows.iter().flatten() {
        if button.label.trim().is_empty() {
            return Err(SendError::permanent("Slack button label is required."));
        }
        if button.token.len() > MAX_TOKEN_BYTES {
            return Err(SendError::permanent(format!(
                "Slack button token exceeds maxButtonTokenBytes {MAX_TOKEN_BYTES}."
            )));
        }
    }
    Ok(())
}

/// A `section` block with escaped text, cut to Slack's limit (the fallback `text` keeps all).
pub fn section(escaped: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut_utf16(escaped, MAX_SECTION_CHARS)}})
}

/// The blocks of a message with buttons: the text, then one `actions` block per row. Each
/// button's `value` is its token (`apv:<Cloud token>`), which comes back in `block_actions`.
pub fn button_blocks(text: &str, rows: &[Vec<Button>]) -> Vec<Value> {
    let mut blocks = vec![section(&escape_text(text))];
    for row in rows.iter().filter(|row| !row.is_empty()) {
        let elements: Vec<Value> = row
            .iter()
            .map(|button| {
                let mut element = json!({
                    "type": "button",
                    "text": {"type": "plain_text", "text": cut_utf16(&button.label, MAX_LABEL_UNITS)},
                    "value": button.token,
                    "action_id": format!("open_cowork_{}", crate::util::ids::random_id()),
                });
                let style = match button.style {
                    "danger" => Some("danger"),
                    "success" => Some("primary"),
                    _ => None,
                };
                if let Some(style) = style {
                    element["style"] = Value::from(style);
                }
                element
            })
            .collect();
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("open_cowork_{}", crate::util::ids::random_id()),
            "elements": elements,
        }));
    }
    blocks
}

/// The blocks that replace a message's buttons once a press is resolved: its text, and the
/// outcome in a context line, so the same buttons cannot be pressed twice.
pub fn resolved_blocks(stored_text: &str, outcome: &str) -> Vec<Value> {
    let mut blocks = Vec::new();
    if !stored_text.trim().is_empty() {
        blocks.push(section(stored_text));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape_text(outcome)}]}));
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn button(label: &str, token: &str, style: &'static str) -> Button {
        Button { label: label.into(), token: token.into(), style }
    }

    #[test]
    fn escaping_covers_slacks_three_entities_only() {
        assert_eq!(escape_text("a < b && c > <!channel> *bold*"), "a &lt; b &amp;&amp; c &gt; &lt;!channel&gt; *bold*");
    }

    #[test]
    fn the_specs_button_example() {
        let blocks = button_blocks("Approve?", &[vec![button("Allow", "p:allow", "success")]]);
        assert_eq!(blocks[0], json!({"type": "section", "text": {"type": "mrkdwn", "text": "Approve?"}}));
        let element = &blocks[1]["elements"][0];
        assert_eq!(element["value"], "p:allow");
        assert_eq!(element["style"], "primary");
        assert_eq!(element["text"], json!({"type": "plain_text", "text": "Allow"}));
        assert!(element["action_id"].as_str().unwrap().starts_with("open_cowork_"));
        assert!(blocks[1]["block_id"].as_str().unwrap().starts_with("open_cowork_"));
        let plain = button_blocks("x", &[vec![button("Answer", "t", "primary")]]);
        assert!(plain[1]["elements"][0].get("style").is_none(), "only danger and success have a Slack style");
    }

    #[test]
    fn limits_are_checked_before_any_call() {
        let row = |n: usize| (0..n).map(|i| button(&format!("b{i}"), "t", "")).collect::<Vec<_>>();
        assert!(check_buttons(&[row(5), row(5)]).is_ok());
        assert!(check_buttons(&[row(6), row(5)]).unwrap_err().message.contains("maxButtonsPerMessage 10"));
        assert!(check_buttons(&vec![row(1); 6]).unwrap_err().message.contains("maxButtonRowsPerMessage 5"));
        assert!(check_buttons(&[vec![button(" ", "t", "")]]).unwrap_err().message.contains("label is required"));
        let long = "x".repeat(2001);
        assert!(check_buttons(&[vec![button("a", &long, "")]]).unwrap_err().message.contains("maxButtonTokenBytes"));
        assert_eq!(cut_utf16("😀😀", 3), "😀", "a character is never split");
    }
}
