//! Interaction routing: a button token (`apv:`, `den:`, `rej:`, `ans:`) or a fallback command
//! (`/approve`, `/allow`, `/deny`, `/reject`, `/answer`) resolves a Cloud interaction; an unknown
//! button token fails closed as a denial.

use serde_json::json;

use crate::channel::{Channel, InboundMessage, ANSWER_PREFIX, APPROVE_PREFIX, DENY_PREFIX, REJECT_PREFIX};
use crate::cloud::client::ResolveInteraction;
use crate::metrics::{Direction, Metrics, Outcome, Stat};

/// What the user decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
    Reject,
    Answer(String),
}

impl Decision {
    /// The acknowledgement shown to the user.
    pub fn acknowledgement(&self) -> &'static str {
        match self {
            Decision::Approve => "Approved",
            Decision::Deny => "Denied",
            Decision::Reject => "Rejected",
            Decision::Answer(_) => "Answered",
        }
    }
}

/// A parsed intent: the Cloud token, the decision and the id the provider acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub token: String,
    pub decision: Decision,
    pub external_interaction_id: String,
}

/// A button token: the prefix selects the action; anything unrecognised is a denial of the
/// whole token (fail closed).
fn parse_button_token(token: &str) -> (String, Decision) {
    let token = token.trim();
    if let Some(rest) = token.strip_prefix(APPROVE_PREFIX) {
        return (rest.to_owned(), Decision::Approve);
    }
    if let Some(rest) = token.strip_prefix(DENY_PREFIX) {
        return (rest.to_owned(), Decision::Deny);
    }
    if let Some(rest) = token.strip_prefix(REJECT_PREFIX) {
        return (rest.to_owned(), Decision::Reject);
    }
    if let Some(rest) = token.strip_prefix(ANSWER_PREFIX) {
        if let Some(separator) = rest.find(':').filter(|&i| i > 0) {
            if let Some(answer) =
                crate::util::base64::decode(&rest[..separator]).and_then(|b| String::from_utf8(b).ok())
            {
                return (rest[separator + 1..].to_owned(), Decision::Answer(answer));
            }
        }
    }
    (token.to_owned(), Decision::Deny)
}

/// A fallback command: `/<verb> <token> [answer]`.
pub fn parse_command(text: &str) -> Option<(String, Decision)> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let verb_end = rest.find(char::is_whitespace)?;
    let verb = rest[..verb_end].to_ascii_lowercase();
    let args = rest[verb_end..].trim_start();
    let (token, answer) = match args.find(char::is_whitespace) {
        Some(i) => (&args[..i], args[i..].trim()),
        None => (args, ""),
    };
    if token.is_empty() {
        return None;
    }
    let decision = match verb.as_str() {
        "approve" | "allow" => Decision::Approve,
        "deny" => Decision::Deny,
        "reject" => Decision::Reject,
        "answer" if !answer.is_empty() => Decision::Answer(answer.to_owned()),
        _ => return None,
    };
    Some((token.to_owned(), decision))
}

/// The interaction intent of a message, if it has one.
pub fn intent_of(message: &InboundMessage) -> Option<Intent> {
    if let Some(interaction) = &message.interaction {
        let (token, decision) = command_for_bare_token(message, &interaction.token)
            .unwrap_or_else(|| parse_button_token(&interaction.token));
        return Some(Intent { token, decision, external_interaction_id: interaction.id.clone() });
    }
    let text = if message.raw_text.trim().is_empty() { &message.text } else { &message.raw_text };
    let (token, decision) = parse_command(text)?;
    Some(Intent { token, decision, external_interaction_id: message.id.clone() })
}

/// An interaction that carries the bare Cloud token (no `apv:`/`den:` prefix, as the command-line
/// channel records a typed `/approve <token>`) takes its decision from the command in the text,
/// but only when that command names the very same token; anything else stays fail-closed.
fn command_for_bare_token(message: &InboundMessage, token: &str) -> Option<(String, Decision)> {
    let token = token.trim();
    if [APPROVE_PREFIX, DENY_PREFIX, REJECT_PREFIX, ANSWER_PREFIX].iter().any(|prefix| token.starts_with(prefix)) {
        return None;
    }
    let text = if message.raw_text.trim().is_empty() { &message.text } else { &message.raw_text };
    parse_command(text).filter(|(named, _)| named == token)
}

/// Acknowledges a resolved interaction on the platform (the button stops spinning, the outcome
/// is shown). It is a message the gateway sends, so it is counted as outbound: one attempt, then
/// a success, or an error when the platform refuses it (the decision itself stands).
pub async fn acknowledge(provider: &dyn Channel, intent: &Intent, metrics: &Metrics, kind: &'static str) {
    metrics.record_channel_message(kind, Direction::Outbound, Outcome::Attempt, None);
    let started = std::time::Instant::now();
    let answered =
        provider.answer_interaction(&intent.external_interaction_id, intent.decision.acknowledgement()).await;
    let latency = Some(started.elapsed().as_secs_f64() * 1000.0);
    match answered {
        Ok(()) => metrics.record_channel_message(kind, Direction::Outbound, Outcome::Success, latency),
        Err(error) => {
            metrics.record_channel_message(kind, Direction::Outbound, Outcome::Error, latency);
            metrics.increment(Stat::Errors);
            tracing::warn!(
                provider = provider.id(),
                error = %crate::config::redact::Redacted(&error),
                "the platform refused the acknowledgement of a resolved interaction; the decision stands"
            );
        }
    }
}

/// The `resolveChannelInteraction` body for an intent.
pub fn resolution(
    message: &InboundMessage,
    intent: &Intent,
    external_workspace_id: Option<String>,
) -> ResolveInteraction {
    let (response, answers, reject) = match &intent.decision {
        Decision::Approve => (Some(json!({"allowed": true})), None, None),
        Decision::Deny => (Some(json!({"allowed": false})), None, None),
        Decision::Reject => (None, None, Some(true)),
        Decision::Answer(answer) => (None, Some(vec![answer.clone()]), None),
    };
    ResolveInteraction {
        token: intent.token.clone(),
        provider: message.provider.clone(),
        external_workspace_id: Some(external_workspace_id),
        external_user_id: message.sender.provider_user_id.clone(),
        external_chat_id: message.target.chat_id.clone(),
        external_interaction_id: Some(intent.external_interaction_id.clone()),
        response,
        answers,
        reject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Capabilities;
    use crate::render::{render_event, Plan, RenderContext, RenderState, Step};

    /// The decisions behind what a prompt shows for `event` with token `tok`: its buttons where
    /// the channel has them, else its text commands.
    fn decisions_shown(event_type: &str, payload: serde_json::Value, capabilities: &Capabilities) -> Vec<Decision> {
        let event = serde_json::from_value(json!({"sequence": 1, "type": event_type, "payload": payload})).unwrap();
        let context = RenderContext { capabilities, artifact_url: &|id: &str| id.to_owned() };
        let Plan::Ask(prompt) = render_event(&context, &RenderState::default(), &event) else { panic!("a prompt") };
        let mut decisions = Vec::new();
        for step in prompt.steps("tok", capabilities) {
            match step {
                Step::Buttons { rows, .. } => {
                    decisions.extend(rows.iter().flatten().map(|b| parse_button_token(&b.token)))
                }
                Step::Send(text) => decisions.extend(text.lines().filter_map(parse_command)),
                other => panic!("a prompt shows no {other:?}"),
            }
        }
        assert!(decisions.iter().all(|(token, _)| token == "tok"), "{decisions:?}");
        decisions.into_iter().map(|(_, decision)| decision).collect()
    }

    #[test]
    fn what_a_prompt_shows_resolves_to_the_decisions_it_offers() {
        let buttons = Capabilities {
            inline_buttons: true,
            max_buttons_per_message: 8,
            max_button_rows: 4,
            max_button_token_bytes: 64,
            ..Capabilities::text_only(4096)
        };
        let text = Capabilities::text_only(4096);
        let permission = json!({"permissionId": "p1", "title": "Run?"});
        for capabilities in [&buttons, &text] {
            let shown = decisions_shown("permission.requested", permission.clone(), capabilities);
            assert_eq!(shown, [Decision::Approve, Decision::Deny]);
        }
        let question = json!({"requestId": "q1", "questions": [{"question": "Colour?", "options": ["Red"]}]});
        let shown = decisions_shown("question.asked", question.clone(), &buttons);
        assert_eq!(shown, [Decision::Answer("Red".into()), Decision::Reject]);
        let shown = decisions_shown("question.asked", question, &text);
        assert_eq!(shown, [Decision::Answer("<response>".into()), Decision::Reject], "the typed answer's placeholder");
    }

    #[test]
    fn button_tokens() {
        assert_eq!(parse_button_token(" apv:occi_x_y "), ("occi_x_y".into(), Decision::Approve));
        assert_eq!(parse_button_token("den:t"), ("t".into(), Decision::Deny));
        assert_eq!(parse_button_token("rej:t"), ("t".into(), Decision::Reject));
        assert_eq!(
            parse_button_token(&format!("ans:{}:occi_a_b", crate::util::base64::encode_url("Yes please".as_bytes()))),
            ("occi_a_b".into(), Decision::Answer("Yes please".into()))
        );
        assert_eq!(
            parse_button_token("ans::t"),
            ("ans::t".into(), Decision::Deny),
            "an empty answer part is not an answer"
        );
        assert_eq!(parse_button_token("mystery"), ("mystery".into(), Decision::Deny), "unknown tokens fail closed");
    }

    #[test]
    fn a_bare_token_interaction_takes_the_decision_of_its_command() {
        let with = |text: &str, token: &str| {
            let mut message = InboundMessage::text_for_tests("m", text);
            message.interaction =
                Some(crate::channel::InteractionRef { id: "i-1".into(), token: token.into(), kind: "command" });
            intent_of(&message).map(|i| (i.token, i.decision))
        };
        assert_eq!(with("/approve tok", "tok"), Some(("tok".into(), Decision::Approve)));
        assert_eq!(with("/answer tok blue", "tok"), Some(("tok".into(), Decision::Answer("blue".into()))));
        assert_eq!(with("/approve other", "tok"), Some(("tok".into(), Decision::Deny)), "another token: fail closed");
        assert_eq!(with("hello", "tok"), Some(("tok".into(), Decision::Deny)));
        assert_eq!(with("/approve den:tok", "den:tok"), Some(("tok".into(), Decision::Deny)), "a prefix decides");
    }

    #[test]
    fn fallback_commands() {
        assert_eq!(parse_command("/approve tok"), Some(("tok".into(), Decision::Approve)));
        assert_eq!(parse_command("  /ALLOW   tok  "), Some(("tok".into(), Decision::Approve)));
        assert_eq!(parse_command("/deny tok"), Some(("tok".into(), Decision::Deny)));
        assert_eq!(parse_command("/reject tok"), Some(("tok".into(), Decision::Reject)));
        assert_eq!(
            parse_command("/answer tok  blue and green "),
            Some(("tok".into(), Decision::Answer("blue and green".into())))
        );
        for text in ["/approve", "/answer tok", "/help me", "approve tok", "/approve   "] {
            assert_eq!(parse_command(text), None, "{text}");
        }
    }
}
