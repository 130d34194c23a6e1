//! Session calls: bind a chat thread to a session, find it by
//! thread, read its snapshot, send it a prompt, and move its binding's cursor.

use std::rc::Rc;

use http::Response;
use serde_json::{json, Value};

use super::authorize::{actor_allowed, resolve_channel_binding, PROMPT_ROLES};
use crate::devcloud::call::Call;
use crate::devcloud::respond::{binding_scope_required, error, json_response, store_full};
use crate::devcloud::store::{hashed_id, Session, SessionBinding, MAX_RECORDS};
use crate::devcloud::{agent, DevCloud};
use crate::http::response::ResponseBody;
use crate::util::ids::random_id;

pub(super) fn bind_session(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    let (Some(channel_binding_id), Some(provider), Some(chat), Some(thread)) = (
        call.text("channelBindingId"),
        call.text("provider"),
        call.text("externalChatId"),
        call.text("externalThreadId"),
    ) else {
        return error(
            400,
            "Channel session binding requires channelBindingId, provider, externalChatId, and externalThreadId.",
        );
    };
    let binding = match resolve_channel_binding(cloud, call, &provider) {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    if !actor_allowed(cloud, call, &provider, &binding.external_workspace_id, &PROMPT_ROLES) {
        return error(403, "Channel actor identity is not authorized for this channel session.");
    }
    let mut store = cloud.store.borrow_mut();
    let workspace = binding.external_workspace_id.clone();
    if let Some(existing) = store.session_bindings.iter().find(|b| {
        b.provider == provider
            && b.external_workspace_id == workspace
            && b.external_chat_id == chat
            && b.external_thread_id == thread
    }) {
        if existing.channel_binding_id != channel_binding_id {
            return error(409, "Channel thread is already bound to a different channel authority.");
        }
        let session = store.sessions.get(&existing.session_id).map(|s| s.view(&store.org_id)).unwrap_or(Value::Null);
        return json_response(200, &json!({"binding": existing, "session": session}));
    }
    if store.session_bindings.len() >= MAX_RECORDS || store.sessions.len() >= MAX_RECORDS {
        return store_full();
    }
    let org = store.org_id.clone();
    let session_id =
        hashed_id("channel_session_", &[&org, &provider, workspace.as_deref().unwrap_or(""), &chat, &thread]);
    let (_, now) = store.now();
    let title: String = call.text("title").unwrap_or_else(|| format!("Channel {provider}")).chars().take(256).collect();
    store.sessions.entry(session_id.clone()).or_insert_with(|| Session {
        session_id: session_id.clone(),
        title: title.clone(),
        status: "idle".into(),
        created_at: now.clone(),
        updated_at: now.clone(),
        events: Vec::new(),
        next_sequence: 1,
        commands: Vec::new(),
    });
    store.append_event(&session_id, "session.created", json!({"title": title, "runtimePending": true}));
    let record = SessionBinding {
        binding_id: random_id(),
        org_id: org,
        agent_id: binding.agent_id.clone(),
        channel_binding_id,
        provider,
        external_workspace_id: workspace,
        external_thread_id: thread,
        external_chat_id: chat,
        session_id: session_id.clone(),
        last_event_sequence: 0,
        last_workspace_sequence: 0,
        last_chat_message_id: None,
        status: "active".into(),
        created_at: now.clone(),
        updated_at: now,
    };
    store.session_bindings.push(record.clone());
    let session = store.sessions.get(&session_id).map(|s| s.view(&store.org_id)).unwrap_or(Value::Null);
    drop(store);
    cloud.changed.notify_waiters();
    json_response(200, &json!({"binding": record, "session": session}))
}

pub(super) fn find_by_thread(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let (Some(provider), Some(chat), Some(thread)) =
        (call.query_value("provider"), call.query_value("externalChatId"), call.query_value("externalThreadId"))
    else {
        return error(400, "Channel thread lookup requires provider, externalChatId, and externalThreadId.");
    };
    let workspace = call.query_value("externalWorkspaceId");
    let store = cloud.store.borrow();
    let found = store.session_bindings.iter().find(|b| {
        b.provider == provider
            && b.external_chat_id == chat
            && b.external_thread_id == thread
            && b.external_workspace_id == workspace
            && b.status == "active"
            && (!call.principal.is_gateway_only() || call.principal.grants.contains(&b.channel_binding_id))
    });
    match found {
        Some(binding) => {
            let session = store.sessions.get(&binding.session_id).map(|s| s.view(&store.org_id)).unwrap_or(Value::Null);
            json_response(200, &json!({"binding": binding, "session": session}))
        }
        None => error(404, "Channel session binding was not found."),
    }
}

pub(super) fn snapshot(cloud: &DevCloud, session_binding_id: &str) -> Response<ResponseBody> {
    let store = cloud.store.borrow();
    let Some(binding) = store.session_binding(session_binding_id) else { return binding_scope_required() };
    match store.sessions.get(&binding.session_id) {
        Some(session) => json_response(200, &session.view(&store.org_id)),
        None => error(404, "Cloud session was not found."),
    }
}

pub(super) fn prompt(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    let (Some(binding_id), Some(text)) = (
        call.text("bindingId"),
        call.body.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()).map(str::to_owned),
    ) else {
        return error(400, "Channel prompt requires bindingId and text.");
    };
    let Some(binding) = cloud.store.borrow().session_binding(&binding_id).cloned() else {
        return binding_scope_required();
    };
    if !actor_allowed(cloud, call, &binding.provider, &binding.external_workspace_id, &PROMPT_ROLES) {
        return error(403, "Channel actor identity is not authorized for this channel session.");
    }
    let agent = call.text("agent").unwrap_or_else(|| "build".into());
    let mut store = cloud.store.borrow_mut();
    let org = store.org_id.clone();
    let key = call.text("idempotencyKey");
    let command_id = match &key {
        Some(key) => hashed_id("channel_command_", &[&org, &binding_id, key]),
        None => random_id(),
    };
    let mut records = cloud.records.borrow_mut();
    let mut record = |created| records.prompt(key.as_deref().unwrap_or(""), created);
    let (_, now) = store.now();
    let Some(session) = store.sessions.get_mut(&binding.session_id) else {
        return error(404, "Cloud session was not found.");
    };
    if let Some(existing) = session.commands.iter().find(|c| c["commandId"] == command_id.as_str()).cloned() {
        record(false);
        if existing["payload"]["text"] != text.as_str() || existing["payload"]["agent"] != agent.as_str() {
            return error(500, "Internal server error.");
        }
        let view = session.view(&org);
        return json_response(
            202,
            &json!({"binding": binding, "command": existing, "processed": 0, "view": view, "projectionFence": null}),
        );
    }
    let command = json!({
        "commandId": command_id, "tenantId": org, "userId": "dev-account", "sessionId": binding.session_id, "kind": "prompt",
        "payload": {"text": text, "agent": agent}, "targetLeaseToken": null, "createdSequence": session.next_sequence, "createdAt": now,
        "status": "pending", "claimedBy": null, "claimedLeaseToken": null, "attemptCount": 0, "availableAt": now,
        "lastErrorCode": null, "lastErrorSummary": null, "ackedAt": null, "error": null,
    });
    session.commands.push(command.clone());
    record(true);
    let view = session.view(&org);
    drop(store);
    drop(records);
    agent::run_command(cloud, binding.session_id.clone(), command.clone());
    json_response(
        202,
        &json!({"binding": binding, "command": command, "processed": 0, "view": view, "projectionFence": null}),
    )
}

pub(super) fn cursor(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let Some(binding_id) = call.text("bindingId") else {
        return error(400, "Channel cursor update requires bindingId.");
    };
    let number = |key: &str| call.body.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (events, workspace) = (number("lastEventSequence"), number("lastWorkspaceSequence"));
    let mut store = cloud.store.borrow_mut();
    let (_, now) = store.now();
    let Some(binding) = store.session_bindings.iter_mut().find(|b| b.binding_id == binding_id) else {
        return error(404, "Channel session binding was not found.");
    };
    if events < binding.last_event_sequence || workspace < binding.last_workspace_sequence {
        let stored = json!(binding);
        return json_response(
            200,
            &json!({"binding": stored, "result": {"ok": false, "reason": "stale", "binding": stored}}),
        );
    }
    binding.last_event_sequence = events;
    binding.last_workspace_sequence = workspace;
    match call.body.get("lastChatMessageId") {
        Some(Value::String(id)) => binding.last_chat_message_id = Some(id.clone()),
        Some(Value::Null) => binding.last_chat_message_id = None,
        _ => {}
    }
    binding.updated_at = now;
    let stored = json!(binding);
    json_response(200, &json!({"binding": stored, "result": {"ok": true, "binding": stored}}))
}
