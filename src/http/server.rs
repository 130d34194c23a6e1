//! The accept loop and per-request dispatch: a connection cap, a header-size cap, one timer for
//! header reads and idle keep-alive connections, a request-body deadline, a limit on how long an
//! answer may wait for a peer that reads nothing, and accept errors classified so that running
//! out of file descriptors backs off instead of spinning.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::errno::Errno;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use super::admin::{is_admin_head, presents_token};
use super::client_ip::{resolve_client_source, Cidr};
use super::operator::{self, DeliveryAction, RouteResult};
use super::rate_limit::Verdict;
use super::response::{HttpError, ResponseBody, BAD_PATH_ENCODING, NOT_FOUND};
use super::router::{route, Route, RouteError};
use super::state::HttpState;
use super::webhook;
use crate::logging::WarnLimiter;
use crate::metrics::Stat;

/// Upstream's `maxConnections`.
const MAX_CONNECTIONS: usize = 1024;
/// Connections kept for loopback peers: `/health` and `/ready` from the machine itself (systemd,
/// a probe, an operator with curl) still answer when the rest are taken by an attack.
const LOOPBACK_RESERVE: usize = 32;
/// Open connections one client address may hold (a trusted proxy is exempt: it carries many).
const MAX_CONNECTIONS_PER_CLIENT: usize = 64;
/// Once more than half the connections are open, new ones get this much to send their request
/// head (and keep-alive connections this much idle time), instead of ten seconds.
const HEADER_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(2);
/// Largest request head accepted (hyper answers 431 beyond it); Node's default header cap.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper's header-read timer runs both while a request head arrives and while a keep-alive
/// connection waits for its next request, so it is upstream's `keepAliveTimeout` and a stricter
/// `headersTimeout` in one.
const HEADER_AND_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream's `requestTimeout`: the whole body must arrive within it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an answer may wait for a peer that takes none of its bytes before the connection is
/// closed. Without it a client that pipelines requests and never reads the answers holds its
/// connection (and the kernel's send buffer) for ever: none of the read timers runs while hyper
/// waits to write. The same 10 s a peer gets to send its request head.
const WRITE_STALL_TIMEOUT: Duration = HEADER_AND_IDLE_TIMEOUT;

/// What to do after a failed `accept()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// The peer went away before we accepted it; try again at once.
    PeerGone,
    /// Out of descriptors, buffers or memory: the connection stays in the backlog, so retrying
    /// at once would spin. Back off.
    ResourceExhausted,
    /// Anything else: log and retry after a short pause.
    Unexpected,
}

fn classify_accept_error(error: &std::io::Error) -> AcceptFailure {
    match error.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ECONNABORTED | Errno::ECONNRESET | Errno::EINTR | Errno::EAGAIN | Errno::EPROTO | Errno::EPERM) => {
            AcceptFailure::PeerGone
        }
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => AcceptFailure::ResourceExhausted,
        _ => AcceptFailure::Unexpected,
    }
}

/// Serves the gateway's routes until the task is dropped. Must run inside a `LocalSet`.
pub async fn serve_gateway(listener: TcpListener, state: Rc<HttpState>) {
    let exempt = state.trusted_proxies.clone();
    let admission = Admission::new(exempt);
    serve_admitting(listener, admission, move |request: Request<Incoming>, peer: SocketAddr| {
        let state = Rc::clone(&state);
        async move { dispatch(&state, peer.ip(), request).await }
    })
    .await;
}

/// Which connections are let in: the total cap with slots kept for loopback, and a cap per
/// client address. Connections are counted from accept to close.
pub struct Admission {
    open: Cell<usize>,
    per_client: RefCell<HashMap<IpAddr, usize>>,
    /// Peers exempt from the per-client cap (trusted proxies).
    exempt: Vec<Cidr>,
}

/// One admitted connection; dropping it gives its slots back.
pub struct Admitted {
    admission: Rc<Admission>,
    client: IpAddr,
}

impl Admission {
    pub fn new(exempt: Vec<Cidr>) -> Rc<Self> {
        Rc::new(Self { open: Cell::new(0), per_client: RefCell::new(HashMap::new()), exempt })
    }

    /// Lets a connection from `peer` in, or says no (the caller closes it at once). The machine's
    /// own address (`127.0.0.1`, `::1`: the operator, systemd, a local reverse proxy) may use the
    /// kept slots and is not capped per client; the rest of `127.0.0.0/8` counts as any client.
    pub fn admit(self: &Rc<Self>, peer: IpAddr) -> Option<Admitted> {
        let peer = peer.to_canonical();
        let local = peer == IpAddr::from([127, 0, 0, 1]) || peer == IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        let open = self.open.get();
        let cap = if local { MAX_CONNECTIONS } else { MAX_CONNECTIONS - LOOPBACK_RESERVE };
        if open >= cap {
            return None;
        }
        let exempt = local || self.exempt.iter().any(|cidr| cidr.contains(peer));
        let mut per_client = self.per_client.borrow_mut();
        let held = per_client.entry(peer).or_default();
        if !exempt && *held >= MAX_CONNECTIONS_PER_CLIENT {
            if *held == 0 {
                per_client.remove(&peer);
            }
            return None;
        }
        *held += 1;
        self.open.set(open + 1);
        Some(Admitted { admission: Rc::clone(self), client: peer })
    }

    /// Whether the listener is under pressure (more than half the connections open).
    pub fn under_pressure(&self) -> bool {
        self.open.get() * 2 > MAX_CONNECTIONS
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.open.set(admission.open.get().saturating_sub(1));
        let mut per_client = admission.per_client.borrow_mut();
        if let Some(held) = per_client.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// The accept loop for the dev Cloud (or any handler): the gateway's admission rules without
/// per-client exemptions. Must run inside a `LocalSet`.
#[cfg(feature = "devcloud")]
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + 'static,
    F: Future<Output = Response<ResponseBody>> + 'static,
{
    serve_admitting(listener, Admission::new(Vec::new()), handler).await;
}

/// Accepts connections, admits or closes each, and serves the admitted ones with `handler`.
async fn serve_admitting<H, F>(listener: TcpListener, admission: Rc<Admission>, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + 'static,
    F: Future<Output = Response<ResponseBody>> + 'static,
{
    let warnings = WarnLimiter::new(Duration::from_secs(60));
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                // Refused connections are closed at once: the kernel backlog does not fill with
                // an attacker's connections while loopback operators wait behind them.
                let Some(admitted) = admission.admit(peer.ip()) else { continue };
                let header_timeout =
                    if admission.under_pressure() { HEADER_TIMEOUT_UNDER_PRESSURE } else { HEADER_AND_IDLE_TIMEOUT };
                let handler = handler.clone();
                tokio::task::spawn_local(async move {
                    serve_connection(stream, peer, header_timeout, handler).await;
                    drop(admitted);
                });
            }
            Err(error) => {
                let failure = classify_accept_error(&error);
                let key = match failure {
                    AcceptFailure::PeerGone => continue,
                    AcceptFailure::ResourceExhausted => "accept-exhausted",
                    AcceptFailure::Unexpected => "accept-unexpected",
                };
                if let Some(suppressed) = warnings.allow(key, Instant::now()) {
                    tracing::warn!(%error, suppressed, retry_in_ms = backoff.as_millis() as u64, "cannot accept connections");
                }
                tokio::time::sleep(backoff).await;
                if failure == AcceptFailure::ResourceExhausted {
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

async fn serve_connection<H, F>(stream: tokio::net::TcpStream, peer: SocketAddr, header_timeout: Duration, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + 'static,
    F: Future<Output = Response<ResponseBody>> + 'static,
{
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let response = handler(request, peer);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_HEADER_BYTES);
    let stream = WriteStallLimit::new(stream, WRITE_STALL_TIMEOUT);
    if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// A connection whose writes fail with `TimedOut` once they have made no progress for `limit`
/// (hyper then drops the connection). Reads pass through: hyper's header timer and the body
/// deadline bound them.
struct WriteStallLimit<S> {
    inner: S,
    limit: Duration,
    /// Started by the first write that could not proceed; cleared by any write that does.
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStallLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit, stalled_since: None }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled_since = None;
            return result;
        }
        let limit = self.limit;
        let timer = self.stalled_since.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer took no bytes of the answer")));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallLimit<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallLimit<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, result)
    }
}

/// Routes one request. Every request is in-flight work for the drain.
pub async fn dispatch<B>(state: &Rc<HttpState>, peer: IpAddr, request: Request<B>) -> Response<ResponseBody>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
{
    let _work = state.shutdown.work_guard();
    let (parts, body) = request.into_parts();
    if parts.headers.get_all(HOST).iter().nth(1).is_some() {
        // RFC 9112 §3.2: a request with more than one Host is refused; which one counts would be
        // anybody's guess, and the loopback bypass reads it.
        return DUPLICATE_HOST.into_response();
    }
    let query = parts.uri.query();
    let admin = || authorize_admin(state, peer, &parts);
    let result: RouteResult = match route(&parts.method, parts.uri.path()) {
        Err(RouteError::NotFound) => Err(NOT_FOUND),
        Err(RouteError::BadEncoding) => Err(BAD_PATH_ENCODING),
        Ok(Route::Health) => operator::health(state),
        // Probes must see the truth whoever else guessed tokens: `/ready` never answers the lockout,
        // a locked-out client just gets the public view.
        Ok(Route::Ready) => operator::ready(state, authorize_admin(state, peer, &parts).unwrap_or(false)),
        Ok(Route::Metrics) => admin().and_then(|admin| operator::metrics(state, || admin)),
        Ok(Route::Diagnostics) => admin().and_then(|admin| operator::diagnostics(state, || admin)),
        Ok(Route::Status) => admin().and_then(|admin| super::status::status(state, || admin)),
        Ok(Route::Deliveries) => match admin() {
            Ok(admin) => operator::list_deliveries(state, admin, query).await,
            Err(error) => Err(error),
        },
        Ok(Route::DeliveryRetry { delivery_id }) => match admin() {
            Ok(admin) => {
                operator::delivery_action(state, admin, DeliveryAction::Retry, &delivery_id, query, body).await
            }
            Err(error) => Err(error),
        },
        Ok(Route::DeliveryDeadLetter { delivery_id }) => match admin() {
            Ok(admin) => {
                operator::delivery_action(state, admin, DeliveryAction::DeadLetter, &delivery_id, query, body).await
            }
            Err(error) => Err(error),
        },
        Ok(Route::Webhook { provider_id }) => {
            webhook::handle(state, &provider_id, peer, &parts.headers, body, state.clock_ms()).await
        }
    };
    result.unwrap_or_else(|error| {
        if error.counted {
            state.metrics.increment(Stat::Errors);
        }
        error.into_response()
    })
}

const DUPLICATE_HOST: HttpError =
    HttpError::thrown(StatusCode::BAD_REQUEST, "Gateway request has more than one Host header.");
const TOO_MANY_ADMIN_FAILURES: HttpError =
    HttpError::thrown(StatusCode::TOO_MANY_REQUESTS, "Too many rejected operator requests. Try again later.");
/// Wrong admin tokens allowed per client in the window before it is blocked (the webhook
/// auth-failure limiter's numbers).
const MAX_ADMIN_FAILURES: u32 = 20;
const ADMIN_WINDOW_MS: u64 = 60_000;
const ADMIN_BACKOFF_MS: u64 = 60_000;

/// Whether the request may use operator endpoints; a client that keeps presenting wrong admin
/// tokens is blocked for a while (429), as webhook auth failures are.
fn authorize_admin(state: &HttpState, peer: IpAddr, parts: &http::request::Parts) -> Result<bool, HttpError> {
    let server = &state.config.server;
    let source = resolve_client_source(peer, &parts.headers, server.trust_proxy_headers, &state.trusted_proxies);
    let key = format!("admin:{source}");
    let now_ms = state.clock_ms();
    if let Verdict::Refused { retry_after_ms } = state.rate_limiter.borrow_mut().check(&key, now_ms, ADMIN_WINDOW_MS) {
        return Err(TOO_MANY_ADMIN_FAILURES.with_retry_after(retry_after_ms));
    }
    let admin = is_admin_head(&state.config, &parts.headers, &parts.uri, Some(peer));
    if !admin && presents_token(&parts.headers) {
        state.rate_limiter.borrow_mut().backoff(&key, now_ms, ADMIN_WINDOW_MS, MAX_ADMIN_FAILURES, ADMIN_BACKOFF_MS);
    }
    Ok(admin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::{BodyExt, Empty};
    use serde_json::{json, Value};

    #[test]
    fn admission_caps_each_client_keeps_slots_for_loopback_and_gives_them_back() {
        let admission = Admission::new(vec![Cidr::parse("10.9.0.0/16").unwrap()]);
        let client = IpAddr::from([192, 0, 2, 7]);
        let held: Vec<Admitted> = (0..MAX_CONNECTIONS_PER_CLIENT).map(|_| admission.admit(client).unwrap()).collect();
        assert!(admission.admit(client).is_none(), "one address cannot take more");
        assert!(admission.admit(IpAddr::from([192, 0, 2, 8])).is_some(), "another address can");
        let proxy = IpAddr::from([10, 9, 1, 1]);
        let through_proxy: Vec<Admitted> = (0..200).map(|_| admission.admit(proxy).unwrap()).collect();
        drop(held);
        assert!(admission.admit(client).is_some(), "closing gives the slots back");
        // Fill every slot that is not kept for loopback.
        let mut many = Vec::new();
        let mut n = 0u32;
        while let Some(admitted) = admission.admit(IpAddr::from((0x0A00_0000u32 + n / 60).to_be_bytes())) {
            many.push(admitted);
            n += 1;
        }
        assert!(admission.under_pressure());
        assert!(admission.admit(IpAddr::from([198, 51, 100, 1])).is_none(), "remote peers are refused now");
        assert!(admission.admit(IpAddr::from([127, 0, 0, 1])).is_some(), "loopback still gets in");
        drop((through_proxy, many));
    }

    #[test]
    fn accept_errors_are_classified() {
        let error = |errno: Errno| std::io::Error::from_raw_os_error(errno as i32);
        assert_eq!(classify_accept_error(&error(Errno::EMFILE)), AcceptFailure::ResourceExhausted);
        assert_eq!(classify_accept_error(&error(Errno::ENFILE)), AcceptFailure::ResourceExhausted);
        assert_eq!(classify_accept_error(&error(Errno::ECONNABORTED)), AcceptFailure::PeerGone);
        assert_eq!(classify_accept_error(&error(Errno::EINVAL)), AcceptFailure::Unexpected);
        assert_eq!(classify_accept_error(&std::io::Error::other("x")), AcceptFailure::Unexpected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_fails_once_it_has_stalled_for_the_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(16);
        let mut guarded = WriteStallLimit::new(near, Duration::from_secs(10));
        // A peer that takes bytes within the limit resets it: 9 s of waiting is no failure.
        let taker = async {
            tokio::time::sleep(Duration::from_secs(9)).await;
            far.read_exact(&mut [0; 8]).await.unwrap();
        };
        let (written, ()) = tokio::join!(guarded.write_all(&[0; 24]), taker);
        written.unwrap();
        let stalled_at = tokio::time::Instant::now();
        let error = guarded.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            stalled_at.elapsed(),
            Duration::from_secs(10),
            "the limit runs from the stall, not from the first write"
        );
    }

    fn gateway() -> Rc<HttpState> {
        HttpState::for_tests(crate::config::test_config(&[]), None)
    }

    async fn call(gateway: &Rc<HttpState>, method: &str, uri: &str) -> (StatusCode, Value) {
        let request =
            Request::builder().method(method).uri(uri).header("host", "127.0.0.1").body(Empty::<Bytes>::new()).unwrap();
        let response = dispatch(gateway, IpAddr::from([127, 0, 0, 1]), request).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn routing_errors_and_error_counting() {
        let gateway = gateway();
        assert_eq!(
            call(&gateway, "GET", "/nope").await,
            (StatusCode::NOT_FOUND, json!({"ok": false, "error": "Not found."}))
        );
        assert_eq!(gateway.metrics.get(Stat::Errors), 0, "a plain 404 is written, not thrown");
        let (status, body) = call(&gateway, "POST", "/deliveries/%E0%A4%A/retry").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["ok"], false);
        assert_eq!(gateway.metrics.get(Stat::Errors), 1);
        assert_eq!(call(&gateway, "GET", "/metrics").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(gateway.metrics.get(Stat::Errors), 1, "operator 401s are not counted");
        let (status, body) = call(&gateway, "GET", "/health?x=1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["mode"], "self-host");
        assert_eq!(body["cloudBaseUrl"], "http://127.0.0.1:1");
        assert_eq!(body["branding"]["productName"], "Open Cowork Cloud");
    }

    async fn call_with_token(gateway: &Rc<HttpState>, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = Request::builder().method("GET").uri(uri).header("host", "127.0.0.1");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response =
            dispatch(gateway, IpAddr::from([127, 0, 0, 1]), request.body(Empty::<Bytes>::new()).unwrap()).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Anyone who can reach the port may guess tokens; that must never make probes see the gateway
    /// as down. The guesser is locked out of the operator routes only.
    #[tokio::test]
    async fn a_token_guesser_locks_out_operator_routes_but_never_health_or_ready() {
        let gateway = gateway();
        for _ in 0..MAX_ADMIN_FAILURES + 5 {
            call_with_token(&gateway, "/metrics", Some("wrong-guess")).await;
        }
        assert_eq!(call_with_token(&gateway, "/metrics", Some("wrong-guess")).await.0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            call_with_token(&gateway, "/diagnostics", Some("admin-token-for-tests")).await.0,
            StatusCode::TOO_MANY_REQUESTS,
            "the operator routes stay locked for this client"
        );
        let (status, body) = call_with_token(&gateway, "/ready", None).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["status"], "not_ready", "the probe gets the public view and its real status");
        let (status, body) = call_with_token(&gateway, "/ready", Some("admin-token-for-tests")).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(body.get("providers").is_none(), "a locked-out client gets no admin detail");
        assert_eq!(call_with_token(&gateway, "/health", Some("wrong-guess")).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn unauthenticated_answers_show_only_the_clouds_scheme_host_and_port() {
        let config = crate::config::test_config(&[("OPEN_COWORK_CLOUD_BASE_URL", "http://127.0.0.1:1/tenant-7/api")]);
        let gateway = HttpState::for_tests(config, None);
        for route in ["/health", "/ready"] {
            let (_, body) = call_with_token(&gateway, route, None).await;
            assert_eq!(body["cloudBaseUrl"], "http://127.0.0.1:1", "{route}");
        }
    }

    #[tokio::test]
    async fn ready_is_503_while_draining_even_when_everything_else_holds() {
        use crate::channel::{ChannelRegistry, Ingress};
        use crate::cloud::streams::{CloudStatus, Subscription};
        use crate::runtime::Readiness;
        use crate::shutdown::Shutdown;

        let config = Rc::new(crate::config::test_config(&[]));
        let metrics = Rc::new(crate::metrics::Metrics::new(&config));
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::clone(&metrics)));
        let shutdown = Shutdown::new();
        let (ingress, _queue) = Ingress::bounded(4);
        let factory = crate::providers::ProviderFactory::default();
        registry.start_all(&|p| factory.build(p), &ingress, &shutdown);
        let (_status, live) = tokio::sync::watch::channel(CloudStatus {
            subscription: Subscription::Live,
            token: Ok(()),
            refused_session_streams: 0,
        });
        let readiness = Readiness::new(shutdown.clone(), Rc::clone(&registry), Some(live));
        readiness.set_started(true);
        let state = Rc::new(HttpState::new(config, metrics, readiness, registry, ingress, None, shutdown));
        assert_eq!(call(&state, "GET", "/ready").await.0, StatusCode::OK, "every condition holds before the drain");
        state.shutdown.begin_drain();
        let failing: Vec<_> = state.readiness.conditions().into_iter().filter(|c| !c.ok).map(|c| c.name).collect();
        assert_eq!(failing, ["not_draining"], "only the drain fails");
        assert_eq!(call(&state, "GET", "/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
