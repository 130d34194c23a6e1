//! Rendering Cloud session events for a channel, as a [`Plan`] decided from the event, the
//! channel's [`Capabilities`] and what earlier events showed ([`RenderState`]), without calling
//! Cloud or the channel: the runtime carries the plan out. Assistant text is streamed by edits
//! where the channel can edit, else by new messages for what is new; tool progress is one line
//! per call; approvals and questions get buttons or text commands carrying their interaction
//! token; artifacts go as files or links. Everything else only advances the cursor. Delivery
//! payloads are turned into text here too, and all text is cut for the channel in one place
//! ([`split`]).

mod artifact;
mod assistant;
pub mod plan;
mod prompts;
pub mod split;
mod state;
pub mod text;
mod tool;

use serde_json::Value;

use crate::channel::Capabilities;
use crate::cloud::types::SessionEvent;
#[cfg(test)]
pub use plan::Show;
pub use plan::{InteractionRequest, Plan, Step};
#[cfg(test)]
pub use state::Remember;
pub use state::RenderState;
use text::sanitize;

/// What rendering needs to know about where the event goes.
pub struct RenderContext<'a> {
    pub capabilities: &'a Capabilities,
    /// The Cloud link of an artifact, by its id (the link is shown when the file is not sent).
    pub artifact_url: &'a dyn Fn(&str) -> String,
}

fn payload_text<'a>(payload: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| payload.get(*k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
}

/// The plan for one session event.
pub fn render_event(context: &RenderContext<'_>, state: &RenderState, event: &SessionEvent) -> Plan {
    match event.event_type.as_str() {
        "assistant.message" => assistant::render(context.capabilities, state, event),
        "tool.call" => tool::render(context.capabilities, state, event),
        "permission.requested" => prompts::permission(event),
        "question.asked" => prompts::question(event),
        "artifact.created" | "artifact.updated" => artifact::render(context, state, event),
        _ => Plan::Nothing { message_id: None },
    }
}

/// The text of a Cloud delivery: `text`, else `message`, else a readable line for a
/// workflow-run payload, else compact JSON.
pub fn delivery_text(payload: &Value) -> String {
    if let Some(text) = payload.get("text").and_then(Value::as_str) {
        return text.to_owned();
    }
    if let Some(message) = payload.get("message").and_then(Value::as_str) {
        return message.to_owned();
    }
    let field = |k: &str| payload.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    if let (Some(status), true) =
        (field("status"), payload.get("workflowId").is_some() || payload.get("runId").is_some())
    {
        let name = field("workflowId").or(field("runId")).unwrap_or("workflow");
        let mut line = format!("Workflow {name} {status}.");
        if let Some(detail) = field("summary").or(field("error")) {
            line.push('\n');
            line.push_str(&sanitize(detail, 2000));
        }
        return line;
    }
    payload.to_string()
}

#[cfg(test)]
mod tests {
    use super::prompts::Prompt;
    use super::*;
    use crate::channel::Button;
    use serde_json::json;

    /// A channel that edits, shows buttons and takes files, with a small text limit.
    fn rich(max_text_length: usize) -> Capabilities {
        Capabilities {
            message_editing: true,
            inline_buttons: true,
            file_downloads: true,
            max_text_length,
            max_buttons_per_message: 10,
            max_button_rows: 5,
            max_button_token_bytes: 64,
            max_file_bytes: 1000,
        }
    }

    fn event(event_type: &str, sequence: u64, payload: Value) -> SessionEvent {
        serde_json::from_value(json!({"sessionId": "s1", "sequence": sequence, "type": event_type, "payload": payload}))
            .unwrap()
    }

    fn plan(capabilities: &Capabilities, state: &RenderState, event: &SessionEvent) -> Plan {
        let artifact_url = |id: &str| format!("https://cloud.test/artifacts/{id}");
        render_event(&RenderContext { capabilities, artifact_url: &artifact_url }, state, event)
    }

    /// The plan's steps and what it remembers, with `message_id` as the id its execution reports.
    fn show(plan: Plan, state: &mut RenderState, message_id: Option<&str>) -> Vec<Step> {
        let Plan::Show(show) = plan else { panic!("expected messages to show, got {plan:?}") };
        if let Some(remember) = show.remember {
            state.learn(remember, message_id.map(str::to_owned).or(show.message_id));
        }
        show.steps
    }

    fn assistant(sequence: u64, content: &str) -> SessionEvent {
        event("assistant.message", sequence, json!({"messageId": "a1", "content": content}))
    }

    #[test]
    fn a_streamed_reply_is_sent_once_then_edited_where_the_channel_can_edit() {
        let (capabilities, mut state) = (rich(4096), RenderState::default());
        let first = show(plan(&capabilities, &state, &assistant(1, "Hello")), &mut state, Some("m1"));
        assert_eq!(first, [Step::Send("Hello".into())]);
        let second = show(plan(&capabilities, &state, &assistant(2, " world")), &mut state, Some("m1"));
        assert_eq!(second, [Step::Edit { message_id: "m1".into(), text: "Hello world".into() }]);
        assert_eq!(
            plan(&capabilities, &state, &assistant(3, "world")),
            Plan::Nothing { message_id: Some("m1".into()) },
            "a repeated piece changes nothing"
        );
        let blank = show(plan(&capabilities, &state, &assistant(4, "Hello world \n")), &mut state, None);
        assert!(blank.is_empty(), "trailing blanks are remembered, not shown: {blank:?}");
    }

    #[test]
    fn without_edits_only_the_new_part_of_a_reply_goes_out() {
        let (capabilities, mut state) = (Capabilities::text_only(4096), RenderState::default());
        assert_eq!(
            show(plan(&capabilities, &state, &assistant(1, "Hello")), &mut state, Some("m1")),
            [Step::Send("Hello".into())]
        );
        assert_eq!(
            show(plan(&capabilities, &state, &assistant(2, " world")), &mut state, Some("m2")),
            [Step::Send("world".into())]
        );
    }

    #[test]
    fn a_long_reply_is_split_for_the_channel_and_nothing_is_lost() {
        let text = "word ".repeat(100);
        let mut state = RenderState::default();
        let steps = show(plan(&rich(200), &state, &assistant(1, &text)), &mut state, Some("m3"));
        let texts: Vec<&str> = steps
            .iter()
            .map(|step| match step {
                Step::Send(text) => text.as_str(),
                other => panic!("a reply too long to edit goes as new messages: {other:?}"),
            })
            .collect();
        assert_eq!(texts.len(), 3);
        assert!(texts.iter().all(|t| text::utf16_len(t) <= 200));
        assert_eq!(texts.concat(), text.trim());
        let gap = format!("x{}y", " ".repeat(300));
        let steps = show(plan(&rich(100), &RenderState::default(), &assistant(1, &gap)), &mut state, None);
        assert!(steps.len() > 1, "{steps:?}");
        assert!(
            steps.iter().all(|s| matches!(s, Step::Send(t) if !t.trim().is_empty())),
            "no blank message: {steps:?}"
        );
    }

    #[test]
    fn a_tool_call_is_one_line_edited_as_it_advances() {
        let (capabilities, mut state) = (rich(4096), RenderState::default());
        let running = event("tool.call", 1, json!({"id": "t1", "name": "grep"}));
        assert_eq!(
            show(plan(&capabilities, &state, &running), &mut state, Some("m4")),
            [Step::Send("Tool running: grep".into())]
        );
        assert_eq!(plan(&capabilities, &state, &running), Plan::Nothing { message_id: Some("m4".into()) });
        let failed =
            event("tool.call", 2, json!({"id": "t1", "name": "grep", "status": "failed", "error": "no such file"}));
        let text = "Tool failed: grep\nno such file".to_owned();
        assert_eq!(
            show(plan(&capabilities, &state, &failed), &mut state, Some("m4")),
            [Step::Edit { message_id: "m4".into(), text }]
        );
    }

    fn prompt(plan: Plan) -> Prompt {
        let Plan::Ask(prompt) = plan else { panic!("expected a prompt, got {plan:?}") };
        prompt
    }

    #[test]
    fn an_approval_has_buttons_where_the_channel_shows_them_and_commands_elsewhere() {
        let requested = event(
            "permission.requested",
            1,
            json!({"permissionId": "p1", "title": "Run rm?", "description": "rm -rf build"}),
        );
        let approval = prompt(plan(&rich(4096), &RenderState::default(), &requested));
        assert_eq!((approval.interaction.kind, approval.interaction.target_id.as_str()), ("permission", "p1"));
        assert_eq!(approval.interaction.session_id, "s1");
        let rows = vec![vec![
            Button { label: "Approve".into(), token: "apv:tok".into(), style: "success" },
            Button { label: "Deny".into(), token: "den:tok".into(), style: "danger" },
        ]];
        assert_eq!(approval.steps("tok", &rich(4096)), [Step::Buttons { text: "Run rm?\nrm -rf build".into(), rows }]);
        let fallback = Step::Send("Run rm?\nrm -rf build\n/approve tok\n/deny tok".into());
        assert_eq!(
            approval.steps("tok", &Capabilities::text_only(4096)),
            std::slice::from_ref(&fallback),
            "no buttons"
        );
        let mut cramped = rich(4096);
        cramped.max_button_token_bytes = 5;
        assert_eq!(approval.steps("tok", &cramped), [fallback], "a token too long for the buttons");
        let without_id = event("permission.requested", 2, json!({"title": "?"}));
        assert_eq!(plan(&rich(4096), &RenderState::default(), &without_id), Plan::Nothing { message_id: None });
    }

    #[test]
    fn a_question_with_options_has_an_answer_button_each_and_a_reject() {
        let asked = event(
            "question.asked",
            1,
            json!({"requestId": "q1", "questions": [{"question": "Colour?", "options": ["Red", {"label": "Blue", "description": "calm"}]}]}),
        );
        let question = prompt(plan(&rich(4096), &RenderState::default(), &asked));
        assert_eq!((question.interaction.kind, question.interaction.target_id.as_str()), ("question", "q1"));
        let text = "Question requested\nColour?\n- Red\n- Blue: calm".to_owned();
        let answer = |label: &str| format!("ans:{}:tok", crate::util::base64::encode_url(label.as_bytes()));
        let rows = vec![
            vec![
                Button { label: "Red".into(), token: answer("Red"), style: "primary" },
                Button { label: "Blue".into(), token: answer("Blue"), style: "primary" },
            ],
            vec![Button { label: "Reject".into(), token: "rej:tok".into(), style: "danger" }],
        ];
        assert_eq!(question.steps("tok", &rich(4096)), [Step::Buttons { text: text.clone(), rows }]);
        let fallback = format!("{text}\n/answer tok <response>\n/reject tok");
        assert_eq!(question.steps("tok", &Capabilities::text_only(4096)), [Step::Send(fallback)]);
    }

    #[test]
    fn a_small_new_artifact_goes_as_a_file_with_its_link_as_the_fallback_and_once() {
        let mut state = RenderState::default();
        let created = event("artifact.created", 7, json!({"artifactId": "f1", "filename": "a/b.txt", "size": 10}));
        let link = "a-b.txt: https://cloud.test/artifacts/f1".to_owned();
        let as_link = plan(&Capabilities::text_only(4096), &state, &created);
        let remember = Some(Remember::Artifact { id: "f1".into(), sequence: 7 });
        let expected = Show { steps: vec![Step::Send(link.clone())], message_id: None, remember };
        assert_eq!(as_link, Plan::Show(expected), "no files on this channel: the link");
        let file =
            Step::File { artifact_id: "f1".into(), filename: "a-b.txt".into(), max_bytes: 1000, link: vec![link] };
        assert_eq!(show(plan(&rich(4096), &state, &created), &mut state, Some("m5")), [file]);
        assert_eq!(plan(&rich(4096), &state, &created), Plan::Nothing { message_id: None }, "shown once");
        let updated = event(
            "artifact.updated",
            8,
            json!({"artifactId": "f1", "filename": "b.txt", "size": 10, "status": "final"}),
        );
        assert_eq!(
            show(plan(&rich(4096), &state, &updated), &mut state, None),
            [Step::Send("Artifact updated: b.txt (final): https://cloud.test/artifacts/f1".into())],
            "an update is a link"
        );
        let large = event("artifact.created", 9, json!({"artifactId": "f2", "filename": "big.bin", "size": 1001}));
        let steps = show(plan(&rich(4096), &state, &large), &mut state, None);
        assert!(matches!(steps.as_slice(), [Step::Send(_)]), "too large to send: the link, {steps:?}");
    }

    #[test]
    fn other_events_only_move_the_cursor() {
        let idle = event("session.idle", 1, json!({}));
        assert_eq!(plan(&rich(4096), &RenderState::default(), &idle), Plan::Nothing { message_id: None });
    }

    #[test]
    fn delivery_texts() {
        assert_eq!(delivery_text(&json!({"text": "done", "message": "x"})), "done");
        assert_eq!(delivery_text(&json!({"message": "failed run"})), "failed run");
        assert_eq!(
            delivery_text(
                &json!({"workflowId": "nightly", "runId": "r1", "status": "completed", "summary": "3 reports"})
            ),
            "Workflow nightly completed.\n3 reports"
        );
        assert_eq!(delivery_text(&json!({"other": 1})), "{\"other\":1}");
    }
}
