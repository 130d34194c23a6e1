//! Outbound deliveries: enqueue, ack, list, retry and dead-letter,
//! each limited to the deliveries the caller may see. The claiming stream is in `sse.rs`.

use std::rc::Rc;

use http::Response;
use serde_json::{json, Value};

use crate::devcloud::call::Call;
use crate::devcloud::respond::{error, json_response};
use crate::devcloud::store::{Delivery, Store};
use crate::devcloud::time::{iso, parse_iso};
use crate::devcloud::DevCloud;
use crate::http::response::ResponseBody;

/// Deliveries a principal may see: in scope, and for gateway tokens only those it claimed last.
fn delivery_visible(call: &Call, delivery: &Delivery) -> bool {
    !call.principal.is_gateway_only()
        || (call.principal.grants.contains(&delivery.channel_binding_id)
            && delivery.last_claimed_by.as_deref() == Some(call.principal.token_id.as_str()))
}

pub(super) fn ack(cloud: &Rc<DevCloud>, call: &Call, delivery_id: &str) -> Response<ResponseBody> {
    let Some(status) = call.text("status").filter(|s| ["sent", "failed", "dead"].contains(&s.as_str())) else {
        return error(400, "Channel delivery ack requires status sent, failed, or dead.");
    };
    let claimant = call
        .text("claimedBy")
        .or_else(|| call.query_value("claimedBy"))
        .unwrap_or_else(|| call.principal.token_id.clone());
    let next_attempt = match call.body.get("nextAttemptAt") {
        Some(Value::String(text)) => match parse_iso(text) {
            Some(ms) => Some(ms),
            None => return error(400, "Date value must be a valid ISO timestamp."),
        },
        _ => None,
    };
    let mut store = cloud.store.borrow_mut();
    let found = unique_delivery(&store, call, delivery_id, Some(&claimant));
    cloud.records.borrow_mut().ack(delivery_id, &status, found.is_some(), call.body.get("nextAttemptAt"));
    let Some(index) = found else {
        return error(404, "Channel delivery was not found.");
    };
    let last_error = call.text("lastError").map(|e| e.chars().take(1024).collect());
    let public = settle_delivery(&mut store, index, status, last_error, next_attempt);
    drop(store);
    cloud.changed.notify_waiters();
    json_response(200, &json!({"delivery": public}))
}

/// The one delivery with this id the caller may act on (filtered by the body's binding and,
/// for acks, the claimant); `None` for zero or several matches.
fn unique_delivery(store: &Store, call: &Call, delivery_id: &str, claimant: Option<&str>) -> Option<usize> {
    let binding = call.text("channelBindingId");
    let mut matches = store.deliveries.iter().enumerate().filter(|(_, d)| {
        d.delivery_id == delivery_id
            && binding.as_ref().is_none_or(|b| *b == d.channel_binding_id)
            && claimant.is_none_or(|c| d.claimed_by.as_deref() == Some(c))
            && delivery_visible(call, d)
    });
    match (matches.next(), matches.next()) {
        (Some((index, _)), None) => Some(index),
        _ => None,
    }
}

/// Sets a delivery's outcome and releases its claim; returns its public form.
fn settle_delivery(
    store: &mut Store,
    index: usize,
    status: String,
    last_error: Option<String>,
    next_attempt_ms: Option<u64>,
) -> Value {
    let (now_ms, now) = store.now();
    let delivery = &mut store.deliveries[index];
    delivery.status = status;
    delivery.claimed_by = None;
    delivery.claim_expires_at = None;
    delivery.claim_expires_ms = 0;
    delivery.last_error = last_error;
    let next = next_attempt_ms.unwrap_or(now_ms);
    delivery.next_attempt_ms = next;
    delivery.next_attempt_at = iso(next);
    delivery.updated_at = now;
    delivery.public()
}

pub(super) fn list_deliveries(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let status =
        call.query_value("status").filter(|s| ["pending", "claimed", "sent", "failed", "dead"].contains(&s.as_str()));
    let limit = call.query_value("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).clamp(1, 200);
    let id = call.query_value("deliveryId");
    let binding = call.query_value("channelBindingId");
    let store = cloud.store.borrow();
    let mut found: Vec<&Delivery> = store
        .deliveries
        .iter()
        .filter(|d| {
            delivery_visible(call, d)
                && id.as_ref().is_none_or(|i| *i == d.delivery_id)
                && status.as_ref().is_none_or(|s| *s == d.status)
                && binding.as_ref().is_none_or(|b| *b == d.channel_binding_id)
        })
        .collect();
    found.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| b.created_at.cmp(&a.created_at))
            .then_with(|| b.sequence.cmp(&a.sequence))
    });
    let deliveries: Vec<Value> = found.into_iter().take(limit).map(Delivery::public).collect();
    json_response(200, &json!({"deliveries": deliveries}))
}

pub(super) fn delivery_action(
    cloud: &Rc<DevCloud>,
    call: &Call,
    delivery_id: &str,
    dead: bool,
) -> Response<ResponseBody> {
    let mut store = cloud.store.borrow_mut();
    let Some(index) = unique_delivery(&store, call, delivery_id, None) else {
        return error(404, "Channel delivery was not found.");
    };
    let (status, last_error) = if dead {
        ("dead", Some(call.text("lastError").unwrap_or_else(|| "Manually dead-lettered by gateway operator.".into())))
    } else {
        ("failed", None)
    };
    let public = settle_delivery(&mut store, index, status.into(), last_error, None);
    drop(store);
    cloud.changed.notify_waiters();
    json_response(200, &json!({"delivery": public}))
}

pub(super) fn enqueue_delivery(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    let Some(binding_id) = call.text("channelBindingId") else {
        return error(400, "Channel delivery requires channelBindingId.");
    };
    let Some(binding) = cloud.store.borrow().channel_binding(&binding_id).cloned() else {
        return error(403, "Gateway API token is not authorized for the requested channel binding.");
    };
    let delivery = cloud.store.borrow_mut().enqueue_delivery(&call.body, &binding);
    cloud.changed.notify_waiters();
    json_response(201, &json!({"delivery": delivery.public()}))
}
