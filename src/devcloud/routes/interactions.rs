//! Approval and question interactions: create one for a pending agent
//! request, and resolve it from a chat, which queues the agent command that answers it.

use std::rc::Rc;

use http::Response;
use serde_json::{json, Value};

use super::authorize::{actor_allowed, APPROVE_ROLES};
use crate::devcloud::call::Call;
use crate::devcloud::respond::{error, json_response, policy_error, store_full};
use crate::devcloud::store::{hashed_id, random_base64url, Interaction, MAX_RECORDS};
use crate::devcloud::time::{iso, parse_iso};
use crate::devcloud::{agent, DevCloud};
use crate::http::response::ResponseBody;
use crate::util::ids::random_id;

pub(super) fn create_interaction(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let kind = call.text("kind").filter(|k| k == "permission" || k == "question");
    let (Some(agent_id), Some(session_id), Some(provider), Some(kind), Some(target_id)) =
        (call.text("agentId"), call.text("sessionId"), call.text("provider"), kind, call.text("targetId"))
    else {
        return error(400, "Channel interaction requires agentId, sessionId, provider, kind, and targetId.");
    };
    let mut store = cloud.store.borrow_mut();
    let binding = match call.text("sessionBindingId") {
        Some(id) => store.session_binding(&id).cloned(),
        None => store
            .session_bindings
            .iter()
            .find(|b| {
                b.session_id == session_id && b.agent_id == agent_id && b.provider == provider && b.status == "active"
            })
            .cloned(),
    };
    let Some(binding) =
        binding.filter(|b| b.session_id == session_id && b.agent_id == agent_id && b.provider == provider)
    else {
        return error(403, "Gateway API token is not authorized for the requested channel binding.");
    };
    let requested = call.text("interactionId").unwrap_or_else(|| format!("gw_{kind}_{}", random_base64url(9)));
    let interaction_id = hashed_id("channel_interaction_", &[&store.org_id, &binding.channel_binding_id, &requested]);
    if store.interactions.contains_key(&interaction_id) {
        return error(500, "Internal server error.");
    }
    if store.interactions.len() >= MAX_RECORDS {
        return store_full();
    }
    let (now_ms, now) = store.now();
    let expires_ms = call.text("expiresAt").and_then(|t| parse_iso(&t)).unwrap_or(now_ms + 600_000);
    let token = format!("occi_{interaction_id}_{}", call.text("tokenSecret").unwrap_or_else(|| random_base64url(24)));
    let interaction = Interaction {
        interaction_id: interaction_id.clone(),
        org_id: store.org_id.clone(),
        agent_id,
        channel_binding_id: Some(binding.channel_binding_id.clone()),
        session_binding_id: Some(binding.binding_id.clone()),
        session_id,
        provider,
        external_interaction_id: call.text("externalInteractionId"),
        kind,
        target_id,
        status: "pending".into(),
        created_by_identity_id: None,
        expires_at: iso(expires_ms),
        expires_ms,
        used_at: None,
        created_at: now.clone(),
        updated_at: now,
        token: token.clone(),
    };
    store.interactions.insert(interaction_id, interaction.clone());
    json_response(201, &json!({"interaction": interaction, "plaintextToken": token}))
}

pub(super) fn resolve_interaction(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    if !cloud.store.borrow().allow_remote_approvals {
        return policy_error(
            403,
            "Remote question and approval responses are disabled for this cloud profile.",
            "gateway-remote-approval-disabled",
        );
    }
    let not_found = || error(404, "Channel interaction was not found or is no longer pending.");
    let provider = call.text("provider").unwrap_or_default();
    let Some(interaction) = find_interaction(cloud, call, &provider) else { return not_found() };
    let (now_ms, now) = cloud.store.borrow().now();
    if interaction.status != "pending" || interaction.expires_ms <= now_ms {
        if interaction.status == "pending" {
            if let Some(stored) = cloud.store.borrow_mut().interactions.get_mut(&interaction.interaction_id) {
                stored.status = "expired".into();
            }
        }
        return not_found();
    }
    let workspace = cloud
        .store
        .borrow()
        .session_binding(interaction.session_binding_id.as_deref().unwrap_or(""))
        .and_then(|b| b.external_workspace_id.clone());
    if interaction.provider != provider || !actor_allowed(cloud, call, &provider, &workspace, &APPROVE_ROLES) {
        return not_found();
    }
    let chat = call.text("externalChatId");
    let same_chat = cloud.store.borrow().session_bindings.iter().any(|b| {
        b.session_id == interaction.session_id && b.status == "active" && Some(&b.external_chat_id) == chat.as_ref()
    });
    if !same_chat {
        return not_found();
    }
    let (kind, payload) = command_for(&interaction, call);
    let mut store = cloud.store.borrow_mut();
    let org = store.org_id.clone();
    let Some(stored) = store.interactions.get_mut(&interaction.interaction_id) else { return not_found() };
    stored.status = "used".into();
    stored.used_at = Some(now.clone());
    stored.updated_at = now.clone();
    let public = json!(stored);
    let Some(session) = store.sessions.get_mut(&interaction.session_id) else { return not_found() };
    let command = json!({
        "commandId": random_id(), "tenantId": org, "userId": "dev-account", "sessionId": interaction.session_id, "kind": kind, "payload": payload,
        "targetLeaseToken": null, "createdSequence": session.next_sequence, "createdAt": now, "status": "pending", "attemptCount": 0,
    });
    session.commands.push(command.clone());
    let view = session.view(&org);
    drop(store);
    agent::run_command(cloud, interaction.session_id.clone(), command.clone());
    json_response(
        202,
        &json!({"interaction": public, "command": command, "processed": 0, "view": view, "projectionFence": null}),
    )
}

/// The interaction a resolve call names: by its token, else by its one external id for this
/// provider (two matches are as good as none).
fn find_interaction(cloud: &DevCloud, call: &Call, provider: &str) -> Option<Interaction> {
    let store = cloud.store.borrow();
    let found = match call.text("token") {
        Some(token) => store.interactions.values().find(|i| crate::util::ct::constant_time_equal(&i.token, &token)),
        None => {
            let external = call.text("externalInteractionId");
            let mut matches = store
                .interactions
                .values()
                .filter(|i| external.is_some() && i.external_interaction_id == external && i.provider == provider);
            match (matches.next(), matches.next()) {
                (Some(one), None) => Some(one),
                _ => None,
            }
        }
    };
    found.cloned()
}

/// The session command a resolved interaction becomes: its kind and payload.
fn command_for(interaction: &Interaction, call: &Call) -> (&'static str, Value) {
    if interaction.kind == "permission" {
        (
            "permission.respond",
            json!({"permissionId": interaction.target_id, "response": call.body.get("response").cloned().unwrap_or(Value::Null)}),
        )
    } else if call.body.get("reject") == Some(&Value::Bool(true)) {
        ("question.reject", json!({"requestId": interaction.target_id}))
    } else {
        (
            "question.reply",
            json!({"requestId": interaction.target_id, "answers": call.body.get("answers").cloned().unwrap_or_else(|| json!([]))}),
        )
    }
}
