//! The dev Cloud's control surface for a harness in another process (`scripts/soak`), which
//! cannot reach the in-process [`Faults`](crate::devcloud::faults::Faults) a test sets: dev-only
//! routes under `/dev/`, answered only to a token with the `admin` scope. Upstream Cloud has no
//! such routes; the dev Cloud is never part of a board build.
//!
//! - `POST /dev/faults` arms faults (JSON, every field optional): `clear` (all off first),
//!   `failNext: [{route, count, status, retryAfterMs}]` (a 429 with `retryAfterMs` carries it in
//!   its body), `latency: [{route, ms}]` (route `*`: every answer), `cutSessionStreamAfter` and
//!   `cutDeliveryStreamAfter` (frames), `deliveryStreamError` (string or null) and
//!   `maxDeliveryLeaseMs` (number or null). Routes are the fault keys of
//!   [`FAULT_KEYS`](crate::devcloud::call::FAULT_KEYS). Answers the armed faults and the counts
//!   of those that fired.
//! - `GET /dev/records?section=…&offset=&limit=` (limit ≤ 5,000) reads what happened: `summary`
//!   (deliveries per status, calls per route, faults fired, prompt and command totals, provider
//!   events per status), or one page of `deliveries` (status, attempts, last error, ack calls),
//!   `commands` (each prompt command's session, text and status), `prompts` (calls per
//!   idempotency key) or `events` (provider-event claims).
//!
//! These requests are not counted as calls, and injected faults never apply to them, so a
//! harness can always switch faults off again.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use http::{Method, Response};
use serde_json::{json, Map, Value};

use crate::devcloud::call::{Principal, FAULT_KEYS};
use crate::devcloud::respond::{error, json_response};
use crate::devcloud::DevCloud;
use crate::http::response::ResponseBody;

/// Largest `POST /dev/faults` body.
pub const MAX_CONTROL_BODY: usize = 64 * 1024;
/// Largest page of `GET /dev/records`.
const MAX_PAGE: usize = 5_000;
/// Characters of a command's text the records show (enough for a harness's marker).
const TEXT_SHOWN: usize = 120;
/// Upper bounds of the numbers `POST /dev/faults` accepts.
const MAX_COUNT: u64 = 1_000_000;
const MAX_MS: u64 = 600_000;

/// Answers a `/dev/…` request of an authenticated caller; `body` is already read (bounded).
pub(super) fn handle(
    cloud: &Rc<DevCloud>,
    principal: &Principal,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> Response<ResponseBody> {
    if !principal.has("admin") {
        return error(403, "The dev Cloud's control routes need an admin token.");
    }
    match (method, path) {
        (&Method::POST, "/dev/faults") => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(input)) => match arm(cloud, &input) {
                Ok(()) => json_response(200, &faults_view(cloud)),
                Err(message) => error(400, &message),
            },
            _ => error(400, "Request body must be a JSON object."),
        },
        (&Method::GET, "/dev/faults") => json_response(200, &faults_view(cloud)),
        (&Method::GET, "/dev/records") => records(cloud, query),
        _ => error(404, "Unknown dev Cloud control route."),
    }
}

fn route_key(name: &str) -> Result<&'static str, String> {
    FAULT_KEYS.iter().find(|k| **k == name).copied().ok_or_else(|| format!("Unknown fault route {name:?}."))
}

fn number(object: &Map<String, Value>, key: &str, max: u64) -> Result<Option<u64>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or_else(|| format!("{key} must be a whole number up to {max}.")),
    }
}

/// Checks the whole request first, then applies it: a bad field arms nothing.
fn arm(cloud: &DevCloud, input: &Map<String, Value>) -> Result<(), String> {
    let entries = |key: &str| -> Result<Vec<Map<String, Value>>, String> {
        match input.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= FAULT_KEYS.len() + 1 => items
                .iter()
                .map(|item| item.as_object().cloned().ok_or_else(|| format!("{key} entries must be objects.")))
                .collect(),
            Some(_) => Err(format!("{key} must be a list of at most {} objects.", FAULT_KEYS.len() + 1)),
        }
    };
    let mut failures = Vec::new();
    for entry in entries("failNext")? {
        let route = route_key(entry.get("route").and_then(Value::as_str).unwrap_or(""))?;
        let count = number(&entry, "count", MAX_COUNT)?.unwrap_or(1) as u32;
        let status = number(&entry, "status", 599)?.filter(|s| *s >= 400).ok_or("status must be 400–599.")? as u16;
        let retry_after_ms = number(&entry, "retryAfterMs", MAX_MS)?;
        failures.push((route, count, status, retry_after_ms));
    }
    let mut latencies = Vec::new();
    for entry in entries("latency")? {
        let name = entry.get("route").and_then(Value::as_str).unwrap_or("");
        let route = if name == "*" { None } else { Some(route_key(name)?) };
        let ms = number(&entry, "ms", MAX_MS)?.unwrap_or(0);
        latencies.push((route, Duration::from_millis(ms)));
    }
    let cut_session = number(input, "cutSessionStreamAfter", MAX_COUNT)?;
    let cut_delivery = number(input, "cutDeliveryStreamAfter", MAX_COUNT)?;
    let lease = number(input, "maxDeliveryLeaseMs", MAX_MS)?;
    let stream_error = match input.get("deliveryStreamError") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) => Some(Some(text.chars().take(256).collect::<String>())),
        Some(_) => return Err("deliveryStreamError must be a string or null.".into()),
    };

    let mut faults = cloud.faults.borrow_mut();
    if input.get("clear") == Some(&Value::Bool(true)) {
        faults.clear();
    }
    for (route, count, status, retry_after_ms) in failures {
        faults.fail_next(route, count, status, retry_after_ms);
    }
    for (route, latency) in latencies {
        match route {
            Some(route) => faults.delay(route, latency),
            None => faults.latency = latency,
        }
    }
    if let Some(frames) = cut_session {
        faults.cut_session_stream_after = Some(frames as u32);
    }
    if let Some(frames) = cut_delivery {
        faults.cut_delivery_stream_after = Some(frames as u32);
    }
    if input.contains_key("maxDeliveryLeaseMs") {
        faults.max_delivery_lease = lease.map(Duration::from_millis);
    }
    if let Some(message) = stream_error {
        faults.delivery_stream_error = message;
    }
    Ok(())
}

fn faults_view(cloud: &DevCloud) -> Value {
    let faults = cloud.faults.borrow();
    let failures: Vec<Value> = faults
        .armed_failures()
        .into_iter()
        .map(|(route, f)| json!({"route": route, "remaining": f.remaining, "status": f.status, "retryAfterMs": f.retry_after_ms}))
        .collect();
    let mut latency: Vec<Value> = faults
        .route_latencies()
        .into_iter()
        .map(|(route, l)| json!({"route": route, "ms": l.as_millis() as u64}))
        .collect();
    if !faults.latency.is_zero() {
        latency.push(json!({"route": "*", "ms": faults.latency.as_millis() as u64}));
    }
    let injected = crate::util::maps::object(faults.injected());
    json!({
        "failNext": failures,
        "latency": latency,
        "cutSessionStreamAfter": faults.cut_session_stream_after,
        "cutDeliveryStreamAfter": faults.cut_delivery_stream_after,
        "deliveryStreamError": faults.delivery_stream_error,
        "maxDeliveryLeaseMs": faults.max_delivery_lease.map(|l| l.as_millis() as u64),
        "injected": injected,
    })
}

/// One page of a section: `offset` items skipped, at most `limit` shown.
#[derive(Clone, Copy)]
struct Page {
    offset: usize,
    limit: usize,
}

impl Page {
    fn of(query: &[(String, String)]) -> Self {
        let value = |key: &str| query.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse::<usize>().ok());
        Page { offset: value("offset").unwrap_or(0), limit: value("limit").unwrap_or(1_000).clamp(1, MAX_PAGE) }
    }

    /// The page of `items` (of `total` in all) as the control API answers it.
    fn answer(self, items: impl Iterator<Item = Value>, total: usize) -> Value {
        let items: Vec<Value> = items.skip(self.offset).take(self.limit).collect();
        json!({"offset": self.offset, "total": total, "items": items})
    }
}

fn records(cloud: &DevCloud, query: &[(String, String)]) -> Response<ResponseBody> {
    let page = Page::of(query);
    let section = query.iter().find(|(k, _)| k == "section").map_or("summary", |(_, v)| v.as_str());
    let body = match section {
        "summary" => summary(cloud),
        "deliveries" => delivery_page(cloud, page),
        "commands" => command_page(cloud, page),
        "prompts" => prompt_page(cloud, page),
        "events" => event_page(cloud, page),
        _ => return error(400, "section must be summary, deliveries, commands, prompts or events."),
    };
    json_response(200, &body)
}

fn summary(cloud: &DevCloud) -> Value {
    let store = cloud.store.borrow();
    let records = cloud.records.borrow();
    let mut deliveries: BTreeMap<&str, u64> = BTreeMap::new();
    for delivery in &store.deliveries {
        *deliveries.entry(delivery.status.as_str()).or_insert(0) += 1;
    }
    let mut events: BTreeMap<&str, u64> = BTreeMap::new();
    for event in store.provider_events.values() {
        *events.entry(event.status.as_str()).or_insert(0) += 1;
    }
    let calls = crate::util::maps::object(cloud.calls_by_route());
    let commands: usize = store.sessions.values().map(|s| s.commands.len()).sum();
    let prompts = records.prompts();
    let (open, peak, rejected) = cloud.sse_counts();
    json!({
        "deliveries": deliveries,
        "providerEvents": events,
        "calls": calls,
        "faults": faults_view(cloud),
        "commands": commands,
        "promptCalls": prompts.iter().map(|(_, p)| p.calls).sum::<u64>(),
        "promptKeys": prompts.len(),
        "sse": {"open": open, "peak": peak, "rejected": rejected},
        "recordsOverflow": records.overflow,
    })
}

fn delivery_page(cloud: &DevCloud, page: Page) -> Value {
    let store = cloud.store.borrow();
    let records = cloud.records.borrow();
    let items = store.deliveries.iter().map(|d| {
        let acks = records.acks_of(&d.delivery_id);
        let calls: Vec<Value> =
            acks.map(|a| a.calls.iter().map(|c| json!([c.status, c.accepted])).collect()).unwrap_or_default();
        json!({
            "deliveryId": d.delivery_id, "channelBindingId": d.channel_binding_id, "status": d.status,
            "attemptCount": d.attempt_count, "lastError": d.last_error, "acks": calls,
            "acksUncounted": acks.map_or(0, |a| a.uncounted),
        })
    });
    page.answer(items, store.deliveries.len())
}

fn command_page(cloud: &DevCloud, page: Page) -> Value {
    let store = cloud.store.borrow();
    let total = store.sessions.values().map(|s| s.commands.len()).sum();
    let items = store.sessions.values().flat_map(|s| s.commands.iter().map(move |c| (s, c))).map(|(session, command)| {
        let text: String = command["payload"]["text"].as_str().unwrap_or_default().chars().take(TEXT_SHOWN).collect();
        json!({"sessionId": session.session_id, "commandId": command["commandId"], "kind": command["kind"], "text": text})
    });
    page.answer(items, total)
}

fn prompt_page(cloud: &DevCloud, page: Page) -> Value {
    let records = cloud.records.borrow();
    let prompts = records.prompts();
    let items = prompts.iter().map(|(key, p)| json!({"idempotencyKey": key, "calls": p.calls, "commands": p.commands}));
    page.answer(items, prompts.len())
}

fn event_page(cloud: &DevCloud, page: Page) -> Value {
    let store = cloud.store.borrow();
    let mut events: Vec<_> = store.provider_events.values().collect();
    events.sort_unstable_by(|a, b| a.event_id.cmp(&b.event_id));
    let total = events.len();
    let items = events.into_iter().map(|e| {
        json!({
            "eventId": e.event_id, "providerEventId": e.provider_event_id, "provider": e.provider,
            "status": e.status, "attemptCount": e.attempt_count, "lastError": e.last_error,
        })
    });
    page.answer(items, total)
}
