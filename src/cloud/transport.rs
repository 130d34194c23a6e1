//! How a Cloud call travels: the request (path check, bearer token, user agent, JSON body), the
//! exchange under the request timeout with a cap on the body read, opening an SSE stream and
//! reading its events, and the mapping of transport failures and non-success statuses into
//! [`CloudError`]. `client.rs` says which call is which; this file is the only place the service
//! token leaves its `Secret`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::error::{CloudError, CloudErrorKind};
use super::sse::{SseError, SseEvent, SseParser};
use crate::config::Secret;
use crate::net::https::HttpsClient;

/// JSON responses larger than this are refused; artifacts have their own, larger bound.
const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

/// An SSE stream that delivered no bytes at all for this long is presumed dead. Cloud writes a
/// `: keep-alive` comment every `ssePollMs` (1 s by default) on both streams, so this is three
/// missed keep-alives plus two seconds for a slow Cloud tick or a busy gateway. Without it a
/// half-open TCP connection (packets silently dropped, no FIN, no RST) is only noticed by the
/// delivery stream's 5-minute quiet rotation, and the session streams never notice it at all.
const STREAM_SILENCE_LIMIT: Duration = Duration::from_secs(5);

/// `URLSearchParams` serialisation: empty strings skipped, repeated keys kept in order.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in pairs {
        if !value.is_empty() {
            serializer.append_pair(key, value);
            any = true;
        }
    }
    if any {
        format!("?{}", serializer.finish())
    } else {
        String::new()
    }
}

/// Cloud calls in flight at once, at most: a call waits for a slot rather than opening one more
/// connection. The calls client keeps as many idle connections, so a burst (webhook receipts
/// claiming, binding and prompting while deliveries are acked and session cursors written)
/// reuses the same connections; unbounded, each call above the idle cap cost a TLS handshake of
/// its own, on a connection closed again once the call ended.
const CALLS_IN_FLIGHT: usize = crate::net::https::CALL_CONNECTIONS;

/// The way to one Cloud: the shared HTTPS client, the base URL, the service token and the
/// request timeout. Cheap to clone.
#[derive(Clone)]
pub(super) struct Transport {
    http: HttpsClient,
    /// [`CALLS_IN_FLIGHT`] slots, shared by every clone: one Cloud, one set of connections.
    calls: Arc<Semaphore>,
    /// Carries the session streams (see `net::https`); the calls client unless set apart.
    streams: HttpsClient,
    base_url: String,
    token: Secret,
    timeout: Duration,
}

impl Transport {
    /// `base_url` is the checked configuration value; trailing `/` is removed again.
    pub(super) fn new(http: HttpsClient, base_url: &str, token: Secret, timeout: Duration) -> Self {
        let streams = http.clone();
        let calls = Arc::new(Semaphore::new(CALLS_IN_FLIGHT));
        Self { http, calls, streams, base_url: base_url.trim().trim_end_matches('/').to_owned(), token, timeout }
    }

    pub(super) fn set_stream_client(&mut self, streams: HttpsClient) {
        self.streams = streams;
    }

    pub(super) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(super) fn http(&self) -> &HttpsClient {
        &self.http
    }

    fn build_request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        sse: bool,
    ) -> Result<Request<Full<Bytes>>, CloudError> {
        if !path.starts_with("/api/") {
            return Err(CloudError::transport(
                CloudErrorKind::Request,
                format!("Cloud request path must start with /api/: {path}"),
            ));
        }
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token.expose())).map_err(|_| {
            CloudError::transport(CloudErrorKind::Request, "the service token is not a valid header value")
        })?;
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url))
            .header(AUTHORIZATION, bearer)
            .header(USER_AGENT, concat!("open-cowork-gateway/", env!("CARGO_PKG_VERSION")));
        if sse {
            builder = builder.header(ACCEPT, "text/event-stream");
        }
        let bytes = match body {
            Some(value) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Bytes::from(
                    serde_json::to_vec(value)
                        .map_err(|e| CloudError::transport(CloudErrorKind::Request, e.to_string()))?,
                )
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(bytes))
            .map_err(|e| CloudError::transport(CloudErrorKind::Request, format!("invalid Cloud request: {e}")))
    }

    /// Sends a request and reads the whole body (both within the timeout) once one of the
    /// [`CALLS_IN_FLIGHT`] slots is free. Non-success statuses become errors; `expected` lists the
    /// success statuses.
    pub(super) async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: &[u16],
        cap: usize,
    ) -> Result<Bytes, CloudError> {
        let request = self.build_request(method, path, body, false)?;
        // Taken before the timeout starts: the timeout is Cloud's time to answer, not the wait
        // behind other calls. Held until the body is read. The semaphore is never closed.
        let _slot = self
            .calls
            .acquire()
            .await
            .map_err(|_| CloudError::transport(CloudErrorKind::Request, "the Cloud call slots are closed"))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| CloudError::transport(CloudErrorKind::Network, describe_transport(&e)))?;
            let status = response.status().as_u16();
            let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = Limited::new(response.into_body(), cap)
                .collect()
                .await
                .map_err(|e| {
                    CloudError::transport(CloudErrorKind::Network, format!("reading the Cloud response failed: {e}"))
                })?
                .to_bytes();
            if expected.contains(&status) {
                Ok(bytes)
            } else {
                Err(CloudError::from_response(status, &bytes, retry_after.as_deref()))
            }
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or_else(|_| {
            Err(CloudError::transport(
                CloudErrorKind::Timeout,
                format!("Cloud did not answer within {} ms.", self.timeout.as_millis()),
            ))
        })
    }

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: &[u16],
    ) -> Result<T, CloudError> {
        let bytes = self.exchange(method, path, body, expected, MAX_JSON_BYTES).await?;
        parse_json(&bytes)
    }

    /// Opens an SSE stream; the headers must arrive within the request timeout, the body has none.
    /// `session` streams travel on the stream client, the delivery stream with the calls.
    pub(super) async fn open_stream(&self, path: &str, session: bool) -> Result<SseConnection, CloudError> {
        let request = self.build_request(Method::GET, path, None, true)?;
        let http = if session { &self.streams } else { &self.http };
        let open = async {
            let response = http
                .request(request)
                .await
                .map_err(|e| CloudError::transport(CloudErrorKind::Network, describe_transport(&e)))?;
            let status = response.status().as_u16();
            if status == 200 {
                let date = response.headers().get(http::header::DATE).and_then(|v| v.to_str().ok());
                let cloud_date_ms = date.and_then(crate::net::retry_after::parse_http_date);
                let mut connection = SseConnection::new(response.into_body());
                connection.cloud_date_ms = cloud_date_ms;
                return Ok(connection);
            }
            let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = Limited::new(response.into_body(), MAX_JSON_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Err(CloudError::from_response(status, &bytes, retry_after.as_deref()))
        };
        tokio::time::timeout(self.timeout, open).await.unwrap_or_else(|_| {
            Err(CloudError::transport(CloudErrorKind::Timeout, "Cloud did not open the stream in time."))
        })
    }
}

/// A call's input as its JSON body.
pub(super) fn to_body(input: &impl Serialize) -> Result<Value, CloudError> {
    serde_json::to_value(input).map_err(|e| CloudError::transport(CloudErrorKind::Request, e.to_string()))
}

pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CloudError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| CloudError::transport(CloudErrorKind::Parse, format!("Cloud answered with unexpected JSON: {e}")))
}

/// A transport error without the URL (which is safe, but long) and never with headers.
fn describe_transport(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// An open SSE response: call [`SseConnection::next_event`] until it returns `Ok(None)`
/// (the server closed the stream cleanly). A stream silent for longer than its silence limit
/// ([`STREAM_SILENCE_LIMIT`] unless set with [`SseConnection::with_silence_limit`]) ends with a
/// `Network` error, which the followers treat like any broken connection: they reconnect.
pub struct SseConnection {
    body: Incoming,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
    ended: bool,
    silence_limit: Duration,
    /// Where the current silence began: the last bytes received, or the moment the caller came
    /// back for more. Time the caller spent elsewhere (a slow consumer applying backpressure)
    /// is not the server's silence: the bytes may be waiting unread in the socket.
    silent_since: Instant,
    /// Whether a `next_event` call is waiting for bytes. Stays set when that call is cancelled
    /// (a `select!` took another branch), so a caller that keeps re-polling does not restart
    /// the clock on every poll.
    waiting: bool,
    /// Cloud's `Date` when it opened the stream (milliseconds since the epoch), to measure how
    /// far the local clock is from Cloud's.
    pub cloud_date_ms: Option<u64>,
}

impl SseConnection {
    fn new(body: Incoming) -> Self {
        Self {
            body,
            parser: SseParser::default(),
            ready: std::collections::VecDeque::new(),
            ended: false,
            silence_limit: STREAM_SILENCE_LIMIT,
            silent_since: Instant::now(),
            waiting: false,
            cloud_date_ms: None,
        }
    }

    /// Replaces the silence limit (a Cloud with a longer keep-alive interval needs a longer one).
    pub fn with_silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    pub async fn next_event(&mut self) -> Result<Option<SseEvent>, CloudError> {
        if !self.waiting {
            self.waiting = true;
            self.silent_since = Instant::now();
        }
        let result = self.read_event().await;
        self.waiting = false;
        result
    }

    async fn read_event(&mut self) -> Result<Option<SseEvent>, CloudError> {
        let sse_error = |e: SseError| CloudError::transport(CloudErrorKind::Sse, e.to_string());
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            let mut out = Vec::new();
            let deadline = self.silent_since + self.silence_limit;
            let Ok(frame) = tokio::time::timeout_at(deadline, self.body.frame()).await else {
                return Err(CloudError::transport(
                    CloudErrorKind::Network,
                    format!(
                        "the Cloud stream sent no bytes for {} s (not even a keep-alive); the connection is presumed dead",
                        self.silence_limit.as_secs_f32()
                    ),
                ));
            };
            match frame {
                Some(Ok(frame)) => {
                    self.silent_since = Instant::now();
                    if let Ok(data) = frame.into_data() {
                        self.parser.push(&data, &mut out).map_err(sse_error)?;
                    }
                }
                Some(Err(error)) => {
                    return Err(CloudError::transport(
                        CloudErrorKind::Network,
                        format!("the Cloud stream broke: {error}"),
                    ))
                }
                None => {
                    self.ended = true;
                    self.parser.finish(&mut out).map_err(sse_error)?;
                }
            }
            self.ready.extend(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::percent::encode_component;

    #[test]
    fn encoding_matches_javascript() {
        assert_eq!(encode_component("a b/c:d@e"), "a%20b%2Fc%3Ad%40e");
        assert_eq!(encode_component("x-_.!~*'()"), "x-_.!~*'()");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(
            query_string([
                ("claimedBy", "gateway:pi"),
                ("ttlMs", "120000"),
                ("empty", ""),
                ("channelBindingId", "a"),
                ("channelBindingId", "b c")
            ]),
            "?claimedBy=gateway%3Api&ttlMs=120000&channelBindingId=a&channelBindingId=b+c"
        );
        assert_eq!(query_string([("x", "")]), "");
    }

    /// A loopback server for one SSE response: it writes what the returned sender is given as
    /// chunks, and otherwise stays silent with the socket open (a half-open connection).
    async fn sse_server() -> (Transport, tokio::sync::mpsc::UnboundedSender<&'static str>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (chunks, mut to_write) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0_u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buffer).await.unwrap();
                assert!(n > 0, "the request head arrives");
                head.extend_from_slice(&buffer[..n]);
            }
            let headers = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            socket.write_all(headers.as_bytes()).await.unwrap();
            while let Some(chunk) = to_write.recv().await {
                socket.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await.unwrap();
            }
            // The test is over; keep the socket open so nothing but silence ends the stream.
            std::future::pending::<()>().await;
        });
        let http = crate::net::https::build_client(None).unwrap();
        let transport =
            Transport::new(http, &format!("http://{address}"), Secret::new("test-token"), Duration::from_secs(5));
        (transport, chunks)
    }

    /// A burst of calls well above the slots: they share the connections the first calls opened.
    #[tokio::test]
    async fn a_burst_of_calls_reuses_a_few_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0_u8; 4096];
                    // One request per read (each fits in one segment on loopback), answered slowly
                    // enough that the burst overlaps.
                    while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let http = crate::net::https::build_client(None).unwrap();
        let transport =
            Transport::new(http, &format!("http://{address}"), Secret::new("test-token"), Duration::from_secs(5));
        for _ in 0..3 {
            let calls: Vec<_> = (0..40)
                .map(|_| {
                    let transport = transport.clone();
                    tokio::spawn(async move { transport.call::<Value>(Method::GET, "/api/burst", None, &[200]).await })
                })
                .collect();
            for call in calls {
                call.await.unwrap().unwrap();
            }
        }
        let opened = connections.load(std::sync::atomic::Ordering::SeqCst);
        assert!(opened <= CALLS_IN_FLIGHT + 2, "{opened} connections for 120 calls");
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alives_hold_a_stream_and_silence_ends_it() {
        let (transport, chunks) = sse_server().await;
        let mut connection = transport.open_stream("/api/channels/deliveries/stream", false).await.unwrap();
        // Keep-alives alone, for twice the limit: they never surface as events but are bytes.
        tokio::spawn(async move {
            for _ in 0..10 {
                chunks.send(": keep-alive\n\n").unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            chunks.send("data: {}\n\n").unwrap();
        });
        let event = connection.next_event().await.unwrap().expect("the event after the keep-alives");
        assert_eq!(event.data, "{}");
        let last_bytes = Instant::now();
        let error = connection.next_event().await.unwrap_err();
        assert_eq!(error.kind, CloudErrorKind::Network, "the followers reconnect on network errors");
        assert!(error.message.contains("no bytes for 5 s"), "{}", error.message);
        assert!(last_bytes.elapsed() >= STREAM_SILENCE_LIMIT, "not before the limit: {:?}", last_bytes.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_caller_spends_elsewhere_is_not_silence() {
        let (transport, chunks) = sse_server().await;
        let connection = transport.open_stream("/api/channels/deliveries/stream", false).await.unwrap();
        let mut connection = connection.with_silence_limit(Duration::from_secs(2));
        chunks.send("data: first\n\n").unwrap();
        assert_eq!(connection.next_event().await.unwrap().map(|e| e.data).as_deref(), Some("first"));
        // A slow consumer stops reading (backpressure) for far longer than the limit; the
        // silence counts from when it reads again, since bytes may be waiting in the socket.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let back = Instant::now();
        let error = connection.next_event().await.unwrap_err();
        assert!(error.message.contains("no bytes for 2 s"), "{}", error.message);
        assert!(back.elapsed() >= Duration::from_secs(2), "the limit runs from the read: {:?}", back.elapsed());
    }
}
