//! HTTP/2 to Cloud (cargo feature `http2`): against a TLS server that offers `h2` by ALPN, the
//! session-stream client carries many open streams on one connection, and the calls client keeps
//! a connection of its own, so streams can never crowd a claim or an ack out of the peer's
//! concurrent-stream limit. Loopback only; the server is the test certificate of
//! `tests/fixtures/email` (127.0.0.1 and localhost).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
#![cfg(feature = "http2")]

// For its server configuration of the test certificate, shared with the e-mail tests.
#[path = "support/smtp_sink.rs"]
mod smtp_sink;

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use open_cowork_gateway::net::https::{build_client, build_stream_client};
use tokio::net::TcpListener;

/// An SSE body that never ends: the stream stays open for as long as the client holds it.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email")
}

/// An HTTP/2-only TLS server on loopback that answers every request with an endless stream;
/// returns its port and the count of TCP connections it accepted.
async fn h2_server() -> (u16, Arc<AtomicUsize>) {
    let mut config = (*smtp_sink::test_tls_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else { return };
                let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(
                        Response::builder().header("content-type", "text/event-stream").body(Endless).unwrap(),
                    )
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(1000)
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, accepted)
}

fn get(port: u16, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://localhost:{port}{path}")).body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn session_streams_share_one_http2_connection_apart_from_the_calls() {
    let (port, accepted) = h2_server().await;
    let ca = fixtures().join("ca.pem");
    let streams = build_stream_client(Some(&ca)).unwrap();
    let mut open = Vec::new();
    for n in 0..50 {
        let response = streams.request(get(port, &format!("/api/channels/sessions/s-{n}/events"))).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_2, "ALPN negotiated h2");
        // Held open, as a session stream is while its chat is active.
        open.push(response);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "fifty open streams ride on one connection");

    let calls = build_client(Some(&ca)).unwrap();
    let response = calls.request(get(port, "/api/channels/deliveries/stream")).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the calls keep a connection of their own");
    drop(open);
}
