//! `POST /webhooks/<providerId>`, in upstream's exact order: count, rate-limit per
//! client and provider, auth-failure block, body cap and parse, provider dispatch.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use hyper::body::Body;
use serde_json::json;

use super::body::{parse_request_body, read_limited};
use super::client_ip::resolve_client_source;
use super::operator::RouteResult;
use super::rate_limit::Verdict;
use super::response::{self, HttpError, ResponseBody};
use super::state::HttpState;
use crate::channel::ingress::{claim_result, Refused};
use crate::channel::{InboundFailure, WebhookError, WebhookErrorCode, WebhookReply, WebhookRequest};
use crate::metrics::{ProviderStat, Stat};

const WINDOW_MS: u64 = 60_000;
const MAX_REQUESTS: u32 = 120;
const MAX_AUTH_FAILURES: u32 = 20;
const AUTH_BACKOFF_MS: u64 = 60_000;

const DRAINING: HttpError =
    HttpError::thrown(StatusCode::SERVICE_UNAVAILABLE, "Gateway is shutting down; webhook intake is closed.");
const TOO_MANY: HttpError =
    HttpError::thrown(StatusCode::TOO_MANY_REQUESTS, "Too many Gateway webhook requests. Try again later.");
const TOO_MANY_REJECTED: HttpError =
    HttpError::thrown(StatusCode::TOO_MANY_REQUESTS, "Too many rejected Gateway webhook requests. Try again later.");
const BAD_BODY: HttpError =
    HttpError::thrown(StatusCode::BAD_REQUEST, "Gateway webhook body must be valid JSON or form-encoded payload.");
const NOT_FOUND: HttpError = HttpError::thrown(StatusCode::NOT_FOUND, "Gateway webhook provider was not found.");
const AUTH_FAILED: HttpError = HttpError::thrown(StatusCode::UNAUTHORIZED, "Gateway webhook authorization failed.");
const BAD_PAYLOAD: HttpError = HttpError::thrown(StatusCode::BAD_REQUEST, "Gateway webhook payload is invalid.");
const PROVIDER_FAILED: HttpError = HttpError::thrown(StatusCode::BAD_GATEWAY, "Gateway webhook provider failed.");
const QUEUE_FULL: HttpError =
    HttpError::thrown(StatusCode::SERVICE_UNAVAILABLE, "Gateway inbound queue is full. Try again shortly.");
const HELD_ELSEWHERE: HttpError = HttpError::thrown(
    StatusCode::SERVICE_UNAVAILABLE,
    "Another gateway is processing this event. Try again after its lease.",
);
/// How long a platform is asked to wait when the inbound queue is full.
const QUEUE_FULL_RETRY_MS: u64 = 1_000;
const NOT_RECEIVED_IN_TIME: HttpError = HttpError::thrown(
    StatusCode::SERVICE_UNAVAILABLE,
    "Gateway could not record this event in time. Try again shortly.",
);
/// How long a platform is asked to wait when a receipt missed the channel's answer deadline.
const NOT_RECEIVED_RETRY_MS: u64 = 1_000;

/// Runs the pipeline. `now_ms` is a monotonic clock reading for the rate limiter.
pub async fn handle<B>(
    state: &std::rc::Rc<HttpState>,
    provider_id: &str,
    peer: IpAddr,
    headers: &HeaderMap,
    body: B,
    now_ms: u64,
) -> RouteResult
where
    B: Body<Data = Bytes> + Unpin,
{
    state.metrics.increment(Stat::WebhookRequests);
    let registered = state.registry.is_registered(provider_id);
    if registered {
        state.metrics.increment_provider(provider_id, ProviderStat::WebhookRequests);
    }
    if state.shutdown.is_draining() {
        return Err(DRAINING);
    }

    let server = &state.config.server;
    let source = resolve_client_source(peer, headers, server.trust_proxy_headers, &state.trusted_proxies);
    // Unknown ids share one bucket per source: they are limited, and cannot grow the table with
    // arbitrary path text.
    let provider_key = if registered { provider_id } else { "?unregistered" };
    let request_key = format!("request:{source}:{provider_key}");
    let auth_key = format!("auth:{source}:{provider_key}");
    {
        let mut limiter = state.rate_limiter.borrow_mut();
        if let Verdict::Refused { retry_after_ms } = limiter.claim(&request_key, now_ms, WINDOW_MS, MAX_REQUESTS) {
            return Err(TOO_MANY.with_retry_after(retry_after_ms));
        }
        if let Verdict::Refused { retry_after_ms } = limiter.check(&auth_key, now_ms, WINDOW_MS) {
            return Err(TOO_MANY_REJECTED.with_retry_after(retry_after_ms));
        }
    }

    // A secret that travels in a header is checked before a byte of the body is buffered.
    if let Err(error) = state.registry.check_webhook_headers(provider_id, headers) {
        return Err(rejected(state, provider_id, &auth_key, now_ms, error));
    }
    let read =
        read_limited(body, server.max_request_body_bytes, &state.body_budget, super::server::REQUEST_TIMEOUT).await?;
    let raw_body = std::str::from_utf8(&read.bytes).map_err(|_| BAD_BODY)?;
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let payload = parse_request_body(raw_body, content_type).map_err(|_| BAD_BODY)?;

    let request = WebhookRequest { payload: &payload, headers, raw_body, received_at_ms: crate::time::now_ms() };
    match state.registry.handle_webhook(provider_id, request).await {
        Ok(WebhookReply::Respond(answer)) => Ok(response::json(StatusCode::OK, &answer)),
        Ok(WebhookReply::Ignored) => Ok(accepted()),
        Ok(WebhookReply::Messages(messages)) => {
            let deadline = state.registry.get(provider_id).and_then(|r| r.channel()).and_then(|c| c.answer_deadline());
            enqueue(state, provider_id, messages, deadline).await
        }
        Err(error) => Err(rejected(state, provider_id, &auth_key, now_ms, error)),
    }
}

/// The answer to a refused webhook; an authentication failure also counts toward the client's
/// auth-failure block.
fn rejected(state: &HttpState, provider_id: &str, auth_key: &str, now_ms: u64, error: WebhookError) -> HttpError {
    tracing::debug!(provider = provider_id, error = %crate::config::redact::redact_text(&error.detail), "webhook rejected");
    match error.code {
        WebhookErrorCode::NotFound => NOT_FOUND,
        WebhookErrorCode::Auth => {
            state.rate_limiter.borrow_mut().backoff(auth_key, now_ms, WINDOW_MS, MAX_AUTH_FAILURES, AUTH_BACKOFF_MS);
            AUTH_FAILED
        }
        WebhookErrorCode::Payload => BAD_PAYLOAD,
        WebhookErrorCode::Upstream => PROVIDER_FAILED,
    }
}

/// Queues the messages and answers once each has its receipt: written to the inbound journal
/// (milliseconds, with a state directory) or claimed in Cloud (one round trip); a duplicate is a
/// 202 too. Processing goes on after the answer. A full queue is a 503 with `Retry-After`. With a
/// channel's `deadline`, a receipt still pending when it passes is answered 503 with
/// `Retry-After`, never 202: the message is then neither on disk nor claimed, and only the
/// platform's retry keeps it from being lost. The receipt goes on; if its claim comes through, the
/// retry finds it and is a duplicate.
async fn enqueue(
    state: &HttpState,
    provider_id: &str,
    messages: Vec<crate::channel::InboundMessage>,
    deadline: Option<std::time::Duration>,
) -> RouteResult {
    let mut receipts = Vec::with_capacity(messages.len());
    for message in messages {
        match state.ingress.try_submit(provider_id, message) {
            Ok(receipt) => receipts.push(receipt),
            Err(Refused::Full) => return Err(QUEUE_FULL.with_retry_after(QUEUE_FULL_RETRY_MS)),
            Err(Refused::Closed) => return Err(DRAINING),
        }
    }
    let all = async {
        for receipt in receipts {
            claim_result(receipt).await?;
        }
        Ok::<(), InboundFailure>(())
    };
    let received = match deadline {
        None => all.await,
        Some(deadline) => match tokio::time::timeout(deadline, all).await {
            Ok(received) => received,
            Err(_) => {
                tracing::debug!(
                    provider = provider_id,
                    "webhook answered 503 at its deadline: its message is neither journaled nor claimed yet"
                );
                return Err(NOT_RECEIVED_IN_TIME.with_retry_after(NOT_RECEIVED_RETRY_MS));
            }
        },
    };
    match received {
        Ok(()) => Ok(accepted()),
        Err(failure) => Err(claim_refused(state, provider_id, &failure)),
    }
}

/// The answer when a message could not be claimed.
fn claim_refused(state: &HttpState, provider_id: &str, failure: &InboundFailure) -> HttpError {
    // A message still waiting when the drain began was never claimed: the platform
    // retries it against the next process.
    if state.shutdown.is_draining() {
        return DRAINING;
    }
    if let Some(retry_after) = failure.retry_after {
        return HELD_ELSEWHERE.with_retry_after(retry_after.as_millis() as u64);
    }
    tracing::debug!(provider = provider_id, retryable = failure.retryable, error = %crate::config::redact::redact_text(&failure.message), "webhook message not claimed");
    PROVIDER_FAILED
}

fn accepted() -> Response<ResponseBody> {
    response::json(StatusCode::ACCEPTED, &json!({"ok": true}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::rc::Rc;

    fn gateway(extra: &[(&str, &str)]) -> Rc<HttpState> {
        let mut variables = vec![("OPEN_COWORK_GATEWAY_MAX_REQUEST_BODY_BYTES", "1024")];
        variables.extend_from_slice(extra);
        HttpState::for_tests(crate::config::test_config(&variables), None)
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn body(text: &'static str) -> Full<Bytes> {
        Full::new(Bytes::from_static(text.as_bytes()))
    }

    #[tokio::test]
    async fn unknown_provider_is_404_until_the_rate_limit_then_429() {
        let gateway = gateway(&[]);
        let headers = HeaderMap::new();
        for _ in 0..120 {
            let result = handle(&gateway, "missing", PEER, &headers, body("{}"), 1_000).await;
            assert_eq!(result.unwrap_err(), NOT_FOUND);
        }
        let limited = handle(&gateway, "missing", PEER, &headers, body("{}"), 1_000).await.unwrap_err();
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.retry_after_ms, Some(60_000));
        assert_eq!(gateway.metrics.get(Stat::WebhookRequests), 121);
    }

    #[tokio::test]
    async fn body_cap_and_parse_errors_come_before_dispatch() {
        let gateway = gateway(&[]);
        let headers = HeaderMap::new();
        let big = Full::new(Bytes::from(vec![b' '; 2048]));
        assert_eq!(
            handle(&gateway, "fake", PEER, &headers, big, 0).await.unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(handle(&gateway, "fake", PEER, &headers, body("{nope"), 0).await.unwrap_err(), BAD_BODY);
        let invalid_utf8 = Full::new(Bytes::from_static(b"\"\xff\""));
        assert_eq!(handle(&gateway, "fake", PEER, &headers, invalid_utf8, 0).await.unwrap_err(), BAD_BODY);
        // The fake provider is registered but cannot start in this build: 502, as upstream for an unstarted provider.
        assert_eq!(
            handle(&gateway, "fake", PEER, &headers, body("{\"text\":\"hi\"}"), 0).await.unwrap_err(),
            PROVIDER_FAILED
        );
    }

    /// A state whose channels are started and whose ingress queue holds `depth` messages and is
    /// never read: what a webhook meets when the runtime cannot keep up.
    fn started_with_queue(depth: usize) -> (Rc<HttpState>, crate::channel::ingress::IngressReceiver) {
        use crate::channel::{ChannelRegistry, Ingress};
        let config = Rc::new(crate::config::test_config(&[]));
        let metrics = Rc::new(crate::metrics::Metrics::new(&config));
        let registry = Rc::new(ChannelRegistry::new(&config, Rc::clone(&metrics)));
        let shutdown = crate::shutdown::Shutdown::new();
        let (ingress, queue) = Ingress::bounded(depth);
        let factory = crate::providers::ProviderFactory::default();
        registry.start_all(&|p| factory.build(p), &ingress, &shutdown);
        let readiness = crate::runtime::Readiness::new(shutdown.clone(), Rc::clone(&registry), None);
        (Rc::new(HttpState::new(config, metrics, readiness, registry, ingress, None, shutdown)), queue)
    }

    #[tokio::test]
    async fn a_full_inbound_queue_answers_503_with_retry_after() {
        let (gateway, _queue) = started_with_queue(1);
        let filler = crate::channel::InboundMessage::text_for_tests("m-0", "waiting");
        let _waiting = gateway.ingress.try_submit("fake", filler).unwrap();
        let refused = handle(&gateway, "fake", PEER, &HeaderMap::new(), body(r#"{"text":"hi"}"#), 0).await.unwrap_err();
        assert_eq!(refused, QUEUE_FULL.with_retry_after(1_000));
    }

    #[tokio::test]
    async fn a_message_dropped_at_the_drain_is_a_503_not_a_502() {
        let (gateway, mut queue) = started_with_queue(4);
        let headers = HeaderMap::new();
        let answer = handle(&gateway, "fake", PEER, &headers, body(r#"{"text":"hi"}"#), 0);
        let consumer = async {
            let item = queue.recv().await.unwrap();
            gateway.shutdown.begin_drain();
            drop(item);
        };
        let (answer, ()) = tokio::join!(answer, consumer);
        assert_eq!(answer.unwrap_err(), DRAINING);
    }

    #[tokio::test]
    async fn draining_closes_intake() {
        let gateway = gateway(&[]);
        gateway.shutdown.begin_drain();
        assert_eq!(handle(&gateway, "fake", PEER, &HeaderMap::new(), body("{}"), 0).await.unwrap_err(), DRAINING);
    }

    #[tokio::test]
    async fn forwarded_clients_get_their_own_buckets_behind_a_trusted_proxy() {
        let gateway = gateway(&[
            ("OPEN_COWORK_GATEWAY_TRUST_PROXY_HEADERS", "true"),
            ("OPEN_COWORK_GATEWAY_TRUSTED_PROXY_CIDRS", "127.0.0.0/8"),
        ]);
        let mut first = HeaderMap::new();
        first.insert("x-forwarded-for", "203.0.113.10, 127.0.0.2".parse().unwrap());
        for _ in 0..120 {
            let _ = handle(&gateway, "missing", PEER, &first, body("{}"), 0).await;
        }
        assert_eq!(
            handle(&gateway, "missing", PEER, &first, body("{}"), 0).await.unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
        let mut second = HeaderMap::new();
        second.insert("x-forwarded-for", "203.0.113.11".parse().unwrap());
        assert_eq!(handle(&gateway, "missing", PEER, &second, body("{}"), 0).await.unwrap_err(), NOT_FOUND);
    }
}
