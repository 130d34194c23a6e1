//! The dev Cloud's response shapes, shared by the handlers in `routes/` and the streams in
//! `sse.rs`: JSON bodies with upstream's headers, the error and policy-verdict bodies, the 429
//! with `Retry-After`, and the SSE response headers.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::http::response::{full, ResponseBody};

/// A JSON response with upstream's headers (`no-store`, `nosniff`).
pub fn json_response(status: u16, body: &Value) -> Response<ResponseBody> {
    let mut response = Response::new(full(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// Upstream's plain error body, `{"error": message}`.
pub fn error(status: u16, message: &str) -> Response<ResponseBody> {
    json_response(status, &json!({"error": message}))
}

pub(super) fn policy_error(status: u16, message: &str, code: &str) -> Response<ResponseBody> {
    json_response(
        status,
        &json!({"error": message, "verdict": {"allowed": false, "reason": message, "policyCode": code}}),
    )
}

pub(super) fn rate_limited(retry_after_ms: u64) -> Response<ResponseBody> {
    let message = "Too many cloud requests. Try again later.";
    let mut response = json_response(
        429,
        &json!({"error": message, "retryAfterMs": retry_after_ms, "verdict": {"allowed": false, "reason": message, "policyCode": "rate_limit.http_exceeded"}}),
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_ms.div_ceil(1000).max(1)));
    response
}

/// The answer when a table reached its bound.
pub(super) fn store_full() -> Response<ResponseBody> {
    error(503, "The dev Cloud holds too many records; restart it.")
}

pub(super) fn binding_scope_required() -> Response<ResponseBody> {
    policy_error(403, "Channel binding scope is required for this action.", "channels.binding_scope_required")
}

/// Headers of the two SSE responses.
pub fn sse_headers(response: &mut Response<ResponseBody>, session_stream: bool) {
    let headers = response.headers_mut();
    if session_stream {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store, no-transform"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    } else {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
}
