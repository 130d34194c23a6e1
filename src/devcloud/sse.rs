//! The dev Cloud's two SSE streams: framing, replay from the cursor,
//! `snapshot.required` on a retention gap, keep-alive comments, claims on every poll, in-band
//! error frames, the stream lifetime, and the fault that cuts a stream mid-frame.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::call::Call;
use super::respond::{error, sse_headers};
use super::DevCloud;
use crate::http::response::ResponseBody;

/// Frames queued per stream before the writer waits (the client reads slowly or not at all).
const STREAM_BUFFER: usize = 64;

/// A response body fed from a channel; an `Err` aborts the connection.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|item| item.map(|result| result.map(Frame::data)))
    }
}

fn stream_response(session_stream: bool) -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Response<ResponseBody>) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let mut response = Response::new(ChannelBody(rx).boxed_unsync());
    sse_headers(&mut response, session_stream);
    (tx, response)
}

/// One stream's place under the per-organisation SSE cap, given back when its task ends.
struct SseSlot(Rc<DevCloud>);

impl SseSlot {
    /// Takes a slot, or answers what upstream answers at the cap.
    fn take(cloud: &Rc<DevCloud>) -> Result<Self, Box<Response<ResponseBody>>> {
        let open = cloud.sse_open.get();
        if open >= cloud.options.max_sse_per_org {
            cloud.sse_rejected.set(cloud.sse_rejected.get() + 1);
            let mut response = error(429, "Too many concurrent streams for this organization.");
            let headers = response.headers_mut();
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            return Err(Box::new(response));
        }
        cloud.sse_open.set(open + 1);
        cloud.sse_peak.set(cloud.sse_peak.get().max(open + 1));
        Ok(Self(Rc::clone(cloud)))
    }
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        self.0.sse_open.set(self.0.sse_open.get().saturating_sub(1));
    }
}

/// Why a stream task woke up.
enum Wake {
    /// Events or deliveries changed.
    Work,
    /// The heartbeat interval passed with nothing to write.
    Idle,
    /// The lifetime ended, the client left or the dev Cloud stopped: end the stream.
    End,
}

/// Waits for the next reason to write, or for the end of the stream.
async fn wake(
    changed: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    tick: std::time::Duration,
    deadline: tokio::time::Instant,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
    halted: &mut tokio::sync::watch::Receiver<bool>,
) -> Wake {
    tokio::select! {
        _ = changed => Wake::Work,
        _ = tokio::time::sleep(tick) => Wake::Idle,
        _ = tokio::time::sleep_until(deadline) => Wake::End,
        _ = tx.closed() => Wake::End,
        _ = halted.wait_for(|h| *h) => {
            let _ = tx.send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "dev Cloud stopped"))).await;
            Wake::End
        }
    }
}

fn frame(id: &str, event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {event}\ndata: {data}\n\n"))
}

/// Sends a frame; for a cut, only half of it and then an error.
async fn write(tx: &mpsc::Sender<Result<Bytes, std::io::Error>>, bytes: Bytes, cut: bool) -> bool {
    if cut {
        let half = bytes.slice(..bytes.len() / 2);
        let _ = tx.send(Ok(half)).await;
        let _ = tx
            .send(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "dev Cloud fault: stream cut")))
            .await;
        return false;
    }
    tx.send(Ok(bytes)).await.is_ok()
}

/// `GET /api/channels/sessions/{id}/events`.
pub fn session_events(cloud: &Rc<DevCloud>, call: &Call, session_binding_id: &str) -> Response<ResponseBody> {
    let Some(session_id) = cloud.store.borrow().session_binding(session_binding_id).map(|b| b.session_id.clone())
    else {
        return error(403, "Channel binding scope is required for this action.");
    };
    let after = call.query_value("after").and_then(|a| a.parse::<u64>().ok()).filter(|a| *a > 0);
    let mut cursor = after.or_else(|| call.last_event_id.as_ref().and_then(|id| id.trim().parse().ok())).unwrap_or(0);
    let slot = match SseSlot::take(cloud) {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    let (tx, response) = stream_response(true);
    let cloud = Rc::clone(cloud);
    let mut halted = cloud.halted();
    tokio::task::spawn_local(async move {
        let _slot = slot;
        let deadline = tokio::time::Instant::now() + cloud.options.sse_lifetime;
        if tx.send(Ok(Bytes::from_static(b": connected\n\n"))).await.is_err() {
            return;
        }
        // The heartbeat is due a fixed interval after the last bytes written, however often other
        // sessions' changes wake this loop: a busy Cloud must not starve a quiet stream of its
        // keep-alives (the gateway's watchdog would take the silence for a dead connection).
        let mut last_written = tokio::time::Instant::now();
        loop {
            let changed = cloud.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let pending: Vec<Bytes> = {
                let store = cloud.store.borrow();
                let Some(session) = store.sessions.get(&session_id) else { return };
                let mut frames = Vec::new();
                let earliest = session.earliest_sequence();
                let latest = session.next_sequence - 1;
                if cursor > 0 && earliest > cursor + 1 {
                    let (_, now) = store.now();
                    let data = json!({
                        "sessionId": session_id, "sequence": cursor, "type": "snapshot.required", "eventId": format!("snapshot-required:{cursor}"),
                        "entityType": "session", "entityId": session_id, "operation": "snapshot_required", "projectionVersion": cursor, "createdAt": now,
                        "payload": {"reason": "event_retention_gap", "afterSequence": cursor, "earliestSequence": earliest, "latestSequence": latest},
                    });
                    frames.push(frame(&cursor.to_string(), "snapshot.required", &data));
                    cursor = earliest - 1;
                }
                let start = cursor;
                for event in session.events.iter().filter(|e| e["sequence"].as_u64().is_some_and(|s| s > start)) {
                    let sequence = event["sequence"].as_u64().unwrap_or(cursor);
                    frames.push(frame(&sequence.to_string(), event["type"].as_str().unwrap_or("message"), event));
                    cursor = sequence;
                }
                frames
            };
            for bytes in pending {
                let cut = cloud.faults.borrow_mut().cut_now(true);
                if !write(&tx, bytes, cut).await {
                    return;
                }
                last_written = tokio::time::Instant::now();
            }
            let heartbeat_in = cloud.options.keep_alive.saturating_sub(last_written.elapsed());
            match wake(changed, heartbeat_in, deadline, &tx, &mut halted).await {
                Wake::Work => {}
                Wake::Idle => {
                    if tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                        return;
                    }
                    last_written = tokio::time::Instant::now();
                }
                Wake::End => return,
            }
        }
    });
    response
}

/// `GET /api/channels/deliveries/stream?claimedBy=&ttlMs=&channelBindingId=…`.
pub fn delivery_stream(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    let principal = &call.principal;
    let claimed_by = call
        .query_value("claimedBy")
        .map(|c| c.chars().take(256).collect())
        .unwrap_or_else(|| principal.token_id.clone());
    let ttl = call.query_value("ttlMs").and_then(|t| t.parse::<u64>().ok()).filter(|t| *t > 0).unwrap_or(30_000);
    let requested = call.query_values("channelBindingId");
    let bindings: Vec<String> = if requested.is_empty() {
        if principal.scopes.iter().any(|s| s == "gateway") && !principal.scopes.iter().any(|s| s == "admin") {
            principal.grants.clone()
        } else {
            cloud.store.borrow().channel_bindings.iter().map(|b| b.binding_id.clone()).collect()
        }
    } else {
        requested
    };
    let token_id = principal.token_id.clone();
    let slot = match SseSlot::take(cloud) {
        Ok(slot) => slot,
        Err(refused) => return *refused,
    };
    let (tx, response) = stream_response(false);
    let cloud = Rc::clone(cloud);
    let mut halted = cloud.halted();
    tokio::task::spawn_local(async move {
        let _slot = slot;
        let deadline = tokio::time::Instant::now() + cloud.options.sse_lifetime;
        loop {
            let changed = cloud.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let in_band_error = cloud.faults.borrow().delivery_stream_error.clone();
            if let Some(message) = in_band_error {
                if tx
                    .send(Ok(Bytes::from(format!("event: error\ndata: {}\n\n", json!({"error": message})))))
                    .await
                    .is_err()
                {
                    return;
                }
            } else {
                loop {
                    let lease = cloud.faults.borrow().delivery_lease_ms(ttl);
                    let claimed =
                        cloud.store.borrow_mut().claim_next_delivery(&bindings, &claimed_by, &token_id, lease);
                    let Some(delivery) = claimed else { break };
                    let id = delivery["deliveryId"].as_str().unwrap_or_default().to_owned();
                    let cut = cloud.faults.borrow_mut().cut_now(false);
                    if !write(&tx, frame(&id, "channel.delivery", &json!({"delivery": delivery})), cut).await {
                        return;
                    }
                }
                if tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                    return;
                }
            }
            if let Wake::End = wake(changed, cloud.options.poll_interval, deadline, &tx, &mut halted).await {
                return;
            }
        }
    });
    response
}
