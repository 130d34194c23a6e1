//! Request bodies (spec §2.4): read as bytes under the configured cap and a deadline, decoded as
//! UTF-8 once the whole body has arrived, then parsed as JSON or form data.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use serde_json::{Map, Value};

use super::response::{HttpError, BODY_READ_FAILED, BODY_TIMEOUT, BODY_TOO_LARGE};

/// Reads the whole body, failing with 413 as soon as the running total passes `limit` (a
/// declared `content-length` above the limit fails before reading), and with 408 at `deadline`.
pub async fn read_limited<B>(mut body: B, limit: usize, deadline: Duration) -> Result<Bytes, HttpError>
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(BODY_TOO_LARGE);
    }
    let collect = async {
        let mut buffer = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BODY_READ_FAILED)?;
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > limit {
                    return Err(BODY_TOO_LARGE);
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(buffer.freeze())
    };
    tokio::time::timeout(deadline, collect).await.unwrap_or(Err(BODY_TIMEOUT))
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
        // "é" split across two frames.
        let body = frames::Iter(
            vec![
                Ok(Frame::data(Bytes::from_static(b"{\"t\":\"\xc3"))),
                Ok(Frame::data(Bytes::from_static(b"\xa9\"}"))),
            ]
            .into(),
        );
        let bytes = read_limited(body, 1024, deadline).await.unwrap();
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), "{\"t\":\"é\"}");

        let body = frames::Iter(
            vec![Ok(Frame::data(Bytes::from_static(&[b'x'; 600]))), Ok(Frame::data(Bytes::from_static(&[b'x'; 600])))]
                .into(),
        );
        assert_eq!(read_limited(body, 1024, deadline).await.unwrap_err(), BODY_TOO_LARGE);

        let declared = Full::new(Bytes::from_static(&[b'x'; 2048]));
        assert_eq!(read_limited(declared, 1024, deadline).await.unwrap_err(), BODY_TOO_LARGE);
        let exact = Full::new(Bytes::from_static(&[b'x'; 1024]));
        assert_eq!(read_limited(exact, 1024, deadline).await.unwrap().len(), 1024);
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
