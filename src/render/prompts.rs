//! Approval and question prompts: the text, buttons where the channel can show them all, and
//! text commands carrying the interaction token otherwise.

use serde_json::Value;

use super::payload_text;
use super::plan::{InteractionRequest, Plan, Step};
use super::split::fits;
use super::text::sanitize;
use crate::channel::{Button, Capabilities, ANSWER_PREFIX, APPROVE_PREFIX, DENY_PREFIX, REJECT_PREFIX};
use crate::cloud::types::SessionEvent;

/// A button before its interaction token is known: the token is `token_prefix` + the token.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ButtonTemplate {
    label: String,
    token_prefix: String,
    style: &'static str,
}

/// A prompt waiting for its interaction token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub interaction: InteractionRequest,
    text: String,
    buttons: Vec<Vec<ButtonTemplate>>,
    /// The fallback's command lines, each the text before and after the token.
    commands: &'static [(&'static str, &'static str)],
}

const PERMISSION_COMMANDS: &[(&str, &str)] = &[("/approve ", ""), ("/deny ", "")];
const QUESTION_COMMANDS: &[(&str, &str)] = &[("/answer ", " <response>"), ("/reject ", "")];

impl Prompt {
    /// The prompt shown with `token`: one message with buttons when the channel can show the
    /// text and every button, else the text and its commands as plain messages.
    pub fn steps(&self, token: &str, capabilities: &Capabilities) -> Vec<Step> {
        let rows: Vec<Vec<Button>> = self
            .buttons
            .iter()
            .map(|row| {
                row.iter()
                    .map(|b| Button {
                        label: b.label.clone(),
                        token: format!("{}{token}", b.token_prefix),
                        style: b.style,
                    })
                    .collect()
            })
            .collect();
        if !rows.is_empty() && buttons_fit(capabilities, &self.text, &rows) {
            return vec![Step::Buttons { text: self.text.clone(), rows }];
        }
        let mut fallback = self.text.clone();
        for (before, after) in self.commands {
            fallback.push('\n');
            fallback.push_str(before);
            fallback.push_str(token);
            fallback.push_str(after);
        }
        Step::messages(capabilities, &fallback)
    }
}

/// Whether the channel can show these buttons with this text.
fn buttons_fit(capabilities: &Capabilities, text: &str, rows: &[Vec<Button>]) -> bool {
    capabilities.inline_buttons
        && fits(capabilities, text)
        && rows.len() <= capabilities.max_button_rows
        && rows.iter().map(Vec::len).sum::<usize>() <= capabilities.max_buttons_per_message
        && rows.iter().flatten().all(|b| !b.label.is_empty() && b.token.len() <= capabilities.max_button_token_bytes)
}

fn template(label: &str, token_prefix: String, style: &'static str) -> ButtonTemplate {
    ButtonTemplate { label: label.to_owned(), token_prefix, style }
}

pub(super) fn permission(event: &SessionEvent) -> Plan {
    let payload = &event.payload;
    let Some(permission_id) = payload_text(payload, &["permissionId", "id"]) else {
        return Plan::Nothing { message_id: None };
    };
    let mut text = sanitize(payload_text(payload, &["title"]).unwrap_or("Permission requested"), 160);
    if let Some(description) = payload_text(payload, &["description", "summary", "tool"]) {
        text.push('\n');
        text.push_str(&sanitize(description, 320));
    }
    Plan::Ask(Prompt {
        interaction: InteractionRequest {
            kind: "permission",
            target_id: permission_id.to_owned(),
            session_id: event.session_id.clone(),
        },
        text,
        buttons: vec![vec![
            template("Approve", APPROVE_PREFIX.into(), "success"),
            template("Deny", DENY_PREFIX.into(), "danger"),
        ]],
        commands: PERMISSION_COMMANDS,
    })
}

#[derive(Debug)]
struct Question {
    header: Option<String>,
    question: String,
    options: Vec<(String, Option<String>)>,
    multiple: bool,
}

/// A question's option: a bare label, or `{label, description}` (a description alone is the label).
fn read_option(option: &Value) -> Option<(String, Option<String>)> {
    match option {
        Value::String(label) => Some((label.clone(), None)),
        other => {
            let label = payload_text(other, &["label"]).or_else(|| payload_text(other, &["description"]))?.to_owned();
            let description =
                payload_text(other, &["description"]).map(str::to_owned).filter(|_| other.get("label").is_some());
            Some((label, description))
        }
    }
}

fn read_questions(payload: &Value) -> Vec<Question> {
    let Some(items) = payload.get("questions").and_then(Value::as_array) else {
        return payload_text(payload, &["question", "prompt"])
            .map(|q| {
                vec![Question {
                    header: payload_text(payload, &["title"]).map(str::to_owned),
                    question: q.to_owned(),
                    options: Vec::new(),
                    multiple: false,
                }]
            })
            .unwrap_or_default();
    };
    items
        .iter()
        .filter_map(|item| {
            let question = payload_text(item, &["question", "prompt", "text"])?.to_owned();
            let options = item
                .get("options")
                .and_then(Value::as_array)
                .map(|options| options.iter().filter_map(read_option).collect())
                .unwrap_or_default();
            Some(Question {
                header: payload_text(item, &["header"]).map(str::to_owned),
                question,
                options,
                multiple: item.get("multiple") == Some(&Value::Bool(true)),
            })
        })
        .collect()
}

/// The questions as text: a header (numbered when there are several), the question, its options.
fn questions_text(questions: &[Question]) -> String {
    if questions.is_empty() {
        return "Question requested".to_owned();
    }
    let several = questions.len() > 1;
    let blocks: Vec<String> = questions
        .iter()
        .enumerate()
        .map(|(index, q)| {
            let default_header =
                if several { format!("Question {}", index + 1) } else { "Question requested".to_owned() };
            let mut block = format!(
                "{}\n{}",
                sanitize(q.header.as_deref().unwrap_or(&default_header), 120),
                sanitize(&q.question, 320)
            );
            for (label, description) in &q.options {
                match description {
                    Some(d) => block.push_str(&format!("\n- {}: {}", sanitize(label, 80), sanitize(d, 120))),
                    None => block.push_str(&format!("\n- {}", sanitize(label, 80))),
                }
            }
            block
        })
        .collect();
    blocks.join("\n\n")
}

/// Buttons only for a single question with one choice: an answer button per option, and Reject.
fn question_buttons(questions: &[Question]) -> Vec<Vec<ButtonTemplate>> {
    match questions {
        [only] if !only.multiple && !only.options.is_empty() => vec![
            only.options
                .iter()
                .map(|(label, _)| {
                    let prefix = format!("{ANSWER_PREFIX}{}:", crate::util::base64::encode_url(label.as_bytes()));
                    template(&sanitize(label, 40), prefix, "primary")
                })
                .collect(),
            vec![template("Reject", REJECT_PREFIX.into(), "danger")],
        ],
        _ => Vec::new(),
    }
}

pub(super) fn question(event: &SessionEvent) -> Plan {
    let payload = &event.payload;
    let Some(request_id) = payload_text(payload, &["requestId", "requestID", "id"]) else {
        return Plan::Nothing { message_id: None };
    };
    let questions = read_questions(payload);
    Plan::Ask(Prompt {
        interaction: InteractionRequest {
            kind: "question",
            target_id: request_id.to_owned(),
            session_id: event.session_id.clone(),
        },
        text: questions_text(&questions),
        buttons: question_buttons(&questions),
        commands: QUESTION_COMMANDS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn questions_are_read_from_either_shape() {
        let payload = json!({"questions": [{"header": "H", "question": "Q?", "options": ["A", {"label": "B", "description": "bee"}]}]});
        let questions = read_questions(&payload);
        assert_eq!(questions.len(), 1);
        assert_eq!(questions[0].options, vec![("A".into(), None), ("B".into(), Some("bee".into()))]);
        assert_eq!(read_questions(&json!({"question": "Legacy?", "title": "T"}))[0].header.as_deref(), Some("T"));
    }
}
