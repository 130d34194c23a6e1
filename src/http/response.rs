//! Response building: JSON bodies with upstream's content type, and the error envelope
//! `{ok:false, error}`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

/// Every response body: a whole buffer, or a stream (the dev Cloud's SSE). A stream that fails
/// makes hyper abort the connection, which is how a cut stream looks to a client.
pub type ResponseBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn json(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let bytes =
        serde_json::to_vec(body).unwrap_or_else(|_| b"{\"ok\":false,\"error\":\"Internal gateway error.\"}".to_vec());
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}

pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error answered as `{ok:false, error}`. `counted` says whether it increments
/// `open_cowork_gateway_errors_total` (upstream counts thrown errors, not the 401s and 404s the
/// operator routes write directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: &'static str,
    pub retry_after_ms: Option<u64>,
    pub counted: bool,
}

impl HttpError {
    /// A thrown gateway error: counted.
    pub const fn thrown(status: StatusCode, message: &'static str) -> Self {
        Self { status, message, retry_after_ms: None, counted: true }
    }

    /// A response the route writes itself: not counted.
    pub const fn written(status: StatusCode, message: &'static str) -> Self {
        Self { status, message, retry_after_ms: None, counted: false }
    }

    pub fn with_retry_after(mut self, retry_after_ms: u64) -> Self {
        self.retry_after_ms = Some(retry_after_ms);
        self
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let mut response = json(self.status, &json!({"ok": false, "error": self.message}));
        if let Some(ms) = self.retry_after_ms {
            let seconds = ms.div_ceil(1000).max(1);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub const NOT_FOUND: HttpError = HttpError::written(StatusCode::NOT_FOUND, "Not found.");
pub const ADMIN_REQUIRED: HttpError =
    HttpError::written(StatusCode::UNAUTHORIZED, "Gateway admin authorization is required.");
pub const BAD_PATH_ENCODING: HttpError =
    HttpError::thrown(StatusCode::BAD_REQUEST, "Request path has an invalid percent-encoding.");
pub const BODY_TOO_LARGE: HttpError =
    HttpError::thrown(StatusCode::PAYLOAD_TOO_LARGE, "Gateway request body exceeds the configured limit.");
pub const BODY_TIMEOUT: HttpError =
    HttpError::thrown(StatusCode::REQUEST_TIMEOUT, "Gateway request body was not received in time.");
/// Every request body being read together would pass `server.maxBufferedBodyBytes`.
pub const BODIES_OVER_BUDGET: HttpError = HttpError::thrown(
    StatusCode::SERVICE_UNAVAILABLE,
    "Gateway is reading too many request bodies at once. Try again shortly.",
);
pub const BODY_READ_FAILED: HttpError =
    HttpError::thrown(StatusCode::BAD_REQUEST, "Gateway request body could not be read.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = HttpError::thrown(StatusCode::TOO_MANY_REQUESTS, "x").with_retry_after(1_001).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = HttpError::thrown(StatusCode::TOO_MANY_REQUESTS, "x").with_retry_after(0).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON_CONTENT_TYPE);
    }
}
