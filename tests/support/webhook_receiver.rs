//! A relay's receiving end on loopback, written for the tests: it verifies every request's v1
//! signature on its own (ring HMAC, not the gateway's code), records every request with its
//! headers, raw body and arrival time on the tokio clock, and answers from a script (status,
//! headers, body, a delay) or with `200 {"messageId": "relay-<n>"}`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::time::Instant;

pub const SECRET: &str = "webhook-shared-secret-for-tests";

/// One request as it arrived.
pub struct Recorded {
    pub headers: http::HeaderMap,
    pub raw: Bytes,
    pub body: Value,
    pub at: Instant,
    /// The signature matched `SECRET` over the exact bytes, with a timestamp within 5 minutes.
    pub signature_ok: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// A scripted answer.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Waited (on the tokio clock) before answering.
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
pub struct Receiver {
    pub requests: Vec<Recorded>,
    pub script: VecDeque<Answer>,
}

pub type SharedReceiver = Rc<RefCell<Receiver>>;

/// `v1=` + hex HMAC-SHA256(SECRET, `v1:<timestamp>:<body>`), computed independently.
pub fn signature(timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut message = format!("v1:{timestamp}:").into_bytes();
    message.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &message);
    format!("v1={}", tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn verifies(headers: &http::HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(presented)) =
        (header("x-open-cowork-gateway-webhook-timestamp"), header("x-open-cowork-gateway-webhook-signature"))
    else {
        return false;
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let fresh = timestamp.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 300);
    fresh && presented == signature(timestamp, body)
}

/// Starts the receiver on `address` (e.g. `127.0.0.1:0`); returns where it listens.
pub async fn start_on(receiver: SharedReceiver, address: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let receiver = Rc::clone(&receiver);
            let service = hyper::service::service_fn(move |request| {
                let receiver = Rc::clone(&receiver);
                async move { Ok::<_, std::convert::Infallible>(answer(receiver, request).await) }
            });
            tokio::task::spawn_local(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    address
}

/// Starts the receiver on an ephemeral loopback port behind TLS with `config` (HTTPS).
pub async fn start_tls(
    receiver: SharedReceiver,
    config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (receiver, acceptor) = (Rc::clone(&receiver), acceptor.clone());
            tokio::task::spawn_local(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(stream) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |request| {
                    let receiver = Rc::clone(&receiver);
                    async move { Ok::<_, std::convert::Infallible>(answer(receiver, request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    address
}

pub async fn start(receiver: SharedReceiver) -> SocketAddr {
    start_on(receiver, "127.0.0.1:0").await
}

async fn answer(
    receiver: SharedReceiver,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let headers = request.headers().clone();
    let raw = request.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let signature_ok = verifies(&headers, &raw);
    let scripted = {
        let mut state = receiver.borrow_mut();
        state.requests.push(Recorded { headers, raw, body, at: Instant::now(), signature_ok });
        state.script.pop_front()
    };
    let count = receiver.borrow().requests.len();
    let answer = scripted.unwrap_or_else(|| Answer {
        status: 200,
        headers: Vec::new(),
        body: format!(r#"{{"messageId":"relay-{count}"}}"#),
        delay: Duration::ZERO,
    });
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = http::Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        response = response.header(*name, value);
    }
    response.body(Full::new(Bytes::from(answer.body))).unwrap()
}
