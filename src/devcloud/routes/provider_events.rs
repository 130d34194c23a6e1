//! Provider event claims: claim an inbound platform event once, with a
//! lease, and complete it as processed or failed.

use http::Response;
use serde_json::{json, Value};

use super::authorize::resolve_channel_binding;
use crate::devcloud::call::Call;
use crate::devcloud::respond::{error, json_response, store_full};
use crate::devcloud::store::{hashed_id, ProviderEvent, MAX_RECORDS};
use crate::devcloud::time::iso;
use crate::devcloud::DevCloud;
use crate::http::response::ResponseBody;

pub(super) fn claim_event(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let event_type = call.text("eventType").filter(|t| ["message", "command", "interaction"].contains(&t.as_str()));
    let (Some(provider), Some(instance), Some(provider_event_id), Some(event_type), Some(claimed_by)) = (
        call.text("provider"),
        call.text("providerInstanceId"),
        call.text("providerEventId"),
        event_type,
        call.text("claimedBy"),
    ) else {
        return error(
            400,
            "Provider event claim requires provider, providerInstanceId, providerEventId, eventType, and claimedBy.",
        );
    };
    let binding = match resolve_channel_binding(cloud, call, &provider) {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    let ttl = call.body.get("ttlMs").and_then(Value::as_u64).filter(|t| *t > 0).unwrap_or(300_000).clamp(1, 3_600_000);
    let mut store = cloud.store.borrow_mut();
    let (now_ms, now) = store.now();
    let workspace = binding.external_workspace_id.clone();
    let event_id = hashed_id(
        "channel_provider_event_",
        &[
            &store.org_id,
            &binding.binding_id,
            &provider,
            &instance,
            workspace.as_deref().unwrap_or(""),
            &event_type,
            &provider_event_id,
        ],
    );
    let mut metadata = call.body.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    metadata.insert("channelBindingId".into(), Value::from(binding.binding_id.clone()));
    if !store.provider_events.contains_key(&event_id) && store.provider_events.len() >= MAX_RECORDS {
        return store_full();
    }
    let org = store.org_id.clone();
    let event = store.provider_events.entry(event_id.clone()).or_insert_with(|| ProviderEvent {
        event_id: event_id.clone(),
        org_id: org,
        channel_binding_id: Some(binding.binding_id.clone()),
        provider: provider.clone(),
        provider_instance_id: instance.clone(),
        external_workspace_id: workspace.clone(),
        provider_event_id: provider_event_id.clone(),
        event_type: event_type.clone(),
        status: "received".into(),
        claimed_by: None,
        claim_expires_at: None,
        claim_expires_ms: 0,
        attempt_count: 0,
        retryable: true,
        last_error: None,
        metadata: json!({}),
        processed_at: None,
        created_at: now.clone(),
        updated_at: now.clone(),
    });
    let reclaimable = event.status == "received"
        || (event.status == "failed" && event.retryable)
        || (event.status == "processing" && event.claim_expires_ms <= now_ms);
    event.updated_at = now;
    if reclaimable {
        event.status = "processing".into();
        event.claimed_by = Some(claimed_by);
        event.claim_expires_ms = now_ms + ttl;
        event.claim_expires_at = Some(iso(now_ms + ttl));
        event.attempt_count += 1;
        event.retryable = true;
        event.last_error = None;
        event.metadata = Value::Object(metadata);
    }
    json_response(200, &json!({"event": event, "claimed": reclaimable, "duplicate": !reclaimable}))
}

pub(super) fn complete_event(cloud: &DevCloud, call: &Call, event_id: &str) -> Response<ResponseBody> {
    let status = call.text("status").filter(|s| s == "processed" || s == "failed");
    let (Some(claimed_by), Some(status)) = (call.text("claimedBy"), status) else {
        return error(400, "Provider event completion requires claimedBy and status processed or failed.");
    };
    let mut store = cloud.store.borrow_mut();
    let (_, now) = store.now();
    let principal = &call.principal;
    let Some(event) = store.provider_events.get_mut(event_id).filter(|e| {
        e.claimed_by.as_deref() == Some(claimed_by.as_str())
            && (!principal.is_gateway_only()
                || e.channel_binding_id.as_ref().is_some_and(|b| principal.grants.contains(b)))
    }) else {
        return error(404, "Provider event claim was not found.");
    };
    let failed = status == "failed";
    event.retryable = failed && call.body.get("retryable").is_none_or(|r| *r == Value::Bool(true));
    event.last_error = if failed { call.text("lastError").map(|e| e.chars().take(1024).collect()) } else { None };
    event.processed_at = (!failed).then(|| now.clone());
    event.status = status;
    event.claimed_by = None;
    event.claim_expires_at = None;
    event.claim_expires_ms = 0;
    event.updated_at = now;
    json_response(200, &json!({"event": event}))
}
