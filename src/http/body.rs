//! Request bodies: read as bytes under the configured cap and a deadline, decoded as
//! UTF-8 once the whole body has arrived, then parsed as JSON or form data.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use serde_json::{Map, Value};

use super::response::{HttpError, BODIES_OVER_BUDGET, BODY_READ_FAILED, BODY_TIMEOUT, BODY_TOO_LARGE};

/// How long a client refused for the body budget is asked to wait.
const OVER_BUDGET_RETRY_MS: u64 = 1_000;

/// The bytes all request bodies being read (and held while their request is handled) may take
/// together. Without it every connection could buffer a full body at once: 60 clients holding
/// 1 MiB each would take a 64 MiB appliance out.
#[derive(Clone)]
pub struct BodyBudget {
    limit: usize,
    used: Rc<Cell<usize>>,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        Self { limit, used: Rc::default() }
    }
}

/// Bytes of the budget a request holds; given back when it is dropped (when the request is done).
pub struct BodyReservation {
    budget: BodyBudget,
    bytes: usize,
}

impl BodyReservation {
    fn grow(&mut self, more: usize) -> Result<(), HttpError> {
        let used = self.budget.used.get();
        if used + more > self.budget.limit {
            return Err(BODIES_OVER_BUDGET.with_retry_after(OVER_BUDGET_RETRY_MS));
        }
        self.budget.used.set(used + more);
        self.bytes += more;
        Ok(())
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.budget.used.set(self.budget.used.get().saturating_sub(self.bytes));
    }
}

/// A body read in full, with the budget it holds for as long as the caller keeps it.
pub struct LimitedBody {
    pub bytes: Bytes,
    _reservation: BodyReservation,
}

/// Reads the whole body, failing with 413 as soon as the running total passes `limit` (a
/// declared `content-length` above the limit fails before reading), with 503 when the bodies
/// being read together would pass `budget` (a declared length is reserved up front), and with 408
/// at `deadline`.
pub async fn read_limited<B>(
    mut body: B,
    limit: usize,
    budget: &BodyBudget,
    deadline: Duration,
) -> Result<LimitedBody, HttpError>
where
    B: Body<Data = Bytes> + Unpin,
{
    let declared = body.size_hint().lower();
    if declared > limit as u64 {
        return Err(BODY_TOO_LARGE);
    }
    let mut reservation = BodyReservation { budget: budget.clone(), bytes: 0 };
    reservation.grow(declared as usize)?;
    let collect = async {
        let mut buffer = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BODY_READ_FAILED)?;
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > limit {
                    return Err(BODY_TOO_LARGE);
                }
                let beyond_reserved = (buffer.len() + data.len()).saturating_sub(reservation.bytes);
                reservation.grow(beyond_reserved)?;
                buffer.extend_from_slice(&data);
            }
        }
        Ok(buffer.freeze())
    };
    let bytes = tokio::time::timeout(deadline, collect).await.unwrap_or(Err(BODY_TIMEOUT))?;
    Ok(LimitedBody { bytes, _reservation: reservation })
}

/// The body is neither JSON nor a usable form payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnparseableBody;

/// `parseRequestBody`: empty is `{}`; form-encoded bodies use a non-empty `payload` field as JSON
/// (interactivity callbacks) or become a flat string object; anything else is JSON.
pub fn parse_request_body(text: &str, content_type: Option<&str>) -> Result<Value, UnparseableBody> {
    if text.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    if content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("application/x-www-form-urlencoded")) {
        let fields: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes()).into_owned().collect();
        if let Some((_, payload)) = fields.iter().find(|(k, v)| k == "payload" && !v.is_empty()) {
            return serde_json::from_str(payload).map_err(|_| UnparseableBody);
        }
        let mut object = Map::new();
        for (key, value) in fields {
            object.insert(key, Value::String(value));
        }
        return Ok(Value::Object(object));
    }
    serde_json::from_str(text).map_err(|_| UnparseableBody)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::body::Frame;
    use serde_json::json;

    /// A body made of given frames, so the test controls chunk boundaries.
    mod frames {
        use super::*;
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub struct Iter(pub std::collections::VecDeque<Result<Frame<Bytes>, std::convert::Infallible>>);

        impl hyper::body::Body for Iter {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(self.0.pop_front())
            }
        }
    }

    #[tokio::test]
    async fn body_cap_is_enforced_while_streaming_and_multibyte_splits_survive() {
        let deadline = Duration::from_secs(5);
        let budget = BodyBudget::new(1 << 20);
        // "é" split across two frames.
        let body = frames::Iter(
            vec![
                Ok(Frame::data(Bytes::from_static(b"{\"t\":\"\xc3"))),
                Ok(Frame::data(Bytes::from_static(b"\xa9\"}"))),
            ]
            .into(),
        );
        let read = read_limited(body, 1024, &budget, deadline).await.unwrap();
        assert_eq!(std::str::from_utf8(&read.bytes).unwrap(), "{\"t\":\"é\"}");

        let body = frames::Iter(
            vec![Ok(Frame::data(Bytes::from_static(&[b'x'; 600]))), Ok(Frame::data(Bytes::from_static(&[b'x'; 600])))]
                .into(),
        );
        assert_eq!(read_limited(body, 1024, &budget, deadline).await.err(), Some(BODY_TOO_LARGE));

        let declared = Full::new(Bytes::from_static(&[b'x'; 2048]));
        assert_eq!(read_limited(declared, 1024, &budget, deadline).await.err(), Some(BODY_TOO_LARGE));
        let exact = Full::new(Bytes::from_static(&[b'x'; 1024]));
        assert_eq!(read_limited(exact, 1024, &budget, deadline).await.unwrap().bytes.len(), 1024);
    }

    #[tokio::test]
    async fn bodies_held_together_stay_within_the_budget() {
        let deadline = Duration::from_secs(5);
        let budget = BodyBudget::new(2048);
        let body = || Full::new(Bytes::from_static(&[b'x'; 1024]));
        let first = read_limited(body(), 1024, &budget, deadline).await.unwrap();
        let second = read_limited(body(), 1024, &budget, deadline).await.unwrap();
        assert_eq!(budget.used.get(), 2048);
        let refused = read_limited(body(), 1024, &budget, deadline).await.err().unwrap();
        assert_eq!(refused, BODIES_OVER_BUDGET.with_retry_after(1_000));
        drop(first);
        assert_eq!(budget.used.get(), 1024, "a handled request gives its bytes back");
        let third = read_limited(body(), 1024, &budget, deadline).await.unwrap();
        drop((second, third));
        assert_eq!(budget.used.get(), 0);
        // A body that streams past the budget is cut off while it arrives, and gives back what it held.
        let streamed = frames::Iter(
            vec![
                Ok(Frame::data(Bytes::from_static(&[b'x'; 1500]))),
                Ok(Frame::data(Bytes::from_static(&[b'x'; 1000]))),
            ]
            .into(),
        );
        assert_eq!(
            read_limited(streamed, 4096, &budget, deadline).await.err().map(|e| e.status),
            Some(BODIES_OVER_BUDGET.status)
        );
        assert_eq!(budget.used.get(), 0);
    }

    #[test]
    fn body_parsing() {
        assert_eq!(parse_request_body("", None), Ok(json!({})));
        assert_eq!(parse_request_body("{\"a\":1}", Some("application/json")), Ok(json!({"a": 1})));
        assert_eq!(parse_request_body("[1]", None), Ok(json!([1])));
        assert_eq!(parse_request_body("nope", None), Err(UnparseableBody));
        let form = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(parse_request_body("payload=%7B%22type%22%3A%22x%22%7D", form), Ok(json!({"type": "x"})));
        assert_eq!(parse_request_body("a=1&b=two+words", form), Ok(json!({"a": "1", "b": "two words"})));
        assert_eq!(parse_request_body("payload=%7Bbad", form), Err(UnparseableBody));
    }
}
