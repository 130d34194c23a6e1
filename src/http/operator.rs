//! Operator routes: `/health`, `/ready`, `/metrics`, `/diagnostics` and
//! the delivery listing and actions, scoped to the enabled providers' channel bindings.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::{Response, StatusCode};
use hyper::body::Body;
use serde_json::{json, Map, Value};
use smol_str::SmolStr;

use super::body::read_limited;
use super::response::{self, HttpError, ResponseBody, ADMIN_REQUIRED};
use super::state::HttpState;
use crate::cloud::{CloudError, DeliveryOperations, DeliveryQuery, DeliveryRecord, DeliveryStatus};
use crate::config::urls::origin;

const METRICS_DISABLED: HttpError = HttpError::written(
    StatusCode::NOT_FOUND,
    "Metrics are disabled; set OPEN_COWORK_GATEWAY_METRICS_ENABLED=true and restart to turn them on.",
);
const DIAGNOSTICS_DISABLED: HttpError = HttpError::written(
    StatusCode::NOT_FOUND,
    "Diagnostics are disabled; set OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED=true and restart to turn them on.",
);
const LISTING_UNAVAILABLE: HttpError =
    HttpError::written(StatusCode::SERVICE_UNAVAILABLE, "Cloud delivery listing is not available.");
const RETRY_UNAVAILABLE: HttpError =
    HttpError::written(StatusCode::SERVICE_UNAVAILABLE, "Cloud delivery retry is not available.");
const DEAD_LETTER_UNAVAILABLE: HttpError =
    HttpError::written(StatusCode::SERVICE_UNAVAILABLE, "Cloud delivery dead-letter is not available.");
const DELIVERY_NOT_FOUND: HttpError = HttpError::written(StatusCode::NOT_FOUND, "Delivery not found.");
const CLOUD_FAILED: HttpError = HttpError::thrown(StatusCode::BAD_GATEWAY, "Cloud delivery request failed.");
const BAD_ACTION_BODY: HttpError =
    HttpError::thrown(StatusCode::BAD_REQUEST, "Delivery action body must be valid JSON.");

pub type RouteResult = Result<Response<ResponseBody>, HttpError>;

/// The largest body an operator action (retry, dead-letter) accepts.
const OPERATOR_BODY_LIMIT: usize = 16 * 1024;

fn ok_json(body: Value) -> RouteResult {
    Ok(response::json(StatusCode::OK, &body))
}

pub fn health(state: &HttpState) -> RouteResult {
    let config = &state.config;
    ok_json(
        json!({"ok": true, "status": "ok", "mode": config.mode.as_str(), "branding": config.branding, "cloudBaseUrl": origin(&config.cloud.base_url)}),
    )
}

/// 200 when ready, else 503; admin callers also get `providers` and the readiness `conditions`.
pub fn ready(state: &HttpState, admin: bool) -> RouteResult {
    let ready = state.readiness.is_ready();
    let mut body = json!({
        "ok": ready,
        "status": if ready { "ready" } else { "not_ready" },
        "branding": state.config.branding,
        "cloudBaseUrl": origin(&state.config.cloud.base_url),
    });
    if admin {
        body["providers"] = Value::from(state.registry.status_json());
        body["conditions"] = json!(state.readiness.conditions());
    }
    // Degraded reasons are fixed names (no detail) for everyone: a probe or a load balancer
    // sees why a ready gateway serves with a problem; details are for operators.
    let degraded = state.readiness.degraded();
    body["degraded"] = if admin {
        json!(degraded)
    } else {
        let mut reasons: Vec<&str> = degraded.iter().map(|d| d.reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        json!(reasons)
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(response::json(status, &body))
}

/// Disabled is checked before authorization, as upstream.
pub fn metrics(state: &HttpState, admin: impl FnOnce() -> bool) -> RouteResult {
    if !state.config.metrics_enabled {
        return Err(METRICS_DISABLED);
    }
    if !admin() {
        return Err(ADMIN_REQUIRED);
    }
    state.registry.sync_metrics();
    state.metrics.set_degraded(state.readiness.degraded_counts());
    let mut text = state.metrics.render_prometheus();
    crate::metrics::write_ready(&mut text, state.readiness.is_ready());
    Ok(response::text(StatusCode::OK, response::PROMETHEUS_CONTENT_TYPE, text))
}

pub fn diagnostics(state: &HttpState, admin: impl FnOnce() -> bool) -> RouteResult {
    if !state.config.diagnostics_enabled {
        return Err(DIAGNOSTICS_DISABLED);
    }
    if !admin() {
        return Err(ADMIN_REQUIRED);
    }
    state.registry.sync_metrics();
    ok_json(json!({
        "ok": true,
        "config": &*state.config,
        "ready": state.readiness.is_ready(),
        "readiness": state.readiness.conditions(),
        "degraded": state.readiness.degraded(),
        "providers": state.registry.status_json(),
        "metrics": state.metrics.to_json(),
        "deliveryOperator": delivery_operator_json(state),
        "risks": state.config.risks(),
    }))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The bindings a request may touch: the given one if configured (else none), or all configured.
/// The `deliveryOperator` block of `/diagnostics`.
fn delivery_operator_json(state: &HttpState) -> Value {
    let bindings = state.config.channel_binding_ids();
    let has_bindings = !bindings.is_empty();
    let cloud = state.deliveries.as_ref();
    let listing = cloud.is_some();
    let retry = cloud.is_some_and(|c| c.supports_retry());
    let dead_letter = cloud.is_some_and(|c| c.supports_dead_letter());
    let mut reasons = Vec::new();
    if cloud.is_none() {
        reasons.push("Cloud client is not attached to this gateway HTTP server.");
    }
    if !has_bindings {
        reasons.push("No enabled provider channel bindings are configured.");
    }
    if !listing {
        reasons.push("Cloud delivery listing is not available.");
    }
    if !retry {
        reasons.push("Cloud delivery retry is not available.");
    }
    if !dead_letter {
        reasons.push("Cloud delivery dead-letter is not available.");
    }
    json!({
        "scope": "configured-channel-bindings",
        "channelBindingIds": bindings,
        "listAllowed": has_bindings && listing,
        "retryAllowed": has_bindings && listing && retry,
        "deadLetterAllowed": has_bindings && listing && dead_letter,
        "disabledReason": if reasons.is_empty() { Value::Null } else { Value::from(reasons.join(" ")) },
    })
}

fn scoped_bindings(state: &HttpState, requested: Option<&str>) -> Vec<SmolStr> {
    let configured = state.config.channel_binding_ids();
    match requested {
        Some(binding) => configured.into_iter().filter(|b| b == binding).collect(),
        None => configured,
    }
}

/// Polls every future to completion concurrently and returns their outputs in order.
async fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + 'a>>>) -> Vec<T> {
    let mut pending: Vec<Option<Pin<Box<dyn Future<Output = T> + 'a>>>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(value) = future.as_mut().poll(cx) {
                    *output = Some(value);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// One `listDeliveries` per binding, concurrently; de-duplicated, newest first, cut to `limit`.
async fn list_across(
    cloud: &dyn DeliveryOperations,
    bindings: &[SmolStr],
    delivery_id: Option<&str>,
    status: Option<DeliveryStatus>,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, CloudError> {
    let calls = bindings
        .iter()
        .map(|binding| {
            cloud.list_deliveries(DeliveryQuery {
                delivery_id: delivery_id.map(SmolStr::new),
                status,
                channel_binding_id: binding.clone(),
                limit,
            })
        })
        .collect();
    let mut all: Vec<DeliveryRecord> = Vec::new();
    for result in join_all(calls).await {
        for record in result? {
            if !all
                .iter()
                .any(|r| r.channel_binding_id == record.channel_binding_id && r.delivery_id == record.delivery_id)
            {
                all.push(record);
            }
        }
    }
    all.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then_with(|| b.created_at.cmp(&a.created_at)));
    all.truncate(limit as usize);
    Ok(all)
}

fn cloud_failure(error: &CloudError) -> HttpError {
    tracing::warn!(status = ?error.status, error = %crate::config::redact::redact_text(&error.message), "Cloud delivery operation failed");
    CLOUD_FAILED
}

/// `GET /deliveries?status=&channelBindingId=&limit=`.
pub async fn list_deliveries(state: &HttpState, admin: bool, query: Option<&str>) -> RouteResult {
    if !admin {
        return Err(ADMIN_REQUIRED);
    }
    let cloud = state.deliveries.as_deref().ok_or(LISTING_UNAVAILABLE)?;
    let status = query_param(query, "status").and_then(|s| DeliveryStatus::parse(&s));
    let limit = match query_param(query, "limit").and_then(|l| crate::config::env::parse_integer(&l)) {
        Some(n) if n > 0 => n.min(200) as u32,
        _ => 50,
    };
    let requested = query_param(query, "channelBindingId");
    let bindings = scoped_bindings(state, requested.as_deref());
    let deliveries = list_across(cloud, &bindings, None, status, limit).await.map_err(|e| cloud_failure(&e))?;
    ok_json(json!({"ok": true, "deliveries": deliveries}))
}

/// Which delivery action a route asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryAction {
    Retry,
    DeadLetter,
}

/// `POST /deliveries/<id>/retry` and `/dead-letter`, in upstream's step order.
pub async fn delivery_action<B>(
    state: &HttpState,
    admin: bool,
    action: DeliveryAction,
    delivery_id: &str,
    query: Option<&str>,
    body: B,
) -> RouteResult
where
    B: Body<Data = Bytes> + Unpin,
{
    if !admin {
        return Err(ADMIN_REQUIRED);
    }
    let cloud = state.deliveries.as_deref().ok_or(LISTING_UNAVAILABLE)?;
    // An operator action body is a few fields: a tight cap keeps admin routes out of the memory game.
    let limit = state.config.server.max_request_body_bytes.min(OPERATOR_BODY_LIMIT);
    let read = read_limited(body, limit, &state.body_budget, super::server::REQUEST_TIMEOUT).await?;
    let bytes = &read.bytes;
    let fields: Map<String, Value> = if bytes.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => Map::new(),
            Err(_) => return Err(BAD_ACTION_BODY),
        }
    };
    let field = |name: &str| {
        fields.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let requested = field("channelBindingId").or_else(|| query_param(query, "channelBindingId"));
    match action {
        DeliveryAction::Retry if !cloud.supports_retry() => return Err(RETRY_UNAVAILABLE),
        DeliveryAction::DeadLetter if !cloud.supports_dead_letter() => return Err(DEAD_LETTER_UNAVAILABLE),
        _ => {}
    }
    let bindings = scoped_bindings(state, requested.as_deref());
    let matches = list_across(cloud, &bindings, Some(delivery_id), None, 2).await.map_err(|e| cloud_failure(&e))?;
    let [found] = matches.as_slice() else { return Err(DELIVERY_NOT_FOUND) };
    let binding = found.channel_binding_id.clone();
    let result = match action {
        DeliveryAction::Retry => cloud.retry_delivery(delivery_id, &binding).await,
        DeliveryAction::DeadLetter => {
            cloud.dead_letter_delivery(delivery_id, &binding, field("lastError").as_deref()).await
        }
    };
    match result.map_err(|e| cloud_failure(&e))? {
        Some(delivery) => ok_json(json!({"ok": true, "delivery": delivery})),
        None => Err(DELIVERY_NOT_FOUND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::LocalBoxFuture;
    use http_body_util::{BodyExt, Empty, Full};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// An in-memory delivery store that records the calls it receives.
    #[derive(Default)]
    struct MemoryDeliveries {
        records: Vec<DeliveryRecord>,
        calls: RefCell<Vec<String>>,
        without_retry: bool,
    }

    fn record(id: &str, binding: &str, updated_at: &str) -> DeliveryRecord {
        DeliveryRecord {
            delivery_id: id.into(),
            channel_binding_id: binding.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: updated_at.into(),
            rest: Map::new(),
        }
    }

    impl DeliveryOperations for MemoryDeliveries {
        fn list_deliveries(&self, query: DeliveryQuery) -> LocalBoxFuture<'_, Result<Vec<DeliveryRecord>, CloudError>> {
            self.calls.borrow_mut().push(format!(
                "list {} {:?} {:?} {}",
                query.channel_binding_id, query.delivery_id, query.status, query.limit
            ));
            let found = self
                .records
                .iter()
                .filter(|r| {
                    r.channel_binding_id == query.channel_binding_id
                        && query.delivery_id.as_ref().is_none_or(|id| *id == r.delivery_id)
                })
                .cloned()
                .collect();
            Box::pin(async move { Ok(found) })
        }
        fn supports_retry(&self) -> bool {
            !self.without_retry
        }
        fn supports_dead_letter(&self) -> bool {
            true
        }
        fn retry_delivery<'a>(
            &'a self,
            id: &'a str,
            binding: &'a str,
        ) -> LocalBoxFuture<'a, Result<Option<DeliveryRecord>, CloudError>> {
            self.calls.borrow_mut().push(format!("retry {id} {binding}"));
            Box::pin(async move { Ok(Some(record(id, binding, "later"))) })
        }
        fn dead_letter_delivery<'a>(
            &'a self,
            id: &'a str,
            binding: &'a str,
            last_error: Option<&'a str>,
        ) -> LocalBoxFuture<'a, Result<Option<DeliveryRecord>, CloudError>> {
            self.calls.borrow_mut().push(format!("dead {id} {binding} {last_error:?}"));
            Box::pin(async move { Ok(None) })
        }
    }

    fn gateway(cloud: Option<Rc<MemoryDeliveries>>) -> Rc<HttpState> {
        let config = crate::config::test_config(&[(
            "OPEN_COWORK_GATEWAY_PROVIDERS",
            r#"[{"id":"fake","kind":"fake","channelBindingId":"b1"},{"id":"cli","kind":"cli","channelBindingId":"b2"}]"#,
        )]);
        HttpState::for_tests(config, cloud.map(|c| c as Rc<dyn DeliveryOperations>))
    }

    async fn body_json(response: Response<ResponseBody>) -> Value {
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn without_a_cloud_client_delivery_routes_answer_503() {
        let gateway = gateway(None);
        assert_eq!(list_deliveries(&gateway, true, None).await.unwrap_err(), LISTING_UNAVAILABLE);
        assert_eq!(list_deliveries(&gateway, false, None).await.unwrap_err(), ADMIN_REQUIRED);
        let result = delivery_action(&gateway, true, DeliveryAction::Retry, "d1", None, Empty::<Bytes>::new()).await;
        assert_eq!(result.unwrap_err(), LISTING_UNAVAILABLE);
        let operator = delivery_operator_json(&gateway);
        assert_eq!(operator["listAllowed"], false);
        assert_eq!(
            operator["disabledReason"],
            "Cloud client is not attached to this gateway HTTP server. Cloud delivery listing is not available. Cloud delivery retry is not available. Cloud delivery dead-letter is not available."
        );
    }

    #[tokio::test]
    async fn listing_is_scoped_merged_sorted_and_limited() {
        let cloud = Rc::new(MemoryDeliveries {
            records: vec![
                record("a", "b1", "2026-01-02"),
                record("b", "b2", "2026-01-03"),
                record("c", "b1", "2026-01-01"),
                record("x", "other", "2026-02-01"),
            ],
            ..Default::default()
        });
        let gateway = gateway(Some(Rc::clone(&cloud)));
        let body = body_json(list_deliveries(&gateway, true, Some("status=bogus&limit=2")).await.unwrap()).await;
        let ids: Vec<&str> =
            body["deliveries"].as_array().unwrap().iter().map(|d| d["deliveryId"].as_str().unwrap()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(*cloud.calls.borrow(), ["list b1 None None 2", "list b2 None None 2"]);

        cloud.calls.borrow_mut().clear();
        let body = body_json(list_deliveries(&gateway, true, Some("channelBindingId=other")).await.unwrap()).await;
        assert_eq!(body["deliveries"], json!([]));
        assert!(cloud.calls.borrow().is_empty(), "an unconfigured binding makes no Cloud call");

        let body = body_json(
            list_deliveries(&gateway, true, Some("channelBindingId=b1&status=sent&limit=999")).await.unwrap(),
        )
        .await;
        assert_eq!(body["deliveries"].as_array().unwrap().len(), 2);
        assert_eq!(*cloud.calls.borrow(), ["list b1 None Some(Sent) 200"]);
    }

    #[tokio::test]
    async fn actions_need_exactly_one_match() {
        let cloud = Rc::new(MemoryDeliveries {
            records: vec![record("d1", "b1", "t"), record("dup", "b1", "t"), record("dup", "b2", "t")],
            ..Default::default()
        });
        let gateway = gateway(Some(Rc::clone(&cloud)));
        let response =
            delivery_action(&gateway, true, DeliveryAction::Retry, "d1", None, Empty::<Bytes>::new()).await.unwrap();
        assert_eq!(body_json(response).await["delivery"]["deliveryId"], "d1");
        assert!(cloud.calls.borrow().contains(&"retry d1 b1".to_owned()));

        let ambiguous =
            delivery_action(&gateway, true, DeliveryAction::Retry, "dup", None, Empty::<Bytes>::new()).await;
        assert_eq!(ambiguous.unwrap_err(), DELIVERY_NOT_FOUND);
        let chosen = delivery_action(
            &gateway,
            true,
            DeliveryAction::Retry,
            "dup",
            Some("channelBindingId=b2"),
            Empty::<Bytes>::new(),
        )
        .await;
        assert!(chosen.is_ok());
        let by_body = Full::new(Bytes::from_static(br#"{"channelBindingId":"b2","lastError":"operator gave up"}"#));
        let dead = delivery_action(&gateway, true, DeliveryAction::DeadLetter, "dup", None, by_body).await;
        assert_eq!(dead.unwrap_err(), DELIVERY_NOT_FOUND, "Cloud returned null");
        assert!(cloud.calls.borrow().contains(&"dead dup b2 Some(\"operator gave up\")".to_owned()));
        let missing = delivery_action(&gateway, true, DeliveryAction::Retry, "nope", None, Empty::<Bytes>::new()).await;
        assert_eq!(missing.unwrap_err(), DELIVERY_NOT_FOUND);
        let unconfigured = delivery_action(
            &gateway,
            true,
            DeliveryAction::Retry,
            "d1",
            Some("channelBindingId=other"),
            Empty::<Bytes>::new(),
        )
        .await;
        assert_eq!(unconfigured.unwrap_err(), DELIVERY_NOT_FOUND);
    }

    #[tokio::test]
    async fn invalid_action_body_is_400_and_missing_capability_is_503() {
        let cloud = Rc::new(MemoryDeliveries {
            records: vec![record("d1", "b1", "t")],
            without_retry: true,
            ..Default::default()
        });
        let gateway = gateway(Some(cloud));
        let bad = delivery_action(
            &gateway,
            true,
            DeliveryAction::DeadLetter,
            "d1",
            None,
            Full::new(Bytes::from_static(b"{oops")),
        )
        .await;
        assert_eq!(bad.unwrap_err(), BAD_ACTION_BODY);
        let retry = delivery_action(&gateway, true, DeliveryAction::Retry, "d1", None, Empty::<Bytes>::new()).await;
        assert_eq!(retry.unwrap_err(), RETRY_UNAVAILABLE);
        assert_eq!(delivery_operator_json(&gateway)["disabledReason"], "Cloud delivery retry is not available.");
    }

    #[tokio::test]
    async fn operator_endpoints_check_disabled_before_auth() {
        let gateway = gateway(None);
        assert_eq!(metrics(&gateway, || false).unwrap_err(), ADMIN_REQUIRED);
        assert!(metrics(&gateway, || true).is_ok());
        let body = body_json(diagnostics(&gateway, || true).unwrap()).await;
        assert_eq!(body["config"]["cloud"]["serviceToken"], "[redacted]");
        assert_eq!(body["config"]["server"]["adminToken"], "[redacted]");
        assert_eq!(body["ready"], false);

        let ready = ready(&gateway, false).unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_json(ready).await;
        assert_eq!(body["status"], "not_ready");
        assert!(body.get("providers").is_none(), "providers only for admin callers");
    }

    /// The operator delivery routes with the Cloud client behind them, against the in-process dev
    /// Cloud over loopback HTTP.
    #[cfg(feature = "devcloud")]
    mod through_the_cloud_client {
        use std::rc::Rc;
        use std::time::Duration;

        use bytes::Bytes;
        use http_body_util::{BodyExt, Empty};
        use serde_json::{json, Value};
        use tokio::task::LocalSet;

        use crate::cloud::client::CloudClient;
        use crate::cloud::DeliveryOperations;
        use crate::config::Secret;
        use crate::devcloud::{DevCloud, DevCloudOptions};
        use crate::net::https::build_client;
        use crate::providers::KINDS;

        fn client_for(base_url: &str, token: &str) -> CloudClient {
            CloudClient::new(build_client(None).unwrap(), base_url, Secret::new(token), Duration::from_secs(10))
        }

        fn run<F: std::future::Future<Output = ()>>(test: F) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            LocalSet::new().block_on(&runtime, test);
        }

        /// The operator routes' state with the Cloud client as their delivery operations.
        fn operator_for(base_url: &str, token: &str) -> Rc<crate::http::state::HttpState> {
            use crate::channel::{ChannelRegistry, Ingress};
            let env = crate::config::Env::from_pairs([
                ("OPEN_COWORK_CLOUD_BASE_URL", base_url),
                ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", token),
                ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-token-for-tests"),
                ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
                ("OPEN_COWORK_GATEWAY_INSTANCE_ID", "test"),
            ]);
            let config = Rc::new(crate::config::resolve(&json!({}), &env, KINDS).unwrap());
            let metrics = Rc::new(crate::metrics::Metrics::new(&config));
            let registry = Rc::new(ChannelRegistry::new(&config, Rc::clone(&metrics)));
            let shutdown = crate::shutdown::Shutdown::new();
            let readiness = crate::runtime::Readiness::new(shutdown.clone(), Rc::clone(&registry), None);
            let (ingress, queue) = Ingress::bounded(4);
            std::mem::forget(queue);
            let client = Rc::new(client_for(base_url, token));
            Rc::new(crate::http::state::HttpState::new(
                config,
                metrics,
                readiness,
                registry,
                ingress,
                Some(client as Rc<dyn DeliveryOperations>),
                shutdown,
            ))
        }

        #[test]
        fn operator_delivery_routes_go_through_the_cloud_client() {
            run(async {
                let cloud = DevCloud::new(DevCloudOptions {
                    poll_interval: Duration::from_millis(20),
                    ..DevCloudOptions::default()
                });
                let seeded = cloud.seed();
                let base_url = format!("http://{}", cloud.start("127.0.0.1", 0).await.unwrap());
                let client = client_for(&base_url, &seeded.gateway_token);
                cloud.enqueue_delivery("fake-binding", "op-1", json!({"externalChatId": "c"}), json!({"text": "x"}));
                // Claim it through the stream so the gateway token may see it.
                let mut stream =
                    client.open_delivery_stream("gateway:test", 120_000, &["fake-binding".into()]).await.unwrap();
                while stream.next_event().await.unwrap().is_none_or(|f| f.event.as_deref() != Some("channel.delivery"))
                {
                }
                let gateway = operator_for(&base_url, &seeded.gateway_token);
                let call = |method: &str, uri: &str| {
                    let request = http::Request::builder()
                        .method(method)
                        .uri(uri)
                        .header("authorization", "Bearer admin-token-for-tests")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let gateway = Rc::clone(&gateway);
                    async move {
                        let response =
                            crate::http::server::dispatch(&gateway, std::net::IpAddr::from([127, 0, 0, 1]), request)
                                .await;
                        let status = response.status().as_u16();
                        let body: Value =
                            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
                        (status, body)
                    }
                };
                let (status, body) = call("GET", "/deliveries?status=claimed").await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["deliveries"][0]["deliveryId"], "op-1");
                let (status, body) = call("POST", "/deliveries/op-1/retry").await;
                assert_eq!((status, body["delivery"]["status"].as_str()), (200, Some("failed")));
                let (status, body) = call("POST", "/deliveries/op-1/dead-letter").await;
                assert_eq!(
                    (status, body["delivery"]["lastError"].as_str()),
                    (200, Some("Manually dead-lettered by gateway operator."))
                );
                assert_eq!(call("POST", "/deliveries/missing/retry").await.0, 404);
                let (_, diagnostics) = call("GET", "/diagnostics").await;
                assert_eq!(diagnostics["deliveryOperator"]["disabledReason"], Value::Null);
                assert_eq!(diagnostics["deliveryOperator"]["retryAllowed"], true);
            });
        }
    }
}
