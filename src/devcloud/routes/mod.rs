//! The dev Cloud's HTTP surface: the route table, request intake (authentication, injected
//! faults, the body limit) and dispatch to one handler per call, in one file per resource. The
//! two-layer authorization is in `authorize.rs`; the SSE streams are in
//! `../sse.rs`; the dev-only control routes under `/dev/` (faults and records for a harness in
//! another process) are in `control.rs`.

mod artifacts;
mod authorize;
mod control;
mod deliveries;
mod identities;
mod interactions;
mod provider_events;
mod sessions;
mod setup;

use std::rc::Rc;

use http::header::AUTHORIZATION;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::respond::{policy_error, rate_limited};
use super::DevCloud;
use crate::http::response::ResponseBody;
use crate::http::router::{match_table, Segment, Table};

// The request types and response helpers live outside this module so that `sse.rs` need not
// import it; re-exported so their paths under `routes` stay valid.
pub use super::call::{Call, Principal, Route};
pub use super::respond::{error, json_response};

use Segment::{Literal, RawParam};

/// Largest request body Cloud accepts.
const MAX_BODY: usize = 1024 * 1024;

const CH: Segment = Literal("channels");
const API: Segment = Literal("api");

const ROUTES: &Table<Route> = &[
    (Method::POST, &[API, CH, Literal("identities"), Literal("resolve")], |_| Route::ResolveIdentity),
    (Method::POST, &[API, CH, Literal("sessions"), Literal("bind")], |_| Route::BindSession),
    (Method::GET, &[API, CH, Literal("sessions"), Literal("by-thread")], |_| Route::FindByThread),
    (Method::POST, &[API, CH, Literal("sessions"), Literal("prompt")], |_| Route::Prompt),
    (Method::GET, &[API, CH, Literal("sessions"), RawParam, Literal("snapshot")], |mut p| Route::Snapshot(p.remove(0))),
    (Method::GET, &[API, CH, Literal("sessions"), RawParam, Literal("events")], |mut p| {
        Route::SessionEvents(p.remove(0))
    }),
    (Method::GET, &[API, CH, Literal("sessions"), RawParam, Literal("artifacts"), RawParam], |mut p| {
        let artifact = p.remove(1);
        Route::Artifact(p.remove(0), artifact)
    }),
    (Method::POST, &[API, CH, Literal("provider-events"), Literal("claim")], |_| Route::ClaimEvent),
    (Method::POST, &[API, CH, Literal("provider-events"), RawParam, Literal("complete")], |mut p| {
        Route::CompleteEvent(p.remove(0))
    }),
    (Method::POST, &[API, CH, Literal("interactions"), Literal("resolve")], |_| Route::ResolveInteraction),
    (Method::POST, &[API, CH, Literal("interactions")], |_| Route::CreateInteraction),
    (Method::POST, &[API, CH, Literal("cursor")], |_| Route::Cursor),
    (Method::GET, &[API, CH, Literal("deliveries"), Literal("stream")], |_| Route::DeliveryStream),
    (Method::GET, &[API, CH, Literal("deliveries")], |_| Route::ListDeliveries),
    (Method::POST, &[API, CH, Literal("deliveries")], |_| Route::EnqueueDelivery),
    (Method::POST, &[API, CH, Literal("deliveries"), RawParam, Literal("ack")], |mut p| Route::Ack(p.remove(0))),
    (Method::POST, &[API, CH, Literal("deliveries"), RawParam, Literal("retry")], |mut p| {
        Route::RetryDelivery(p.remove(0))
    }),
    (Method::POST, &[API, CH, Literal("deliveries"), RawParam, Literal("dead-letter")], |mut p| {
        Route::DeadLetter(p.remove(0))
    }),
    (Method::POST, &[API, CH, Literal("agents")], |_| Route::CreateAgent),
    (Method::POST, &[API, CH, Literal("bindings")], |_| Route::CreateBinding),
    (Method::POST, &[API, Literal("api-tokens")], |_| Route::CreateToken),
    (Method::POST, &[API, Literal("api-tokens"), RawParam, Literal("channel-bindings")], |mut p| {
        Route::GrantToken(p.remove(0))
    }),
    (Method::DELETE, &[API, Literal("api-tokens"), RawParam], |mut p| Route::RevokeToken(p.remove(0))),
];
/// Entry point for every request.
pub async fn handle(cloud: Rc<DevCloud>, request: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/livez" {
        return json_response(200, &json!({"ok": true, "role": "all-in-one", "profileName": "dev"}));
    }
    if parts.uri.path().starts_with("/dev/") {
        // Control routes: no injected fault or latency applies, so a harness can always switch
        // them off again.
        let principal = match principal_of(&cloud, &parts.headers) {
            Ok(principal) => principal,
            Err(denied) => return *denied,
        };
        let Ok(collected) = Limited::new(body, control::MAX_CONTROL_BODY).collect().await else {
            return error(413, "Request body is too large.");
        };
        let query: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
        return control::handle(&cloud, &principal, &parts.method, parts.uri.path(), &query, &collected.to_bytes());
    }
    let latency = cloud.faults.borrow().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let principal = match principal_of(&cloud, &parts.headers) {
        Ok(principal) => principal,
        Err(denied) => return *denied,
    };
    let Ok(route) = match_table(ROUTES, &parts.method, parts.uri.path()) else {
        return policy_error(403, "Workspace action is not authorized.", "authorization.action_unknown");
    };
    *cloud.calls.borrow_mut().entry(route.fault_key()).or_insert(0) += 1;
    let route_latency = cloud.faults.borrow().latency_of(route.fault_key());
    if !route_latency.is_zero() {
        tokio::time::sleep(route_latency).await;
    }
    if let Some(failure) = cloud.faults.borrow_mut().take_failure(route.fault_key()) {
        return match (failure.status, failure.retry_after_ms) {
            (429, Some(ms)) => rate_limited(ms),
            (status, _) => error(status, "Injected dev Cloud failure."),
        };
    }
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(413, "Request body is too large."),
    };
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => Map::new(),
            Err(_) => return error(400, "Request body must be valid JSON."),
        }
    };
    let query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let last_event_id = parts.headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let call = Call { route, principal, query, body, last_event_id };
    if let Some(denied) = authorize::authorize(&cloud, &call) {
        return denied;
    }
    dispatch(&cloud, call).await
}

/// The caller named by the bearer token, or the 401 to answer.
fn principal_of(cloud: &DevCloud, headers: &http::HeaderMap) -> Result<Principal, Box<Response<ResponseBody>>> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
        .map(|v| v[7..].trim().to_owned());
    let Some(presented) = presented else {
        return Err(Box::new(error(401, "Cloud API token authorization is required.")));
    };
    match cloud.store.borrow().token_by_plaintext(&presented) {
        Some(token) => Ok(Principal {
            token_id: token.token_id.clone(),
            scopes: token.scopes.clone(),
            grants: token.grants.clone(),
        }),
        None => Err(Box::new(error(401, "Cloud API token is invalid or expired."))),
    }
}

async fn dispatch(cloud: &Rc<DevCloud>, call: Call) -> Response<ResponseBody> {
    match call.route.clone() {
        Route::ResolveIdentity => identities::resolve_identity(cloud, &call),
        Route::BindSession => sessions::bind_session(cloud, &call),
        Route::FindByThread => sessions::find_by_thread(cloud, &call),
        Route::Snapshot(id) => sessions::snapshot(cloud, &id),
        Route::Prompt => sessions::prompt(cloud, &call),
        Route::ClaimEvent => provider_events::claim_event(cloud, &call),
        Route::CompleteEvent(id) => provider_events::complete_event(cloud, &call, &id),
        Route::ResolveInteraction => interactions::resolve_interaction(cloud, &call),
        Route::CreateInteraction => interactions::create_interaction(cloud, &call),
        Route::Artifact(session_binding, artifact) => artifacts::artifact_route(cloud, &session_binding, &artifact),
        Route::SessionEvents(id) => super::sse::session_events(cloud, &call, &id),
        Route::DeliveryStream => super::sse::delivery_stream(cloud, &call),
        Route::Cursor => sessions::cursor(cloud, &call),
        Route::Ack(id) => deliveries::ack(cloud, &call, &id),
        Route::ListDeliveries => deliveries::list_deliveries(cloud, &call),
        Route::RetryDelivery(id) => deliveries::delivery_action(cloud, &call, &id, false),
        Route::DeadLetter(id) => deliveries::delivery_action(cloud, &call, &id, true),
        Route::EnqueueDelivery => deliveries::enqueue_delivery(cloud, &call),
        Route::CreateAgent => setup::create_agent(cloud, &call),
        Route::CreateBinding => setup::create_binding(cloud, &call),
        Route::CreateToken => setup::create_token(cloud, &call),
        Route::GrantToken(id) => setup::grant_token(cloud, &call, &id),
        Route::RevokeToken(id) => setup::revoke_token(cloud, &id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_do_not_decode_ids() {
        assert_eq!(
            match_table(ROUTES, &Method::POST, "/api/channels/deliveries/a%3Ab/ack"),
            Ok(Route::Ack("a%3Ab".into()))
        );
        assert_eq!(match_table(ROUTES, &Method::POST, "/api/channels/deliveries"), Ok(Route::EnqueueDelivery));
        assert!(match_table(ROUTES, &Method::GET, "/api/channels/provider-events/claim").is_err());
    }

    #[test]
    fn every_route_has_a_fault_key_the_control_routes_accept() {
        for (method, segments, _) in ROUTES {
            let path: String = segments
                .iter()
                .map(|s| match s {
                    Literal(text) => format!("/{text}"),
                    _ => "/x".to_owned(),
                })
                .collect();
            let route = match_table(ROUTES, method, &path).unwrap();
            assert!(super::super::call::FAULT_KEYS.contains(&route.fault_key()), "{path}: {}", route.fault_key());
        }
    }
}
