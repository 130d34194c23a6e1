//! The dev Cloud's echo agent: it answers every prompt with session events a real agent run
//! produces (status, the submitted prompt, an assistant message echoing it, idle). `/ask` makes it
//! ask a question and `/approve-me` request a permission, so approval flows can be exercised;
//! answers and approvals produce a follow-up message.

use std::rc::Rc;

use serde_json::{json, Value};

use super::DevCloud;

/// Runs a session command in the background, as Cloud's worker does after the 202.
pub fn run_command(cloud: &Rc<DevCloud>, session_id: String, command: Value) {
    let cloud = Rc::clone(cloud);
    cloud.busy.set(cloud.busy.get() + 1);
    tokio::task::spawn_local(async move {
        tokio::time::sleep(cloud.options.agent_delay).await;
        let events = respond(&session_id, &command);
        let mut store = cloud.store.borrow_mut();
        for (event_type, payload) in events {
            store.append_event(&session_id, event_type, payload);
        }
        if let Some(session) = store.sessions.get_mut(&session_id) {
            session.status = "idle".into();
        }
        drop(store);
        cloud.busy.set(cloud.busy.get().saturating_sub(1));
        cloud.changed.notify_waiters();
    });
}

/// The events a command produces, in order.
fn respond(session_id: &str, command: &Value) -> Vec<(&'static str, Value)> {
    let command_id = command["commandId"].as_str().unwrap_or("command");
    let runtime_session = format!("dev-runtime-{}", &session_id[session_id.len().saturating_sub(8)..]);
    let reply = |n: &str, content: &str| {
        let message_id = format!("{runtime_session}:assistant:{command_id}:{n}");
        ("assistant.message", json!({"sessionId": runtime_session, "messageId": message_id, "content": content}))
    };
    let mut events = vec![("session.status", json!({"sessionId": runtime_session, "statusType": "running"}))];
    let payload = &command["payload"];
    match command["kind"].as_str().unwrap_or("") {
        "prompt" => {
            let text = payload["text"].as_str().unwrap_or("");
            events.push((
                "prompt.submitted",
                json!({"commandId": command_id, "messageId": format!("{command_id}:user"), "text": text, "agent": payload["agent"].as_str().unwrap_or("build")}),
            ));
            events.push(reply("1", &format!("echo: {text}")));
            events.extend(requests_in_prompt(&runtime_session, command_id, text));
        }
        "permission.respond" => {
            let allowed = permission_allowed(&payload["response"]);
            let id = payload["permissionId"].clone();
            events.push((
                "permission.resolved",
                json!({"sessionId": runtime_session, "permissionId": id, "id": id, "reply": if allowed { "once" } else { "reject" }}),
            ));
            events.push(reply(
                "2",
                if allowed { "Permission granted: the command ran." } else { "Permission denied: nothing ran." },
            ));
        }
        "question.reply" => {
            let answers: Vec<&str> =
                payload["answers"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let id = payload["requestId"].clone();
            events.push((
                "question.resolved",
                json!({"sessionId": runtime_session, "requestId": id, "id": id, "answers": answers}),
            ));
            events.push(reply("2", &format!("You answered: {}", answers.join(", "))));
        }
        "question.reject" => {
            let id = payload["requestId"].clone();
            events.push((
                "question.resolved",
                json!({"sessionId": runtime_session, "requestId": id, "id": id, "rejected": true}),
            ));
            events.push(reply("2", "Question rejected."));
        }
        _ => {}
    }
    events.push(("session.idle", json!({"sessionId": runtime_session})));
    events
}

/// What a prompt's text asks of the echo agent besides the echo: a question (`/ask`), a
/// permission request (`/approve-me`).
fn requests_in_prompt(runtime_session: &str, command_id: &str, text: &str) -> Vec<(&'static str, Value)> {
    let mut events = Vec::new();
    if text.contains("/ask") {
        let id = format!("{runtime_session}:question:{command_id}");
        events.push((
            "question.asked",
            json!({
                "sessionId": runtime_session, "requestId": id, "id": id,
                "questions": [{"header": "Question", "question": "Which option should the echo agent pick?",
                    "options": [{"label": "Yes", "description": "Go ahead"}, {"label": "No", "description": "Stop here"}],
                    "multiple": false, "custom": true}],
            }),
        ));
    }
    if text.contains("/approve-me") {
        let id = format!("{runtime_session}:permission:{command_id}");
        events.push((
            "permission.requested",
            json!({"sessionId": runtime_session, "permissionId": id, "id": id, "tool": "bash", "title": "Permission requested",
                "description": "Allow the echo agent to run a harmless command?", "input": {"command": "echo hello"}}),
        ));
    }
    events
}

/// Whether a permission response allows the request, in any of the shapes Cloud accepts.
fn permission_allowed(response: &Value) -> bool {
    response.get("allowed") == Some(&Value::Bool(true))
        || *response == Value::Bool(true)
        || *response == "allow"
        || *response == "once"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_echo_and_can_ask_or_request_permission() {
        let command =
            json!({"commandId": "c1", "kind": "prompt", "payload": {"text": "hi /ask /approve-me", "agent": "build"}});
        let types: Vec<&str> = respond("channel_session_0123456789", &command).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            types,
            [
                "session.status",
                "prompt.submitted",
                "assistant.message",
                "question.asked",
                "permission.requested",
                "session.idle"
            ]
        );
        let events = respond("s", &command);
        assert_eq!(events[2].1["content"], "echo: hi /ask /approve-me");
        let deny = json!({"commandId": "c2", "kind": "permission.respond", "payload": {"permissionId": "p", "response": {"allowed": false}}});
        assert_eq!(respond("s", &deny)[2].1["content"], "Permission denied: nothing ran.");
    }
}
