//! The dev Cloud's HTTP surface: authentication, the two-layer authorization of cloud-api.md §2,
//! and one handler per call, answering with upstream's statuses and bodies.

// Lookups fail with the finished error response, which is what the handler returns as is.
#![allow(clippy::result_large_err)]

use std::rc::Rc;

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::store::{
    hashed_id, random_base64url, ChannelBinding, Identity, Interaction, ProviderEvent, SessionBinding, MAX_RECORDS,
};
use super::time::{iso, parse_iso};
use super::DevCloud;
use crate::http::response::{full, ResponseBody};
use crate::http::router::{match_table, Segment, Table};
use crate::util::ids::random_id;

use Segment::{Literal, RawParam};

/// Largest request body Cloud accepts.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    ResolveIdentity,
    BindSession,
    FindByThread,
    Snapshot(String),
    Prompt,
    ClaimEvent,
    CompleteEvent(String),
    ResolveInteraction,
    CreateInteraction,
    Artifact(String, String),
    SessionEvents(String),
    DeliveryStream,
    Cursor,
    Ack(String),
    ListDeliveries,
    RetryDelivery(String),
    DeadLetter(String),
    EnqueueDelivery,
    CreateAgent,
    CreateBinding,
    CreateToken,
    GrantToken(String),
    RevokeToken(String),
}

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

/// Who may call a route (the policy matrix of §2.2, reduced to what the gateway exercises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Channel service actions: `gateway`-scoped tokens only, with binding-scope proof.
    Service,
    /// Identity and delivery read/write: `gateway` (with proof) or `admin` tokens.
    GatewayOrAdmin,
    /// Setup calls: `admin` tokens.
    Admin,
}

impl Route {
    /// The key fault injection uses.
    pub fn fault_key(&self) -> &'static str {
        match self {
            Route::ResolveIdentity => "identity",
            Route::BindSession => "bind",
            Route::FindByThread => "by-thread",
            Route::Snapshot(_) => "snapshot",
            Route::Prompt => "prompt",
            Route::ClaimEvent => "claim",
            Route::CompleteEvent(_) => "complete",
            Route::ResolveInteraction => "resolve-interaction",
            Route::CreateInteraction => "create-interaction",
            Route::Artifact(..) => "artifact",
            Route::SessionEvents(_) => "session-events",
            Route::DeliveryStream => "delivery-stream",
            Route::Cursor => "cursor",
            Route::Ack(_) => "ack",
            Route::ListDeliveries => "list-deliveries",
            Route::RetryDelivery(_) => "retry",
            Route::DeadLetter(_) => "dead-letter",
            Route::EnqueueDelivery => "enqueue",
            Route::CreateAgent
            | Route::CreateBinding
            | Route::CreateToken
            | Route::GrantToken(_)
            | Route::RevokeToken(_) => "setup",
        }
    }

    fn access(&self) -> Access {
        match self {
            Route::ResolveIdentity | Route::ListDeliveries | Route::RetryDelivery(_) | Route::DeadLetter(_) => {
                Access::GatewayOrAdmin
            }
            Route::CreateAgent
            | Route::CreateBinding
            | Route::CreateToken
            | Route::GrantToken(_)
            | Route::RevokeToken(_) => Access::Admin,
            _ => Access::Service,
        }
    }
}

/// The caller, once its token is known.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub scopes: Vec<String>,
    pub grants: Vec<String>,
}

impl Principal {
    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Scoped by grants: a gateway token without the admin scope.
    fn is_gateway_only(&self) -> bool {
        self.has("gateway") && !self.has("admin")
    }
}

pub fn json_response(status: u16, body: &Value) -> Response<ResponseBody> {
    let mut response = Response::new(full(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

pub fn error(status: u16, message: &str) -> Response<ResponseBody> {
    json_response(status, &json!({"error": message}))
}

fn policy_error(status: u16, message: &str, code: &str) -> Response<ResponseBody> {
    json_response(
        status,
        &json!({"error": message, "verdict": {"allowed": false, "reason": message, "policyCode": code}}),
    )
}

fn rate_limited(retry_after_ms: u64) -> Response<ResponseBody> {
    let message = "Too many cloud requests. Try again later.";
    let mut response = json_response(
        429,
        &json!({"error": message, "retryAfterMs": retry_after_ms, "verdict": {"allowed": false, "reason": message, "policyCode": "rate_limit.http_exceeded"}}),
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_ms.div_ceil(1000).max(1)));
    response
}

/// The answer when a table reached its bound.
fn store_full() -> Response<ResponseBody> {
    error(503, "The dev Cloud holds too many records; restart it.")
}

fn binding_scope_required() -> Response<ResponseBody> {
    policy_error(403, "Channel binding scope is required for this action.", "channels.binding_scope_required")
}

/// A request's parts the handlers use.
pub struct Call {
    pub route: Route,
    pub principal: Principal,
    pub query: Vec<(String, String)>,
    pub body: Map<String, Value>,
    pub last_event_id: Option<String>,
}

impl Call {
    pub fn text(&self, key: &str) -> Option<String> {
        self.body.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(str::to_owned)
    }

    pub fn query_values(&self, key: &str) -> Vec<String> {
        self.query.iter().filter(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    }

    pub fn query_value(&self, key: &str) -> Option<String> {
        self.query_values(key).into_iter().next()
    }
}

/// Entry point for every request.
pub async fn handle(cloud: Rc<DevCloud>, request: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    if parts.method == Method::GET && parts.uri.path() == "/livez" {
        return json_response(200, &json!({"ok": true, "role": "all-in-one", "profileName": "dev"}));
    }
    let latency = cloud.faults.borrow().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let presented = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
        .map(|v| v[7..].trim().to_owned());
    let Some(presented) = presented else { return error(401, "Cloud API token authorization is required.") };
    let principal = match cloud.store.borrow().token_by_plaintext(&presented) {
        Some(token) => {
            Principal { token_id: token.token_id.clone(), scopes: token.scopes.clone(), grants: token.grants.clone() }
        }
        None => return error(401, "Cloud API token is invalid or expired."),
    };
    let Ok(route) = match_table(ROUTES, &parts.method, parts.uri.path()) else {
        return policy_error(403, "Workspace action is not authorized.", "authorization.action_unknown");
    };
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
    if let Some(denied) = authorize(&cloud, &call) {
        return denied;
    }
    dispatch(&cloud, call).await
}

/// The policy layer: scope, then binding-scope proof for gateway-scoped callers.
fn authorize(cloud: &DevCloud, call: &Call) -> Option<Response<ResponseBody>> {
    let principal = &call.principal;
    let scope_required = || {
        policy_error(
            403,
            "The authenticated service token is not authorized for this workspace action.",
            "authorization.scope_required",
        )
    };
    let access = call.route.access();
    match access {
        Access::Service if !principal.has("gateway") => return Some(scope_required()),
        Access::GatewayOrAdmin if !principal.has("gateway") && !principal.has("admin") => return Some(scope_required()),
        Access::Admin if !principal.has("admin") => return Some(scope_required()),
        _ => {}
    }
    let needs_proof = access == Access::Service || (access == Access::GatewayOrAdmin && principal.is_gateway_only());
    if !needs_proof {
        return None;
    }
    let store = cloud.store.borrow();
    let granted_active = |binding_id: &str| {
        principal.grants.iter().any(|g| g == binding_id)
            && store.channel_binding(binding_id).is_some_and(|b| b.status == "active")
    };
    if !principal.grants.iter().any(|g| granted_active(g)) {
        return Some(binding_scope_required());
    }
    let session_binding_ok = |id: &str| {
        store.session_binding(id).is_some_and(|b| b.status == "active" && granted_active(&b.channel_binding_id))
    };
    let ok = match &call.route {
        Route::Snapshot(id) | Route::SessionEvents(id) | Route::Artifact(id, _) => session_binding_ok(id),
        Route::ListDeliveries | Route::DeliveryStream => {
            call.query_values("channelBindingId").iter().all(|b| granted_active(b))
        }
        Route::FindByThread | Route::ResolveInteraction => true,
        route => match call.text("channelBindingId") {
            Some(binding) => granted_active(&binding),
            None => match route {
                Route::Prompt | Route::Cursor => call.text("bindingId").is_none_or(|id| session_binding_ok(&id)),
                Route::CreateInteraction => call.text("sessionBindingId").is_none_or(|id| session_binding_ok(&id)),
                _ => true,
            },
        },
    };
    (!ok).then(binding_scope_required)
}

async fn dispatch(cloud: &Rc<DevCloud>, call: Call) -> Response<ResponseBody> {
    match call.route.clone() {
        Route::ResolveIdentity => resolve_identity(cloud, &call),
        Route::BindSession => bind_session(cloud, &call),
        Route::FindByThread => find_by_thread(cloud, &call),
        Route::Snapshot(id) => snapshot(cloud, &id),
        Route::Prompt => prompt(cloud, &call),
        Route::ClaimEvent => claim_event(cloud, &call),
        Route::CompleteEvent(id) => complete_event(cloud, &call, &id),
        Route::ResolveInteraction => resolve_interaction(cloud, &call),
        Route::CreateInteraction => create_interaction(cloud, &call),
        Route::Artifact(session_binding, artifact) => artifact_route(cloud, &session_binding, &artifact),
        Route::SessionEvents(id) => super::sse::session_events(cloud, &call, &id),
        Route::DeliveryStream => super::sse::delivery_stream(cloud, &call),
        Route::Cursor => cursor(cloud, &call),
        Route::Ack(id) => ack(cloud, &call, &id),
        Route::ListDeliveries => list_deliveries(cloud, &call),
        Route::RetryDelivery(id) => delivery_action(cloud, &call, &id, false),
        Route::DeadLetter(id) => delivery_action(cloud, &call, &id, true),
        Route::EnqueueDelivery => enqueue_delivery(cloud, &call),
        Route::CreateAgent => create_agent(cloud, &call),
        Route::CreateBinding => create_binding(cloud, &call),
        Route::CreateToken => create_token(cloud, &call),
        Route::GrantToken(id) => grant_token(cloud, &call, &id),
        Route::RevokeToken(id) => revoke_token(cloud, &id),
    }
}

/// The provider ids Cloud accepts (`readChannelProvider`).
fn valid_provider(provider: &str) -> bool {
    const KINDS: [&str; 8] = ["telegram", "slack", "email", "discord", "whatsapp", "signal", "webhook", "cli"];
    KINDS.contains(&provider)
        || (provider.len() >= 2
            && provider.len() <= 64
            && provider.as_bytes()[0].is_ascii_lowercase()
            && provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && provider.contains('-'))
}

/// `externalWorkspaceId`: omitted (`None`) or present, possibly null (`Some(None)`).
fn workspace_field(call: &Call) -> Option<Option<String>> {
    call.body.get("externalWorkspaceId").map(|v| v.as_str().map(str::to_owned))
}

/// Resolves the channel binding a gateway call is about: explicit, or the unique granted active
/// binding for the provider (and workspace).
fn resolve_channel_binding(
    cloud: &DevCloud,
    call: &Call,
    provider: &str,
) -> Result<ChannelBinding, Response<ResponseBody>> {
    let store = cloud.store.borrow();
    let in_scope = |b: &ChannelBinding| {
        b.status == "active" && (!call.principal.is_gateway_only() || call.principal.grants.contains(&b.binding_id))
    };
    let binding = match call.text("channelBindingId") {
        Some(id) => match store.channel_binding(&id) {
            Some(binding) if in_scope(binding) => binding.clone(),
            Some(binding) if binding.status != "active" => return Err(error(403, "Channel binding is not active.")),
            _ => return Err(error(403, "Gateway API token is not authorized for the requested channel binding.")),
        },
        None => {
            let workspace = workspace_field(call);
            let matches: Vec<&ChannelBinding> = store
                .channel_bindings
                .iter()
                .filter(|b| {
                    in_scope(b)
                        && b.provider == provider
                        && workspace.as_ref().is_none_or(|w| *w == b.external_workspace_id)
                })
                .collect();
            match matches.as_slice() {
                [one] => (*one).clone(),
                [] => return Err(error(403, "Gateway API token is not authorized for the requested channel binding.")),
                _ => {
                    return Err(error(
                        400,
                        "Channel identity resolution requires channelBindingId when multiple channel bindings match.",
                    ))
                }
            }
        }
    };
    if binding.provider != provider {
        return Err(error(400, "Channel provider does not match binding."));
    }
    if let Some(workspace) = workspace_field(call) {
        if workspace != binding.external_workspace_id {
            return Err(error(403, "Channel binding is not authorized for this provider workspace."));
        }
    }
    Ok(binding)
}

fn resolve_identity(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let (Some(provider), Some(user)) =
        (call.text("provider").filter(|p| valid_provider(p)), call.text("externalUserId"))
    else {
        return error(400, "Channel identity resolution requires provider and externalUserId.");
    };
    let binding = match resolve_channel_binding(cloud, call, &provider) {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    let admin = call.principal.has("admin");
    let mut store = cloud.store.borrow_mut();
    let (_, now) = store.now();
    let metadata = call.body.get("metadata").filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({}));
    let workspace = binding.external_workspace_id.clone();
    let auto = store.auto_activate_identities;
    let org = store.org_id.clone();
    let index = store
        .identities
        .iter()
        .position(|i| i.provider == provider && i.external_workspace_id == workspace && i.external_user_id == user);
    let index = match index {
        Some(index) => index,
        None if store.identities.len() >= MAX_RECORDS => return store_full(),
        None => {
            let (role, status) = if auto { ("member", "active") } else { ("viewer", "pending") };
            store.identities.push(Identity {
                identity_id: random_id(),
                org_id: org,
                provider: provider.clone(),
                external_workspace_id: workspace,
                external_user_id: user,
                account_id: None,
                role: role.into(),
                status: status.into(),
                metadata: json!({}),
                created_at: now.clone(),
                updated_at: now.clone(),
            });
            store.identities.len() - 1
        }
    };
    let identity = &mut store.identities[index];
    identity.metadata = metadata;
    identity.updated_at = now;
    if admin {
        if let Some(role) =
            call.text("role").filter(|r| ["owner", "admin", "member", "approver", "viewer"].contains(&r.as_str()))
        {
            identity.role = role;
        }
        if let Some(status) = call.text("status").filter(|s| ["active", "disabled", "pending"].contains(&s.as_str())) {
            identity.status = status;
        }
    }
    json_response(200, &json!({"identity": identity}))
}

/// §2.3: the actor must be an active identity of the provider with one of `roles`.
fn actor_allowed(cloud: &DevCloud, call: &Call, provider: &str, workspace: &Option<String>, roles: &[&str]) -> bool {
    let store = cloud.store.borrow();
    let identity = match call.text("identityId") {
        Some(id) => store.identities.iter().find(|i| i.identity_id == id),
        None => {
            let Some(user) = call.text("externalUserId") else { return false };
            let workspace = workspace_field(call).unwrap_or_else(|| workspace.clone());
            store
                .identities
                .iter()
                .find(|i| i.provider == provider && i.external_workspace_id == workspace && i.external_user_id == user)
        }
    };
    identity.is_some_and(|i| i.status == "active" && i.provider == provider && roles.contains(&i.role.as_str()))
}

const PROMPT_ROLES: [&str; 3] = ["owner", "admin", "member"];
const APPROVE_ROLES: [&str; 4] = ["owner", "admin", "member", "approver"];

fn bind_session(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    let (Some(channel_binding_id), Some(provider), Some(chat), Some(thread)) = (
        call.text("channelBindingId"),
        call.text("provider"),
        call.text("externalChatId"),
        call.text("externalThreadId"),
    ) else {
        return error(
            400,
            "Channel session binding requires channelBindingId, provider, externalChatId, and externalThreadId.",
        );
    };
    let binding = match resolve_channel_binding(cloud, call, &provider) {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    if !actor_allowed(cloud, call, &provider, &binding.external_workspace_id, &PROMPT_ROLES) {
        return error(403, "Channel actor identity is not authorized for this channel session.");
    }
    let mut store = cloud.store.borrow_mut();
    let workspace = binding.external_workspace_id.clone();
    if let Some(existing) = store.session_bindings.iter().find(|b| {
        b.provider == provider
            && b.external_workspace_id == workspace
            && b.external_chat_id == chat
            && b.external_thread_id == thread
    }) {
        if existing.channel_binding_id != channel_binding_id {
            return error(409, "Channel thread is already bound to a different channel authority.");
        }
        let session = store.sessions.get(&existing.session_id).map(|s| s.view(&store.org_id)).unwrap_or(Value::Null);
        return json_response(200, &json!({"binding": existing, "session": session}));
    }
    if store.session_bindings.len() >= MAX_RECORDS || store.sessions.len() >= MAX_RECORDS {
        return store_full();
    }
    let org = store.org_id.clone();
    let session_id =
        hashed_id("channel_session_", &[&org, &provider, workspace.as_deref().unwrap_or(""), &chat, &thread]);
    let (_, now) = store.now();
    let title: String = call.text("title").unwrap_or_else(|| format!("Channel {provider}")).chars().take(256).collect();
    store.sessions.entry(session_id.clone()).or_insert_with(|| super::store::Session {
        session_id: session_id.clone(),
        title: title.clone(),
        status: "idle".into(),
        created_at: now.clone(),
        updated_at: now.clone(),
        events: Vec::new(),
        next_sequence: 1,
        commands: Vec::new(),
    });
    store.append_event(&session_id, "session.created", json!({"title": title, "runtimePending": true}));
    let record = SessionBinding {
        binding_id: random_id(),
        org_id: org,
        agent_id: binding.agent_id.clone(),
        channel_binding_id,
        provider,
        external_workspace_id: workspace,
        external_thread_id: thread,
        external_chat_id: chat,
        session_id: session_id.clone(),
        last_event_sequence: 0,
        last_workspace_sequence: 0,
        last_chat_message_id: None,
        status: "active".into(),
        created_at: now.clone(),
        updated_at: now,
    };
    store.session_bindings.push(record.clone());
    let session = store.sessions.get(&session_id).map(|s| s.view(&store.org_id)).unwrap_or(Value::Null);
    drop(store);
    cloud.changed.notify_waiters();
    json_response(200, &json!({"binding": record, "session": session}))
}

fn find_by_thread(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let (Some(provider), Some(chat), Some(thread)) =
        (call.query_value("provider"), call.query_value("externalChatId"), call.query_value("externalThreadId"))
    else {
        return error(400, "Channel thread lookup requires provider, externalChatId, and externalThreadId.");
    };
    let workspace = call.query_value("externalWorkspaceId");
    let store = cloud.store.borrow();
    let found = store.session_bindings.iter().find(|b| {
        b.provider == provider
            && b.external_chat_id == chat
            && b.external_thread_id == thread
            && b.external_workspace_id == workspace
            && b.status == "active"
            && (!call.principal.is_gateway_only() || call.principal.grants.contains(&b.channel_binding_id))
    });
    match found {
        Some(binding) => {
            let session = store.sessions.get(&binding.session_id).map(|s| s.view(&store.org_id)).unwrap_or(Value::Null);
            json_response(200, &json!({"binding": binding, "session": session}))
        }
        None => error(404, "Channel session binding was not found."),
    }
}

fn snapshot(cloud: &DevCloud, session_binding_id: &str) -> Response<ResponseBody> {
    let store = cloud.store.borrow();
    let Some(binding) = store.session_binding(session_binding_id) else { return binding_scope_required() };
    match store.sessions.get(&binding.session_id) {
        Some(session) => json_response(200, &session.view(&store.org_id)),
        None => error(404, "Cloud session was not found."),
    }
}

fn prompt(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    let (Some(binding_id), Some(text)) = (
        call.text("bindingId"),
        call.body.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()).map(str::to_owned),
    ) else {
        return error(400, "Channel prompt requires bindingId and text.");
    };
    let Some(binding) = cloud.store.borrow().session_binding(&binding_id).cloned() else {
        return binding_scope_required();
    };
    if !actor_allowed(cloud, call, &binding.provider, &binding.external_workspace_id, &PROMPT_ROLES) {
        return error(403, "Channel actor identity is not authorized for this channel session.");
    }
    let agent = call.text("agent").unwrap_or_else(|| "build".into());
    let mut store = cloud.store.borrow_mut();
    let org = store.org_id.clone();
    let command_id = match call.text("idempotencyKey") {
        Some(key) => hashed_id("channel_command_", &[&org, &binding_id, &key]),
        None => random_id(),
    };
    let (_, now) = store.now();
    let Some(session) = store.sessions.get_mut(&binding.session_id) else {
        return error(404, "Cloud session was not found.");
    };
    if let Some(existing) = session.commands.iter().find(|c| c["commandId"] == command_id.as_str()).cloned() {
        if existing["payload"]["text"] != text.as_str() || existing["payload"]["agent"] != agent.as_str() {
            return error(500, "Internal server error.");
        }
        let view = session.view(&org);
        return json_response(
            202,
            &json!({"binding": binding, "command": existing, "processed": 0, "view": view, "projectionFence": null}),
        );
    }
    let command = json!({
        "commandId": command_id, "tenantId": org, "userId": "dev-account", "sessionId": binding.session_id, "kind": "prompt",
        "payload": {"text": text, "agent": agent}, "targetLeaseToken": null, "createdSequence": session.next_sequence, "createdAt": now,
        "status": "pending", "claimedBy": null, "claimedLeaseToken": null, "attemptCount": 0, "availableAt": now,
        "lastErrorCode": null, "lastErrorSummary": null, "ackedAt": null, "error": null,
    });
    session.commands.push(command.clone());
    let view = session.view(&org);
    drop(store);
    super::agent::run_command(cloud, binding.session_id.clone(), command.clone());
    json_response(
        202,
        &json!({"binding": binding, "command": command, "processed": 0, "view": view, "projectionFence": null}),
    )
}

fn claim_event(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let event_type = call.text("eventType").filter(|t| ["message", "command", "interaction"].contains(&t.as_str()));
    let (Some(provider), Some(instance), Some(provider_event_id), Some(event_type), Some(claimed_by)) = (
        call.text("provider"),
        call.text("providerInstanceId"),
        call.text("providerEventId"),
        event_type,
        call.text("claimedBy"),
    ) else {
        return error(
            400,
            "Provider event claim requires provider, providerInstanceId, providerEventId, eventType, and claimedBy.",
        );
    };
    let binding = match resolve_channel_binding(cloud, call, &provider) {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    let ttl = call.body.get("ttlMs").and_then(Value::as_u64).filter(|t| *t > 0).unwrap_or(300_000).clamp(1, 3_600_000);
    let mut store = cloud.store.borrow_mut();
    let (now_ms, now) = store.now();
    let workspace = binding.external_workspace_id.clone();
    let event_id = hashed_id(
        "channel_provider_event_",
        &[
            &store.org_id,
            &binding.binding_id,
            &provider,
            &instance,
            workspace.as_deref().unwrap_or(""),
            &event_type,
            &provider_event_id,
        ],
    );
    let mut metadata = call.body.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    metadata.insert("channelBindingId".into(), Value::from(binding.binding_id.clone()));
    if !store.provider_events.contains_key(&event_id) && store.provider_events.len() >= MAX_RECORDS {
        return store_full();
    }
    let org = store.org_id.clone();
    let event = store.provider_events.entry(event_id.clone()).or_insert_with(|| ProviderEvent {
        event_id: event_id.clone(),
        org_id: org,
        channel_binding_id: Some(binding.binding_id.clone()),
        provider: provider.clone(),
        provider_instance_id: instance.clone(),
        external_workspace_id: workspace.clone(),
        provider_event_id: provider_event_id.clone(),
        event_type: event_type.clone(),
        status: "received".into(),
        claimed_by: None,
        claim_expires_at: None,
        claim_expires_ms: 0,
        attempt_count: 0,
        retryable: true,
        last_error: None,
        metadata: json!({}),
        processed_at: None,
        created_at: now.clone(),
        updated_at: now.clone(),
    });
    let reclaimable = event.status == "received"
        || (event.status == "failed" && event.retryable)
        || (event.status == "processing" && event.claim_expires_ms <= now_ms);
    event.updated_at = now;
    if reclaimable {
        event.status = "processing".into();
        event.claimed_by = Some(claimed_by);
        event.claim_expires_ms = now_ms + ttl;
        event.claim_expires_at = Some(iso(now_ms + ttl));
        event.attempt_count += 1;
        event.retryable = true;
        event.last_error = None;
        event.metadata = Value::Object(metadata);
    }
    json_response(200, &json!({"event": event, "claimed": reclaimable, "duplicate": !reclaimable}))
}

fn complete_event(cloud: &DevCloud, call: &Call, event_id: &str) -> Response<ResponseBody> {
    let status = call.text("status").filter(|s| s == "processed" || s == "failed");
    let (Some(claimed_by), Some(status)) = (call.text("claimedBy"), status) else {
        return error(400, "Provider event completion requires claimedBy and status processed or failed.");
    };
    let mut store = cloud.store.borrow_mut();
    let (_, now) = store.now();
    let principal = &call.principal;
    let Some(event) = store.provider_events.get_mut(event_id).filter(|e| {
        e.claimed_by.as_deref() == Some(claimed_by.as_str())
            && (!principal.is_gateway_only()
                || e.channel_binding_id.as_ref().is_some_and(|b| principal.grants.contains(b)))
    }) else {
        return error(404, "Provider event claim was not found.");
    };
    let failed = status == "failed";
    event.retryable = failed && call.body.get("retryable").is_none_or(|r| *r == Value::Bool(true));
    event.last_error = if failed { call.text("lastError").map(|e| e.chars().take(1024).collect()) } else { None };
    event.processed_at = (!failed).then(|| now.clone());
    event.status = status;
    event.claimed_by = None;
    event.claim_expires_at = None;
    event.claim_expires_ms = 0;
    event.updated_at = now;
    json_response(200, &json!({"event": event}))
}

fn create_interaction(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let kind = call.text("kind").filter(|k| k == "permission" || k == "question");
    let (Some(agent_id), Some(session_id), Some(provider), Some(kind), Some(target_id)) =
        (call.text("agentId"), call.text("sessionId"), call.text("provider"), kind, call.text("targetId"))
    else {
        return error(400, "Channel interaction requires agentId, sessionId, provider, kind, and targetId.");
    };
    let mut store = cloud.store.borrow_mut();
    let binding = match call.text("sessionBindingId") {
        Some(id) => store.session_binding(&id).cloned(),
        None => store
            .session_bindings
            .iter()
            .find(|b| {
                b.session_id == session_id && b.agent_id == agent_id && b.provider == provider && b.status == "active"
            })
            .cloned(),
    };
    let Some(binding) =
        binding.filter(|b| b.session_id == session_id && b.agent_id == agent_id && b.provider == provider)
    else {
        return error(403, "Gateway API token is not authorized for the requested channel binding.");
    };
    let requested = call.text("interactionId").unwrap_or_else(|| format!("gw_{kind}_{}", random_base64url(9)));
    let interaction_id = hashed_id("channel_interaction_", &[&store.org_id, &binding.channel_binding_id, &requested]);
    if store.interactions.contains_key(&interaction_id) {
        return error(500, "Internal server error.");
    }
    if store.interactions.len() >= MAX_RECORDS {
        return store_full();
    }
    let (now_ms, now) = store.now();
    let expires_ms = call.text("expiresAt").and_then(|t| parse_iso(&t)).unwrap_or(now_ms + 600_000);
    let token = format!("occi_{interaction_id}_{}", call.text("tokenSecret").unwrap_or_else(|| random_base64url(24)));
    let interaction = Interaction {
        interaction_id: interaction_id.clone(),
        org_id: store.org_id.clone(),
        agent_id,
        channel_binding_id: Some(binding.channel_binding_id.clone()),
        session_binding_id: Some(binding.binding_id.clone()),
        session_id,
        provider,
        external_interaction_id: call.text("externalInteractionId"),
        kind,
        target_id,
        status: "pending".into(),
        created_by_identity_id: None,
        expires_at: iso(expires_ms),
        expires_ms,
        used_at: None,
        created_at: now.clone(),
        updated_at: now,
        token: token.clone(),
    };
    store.interactions.insert(interaction_id, interaction.clone());
    json_response(201, &json!({"interaction": interaction, "plaintextToken": token}))
}

fn resolve_interaction(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    if !cloud.store.borrow().allow_remote_approvals {
        return policy_error(
            403,
            "Remote question and approval responses are disabled for this cloud profile.",
            "gateway-remote-approval-disabled",
        );
    }
    let not_found = || error(404, "Channel interaction was not found or is no longer pending.");
    let provider = call.text("provider").unwrap_or_default();
    let interaction = {
        let store = cloud.store.borrow();
        let found = match call.text("token") {
            Some(token) => store.interactions.values().find(|i| crate::util::ct::constant_time_equal(&i.token, &token)),
            None => {
                let external = call.text("externalInteractionId");
                let mut matches = store
                    .interactions
                    .values()
                    .filter(|i| external.is_some() && i.external_interaction_id == external && i.provider == provider);
                match (matches.next(), matches.next()) {
                    (Some(one), None) => Some(one),
                    _ => None,
                }
            }
        };
        match found {
            Some(interaction) => interaction.clone(),
            None => return not_found(),
        }
    };
    let (now_ms, now) = cloud.store.borrow().now();
    if interaction.status != "pending" || interaction.expires_ms <= now_ms {
        if interaction.status == "pending" {
            if let Some(stored) = cloud.store.borrow_mut().interactions.get_mut(&interaction.interaction_id) {
                stored.status = "expired".into();
            }
        }
        return not_found();
    }
    let workspace = cloud
        .store
        .borrow()
        .session_binding(interaction.session_binding_id.as_deref().unwrap_or(""))
        .and_then(|b| b.external_workspace_id.clone());
    if interaction.provider != provider || !actor_allowed(cloud, call, &provider, &workspace, &APPROVE_ROLES) {
        return not_found();
    }
    let chat = call.text("externalChatId");
    let same_chat = cloud.store.borrow().session_bindings.iter().any(|b| {
        b.session_id == interaction.session_id && b.status == "active" && Some(&b.external_chat_id) == chat.as_ref()
    });
    if !same_chat {
        return not_found();
    }
    let (kind, payload) = if interaction.kind == "permission" {
        (
            "permission.respond",
            json!({"permissionId": interaction.target_id, "response": call.body.get("response").cloned().unwrap_or(Value::Null)}),
        )
    } else if call.body.get("reject") == Some(&Value::Bool(true)) {
        ("question.reject", json!({"requestId": interaction.target_id}))
    } else {
        (
            "question.reply",
            json!({"requestId": interaction.target_id, "answers": call.body.get("answers").cloned().unwrap_or_else(|| json!([]))}),
        )
    };
    let mut store = cloud.store.borrow_mut();
    let org = store.org_id.clone();
    let Some(stored) = store.interactions.get_mut(&interaction.interaction_id) else { return not_found() };
    stored.status = "used".into();
    stored.used_at = Some(now.clone());
    stored.updated_at = now.clone();
    let public = json!(stored);
    let Some(session) = store.sessions.get_mut(&interaction.session_id) else { return not_found() };
    let command = json!({
        "commandId": random_id(), "tenantId": org, "userId": "dev-account", "sessionId": interaction.session_id, "kind": kind, "payload": payload,
        "targetLeaseToken": null, "createdSequence": session.next_sequence, "createdAt": now, "status": "pending", "attemptCount": 0,
    });
    session.commands.push(command.clone());
    let view = session.view(&org);
    drop(store);
    super::agent::run_command(cloud, interaction.session_id.clone(), command.clone());
    json_response(
        202,
        &json!({"interaction": public, "command": command, "processed": 0, "view": view, "projectionFence": null}),
    )
}

fn artifact_route(cloud: &DevCloud, session_binding_id: &str, artifact_id: &str) -> Response<ResponseBody> {
    let store = cloud.store.borrow();
    let Some(binding) = store.session_binding(session_binding_id) else { return binding_scope_required() };
    let Some(artifact) =
        store.artifacts.iter().find(|a| a.artifact_id == artifact_id && a.session_id == binding.session_id)
    else {
        return error(404, "Cloud artifact was not found.");
    };
    let (_, now) = store.now();
    let mut body = json!({
        "artifactId": artifact.artifact_id, "id": artifact.artifact_id, "toolId": "cloud-artifact", "toolName": "cloud.artifact",
        "filePath": format!("cloud-artifact://{}/{}", crate::util::percent::encode_component(&artifact.artifact_id), crate::util::percent::encode_component(&artifact.filename)),
        "filename": artifact.filename, "order": 0, "source": "cloud", "cloudArtifactId": artifact.artifact_id, "sessionId": artifact.session_id,
        "sessionTitle": null, "workspaceId": null, "contentType": artifact.content_type, "size": artifact.data.len(), "createdAt": now, "updatedAt": now,
        "kind": "document", "status": "final", "dataBase64": crate::util::base64::encode_standard(&artifact.data),
    });
    if let Some(mime) = &artifact.content_type {
        body["mime"] = Value::from(mime.clone());
    }
    json_response(200, &json!({"artifact": body}))
}

fn cursor(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let Some(binding_id) = call.text("bindingId") else {
        return error(400, "Channel cursor update requires bindingId.");
    };
    let number = |key: &str| call.body.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (events, workspace) = (number("lastEventSequence"), number("lastWorkspaceSequence"));
    let mut store = cloud.store.borrow_mut();
    let (_, now) = store.now();
    let Some(binding) = store.session_bindings.iter_mut().find(|b| b.binding_id == binding_id) else {
        return error(404, "Channel session binding was not found.");
    };
    if events < binding.last_event_sequence || workspace < binding.last_workspace_sequence {
        let stored = json!(binding);
        return json_response(
            200,
            &json!({"binding": stored, "result": {"ok": false, "reason": "stale", "binding": stored}}),
        );
    }
    binding.last_event_sequence = events;
    binding.last_workspace_sequence = workspace;
    match call.body.get("lastChatMessageId") {
        Some(Value::String(id)) => binding.last_chat_message_id = Some(id.clone()),
        Some(Value::Null) => binding.last_chat_message_id = None,
        _ => {}
    }
    binding.updated_at = now;
    let stored = json!(binding);
    json_response(200, &json!({"binding": stored, "result": {"ok": true, "binding": stored}}))
}

/// Deliveries a principal may see: in scope, and for gateway tokens only those it claimed last.
fn delivery_visible(call: &Call, delivery: &super::store::Delivery) -> bool {
    !call.principal.is_gateway_only()
        || (call.principal.grants.contains(&delivery.channel_binding_id)
            && delivery.last_claimed_by.as_deref() == Some(call.principal.token_id.as_str()))
}

fn ack(cloud: &Rc<DevCloud>, call: &Call, delivery_id: &str) -> Response<ResponseBody> {
    let Some(status) = call.text("status").filter(|s| ["sent", "failed", "dead"].contains(&s.as_str())) else {
        return error(400, "Channel delivery ack requires status sent, failed, or dead.");
    };
    let claimant = call
        .text("claimedBy")
        .or_else(|| call.query_value("claimedBy"))
        .unwrap_or_else(|| call.principal.token_id.clone());
    let next_attempt = match call.body.get("nextAttemptAt") {
        Some(Value::String(text)) => match parse_iso(text) {
            Some(ms) => Some(ms),
            None => return error(400, "Date value must be a valid ISO timestamp."),
        },
        _ => None,
    };
    let mut store = cloud.store.borrow_mut();
    let Some(index) = unique_delivery(&store, call, delivery_id, Some(&claimant)) else {
        return error(404, "Channel delivery was not found.");
    };
    let last_error = call.text("lastError").map(|e| e.chars().take(1024).collect());
    let public = settle_delivery(&mut store, index, status, last_error, next_attempt);
    drop(store);
    cloud.changed.notify_waiters();
    json_response(200, &json!({"delivery": public}))
}

/// The one delivery with this id the caller may act on (filtered by the body's binding and,
/// for acks, the claimant); `None` for zero or several matches.
fn unique_delivery(
    store: &super::store::Store,
    call: &Call,
    delivery_id: &str,
    claimant: Option<&str>,
) -> Option<usize> {
    let binding = call.text("channelBindingId");
    let mut matches = store.deliveries.iter().enumerate().filter(|(_, d)| {
        d.delivery_id == delivery_id
            && binding.as_ref().is_none_or(|b| *b == d.channel_binding_id)
            && claimant.is_none_or(|c| d.claimed_by.as_deref() == Some(c))
            && delivery_visible(call, d)
    });
    match (matches.next(), matches.next()) {
        (Some((index, _)), None) => Some(index),
        _ => None,
    }
}

/// Sets a delivery's outcome and releases its claim; returns its public form.
fn settle_delivery(
    store: &mut super::store::Store,
    index: usize,
    status: String,
    last_error: Option<String>,
    next_attempt_ms: Option<u64>,
) -> Value {
    let (now_ms, now) = store.now();
    let delivery = &mut store.deliveries[index];
    delivery.status = status;
    delivery.claimed_by = None;
    delivery.claim_expires_at = None;
    delivery.claim_expires_ms = 0;
    delivery.last_error = last_error;
    let next = next_attempt_ms.unwrap_or(now_ms);
    delivery.next_attempt_ms = next;
    delivery.next_attempt_at = iso(next);
    delivery.updated_at = now;
    delivery.public()
}

fn list_deliveries(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let status =
        call.query_value("status").filter(|s| ["pending", "claimed", "sent", "failed", "dead"].contains(&s.as_str()));
    let limit = call.query_value("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).clamp(1, 200);
    let id = call.query_value("deliveryId");
    let binding = call.query_value("channelBindingId");
    let store = cloud.store.borrow();
    let mut found: Vec<&super::store::Delivery> = store
        .deliveries
        .iter()
        .filter(|d| {
            delivery_visible(call, d)
                && id.as_ref().is_none_or(|i| *i == d.delivery_id)
                && status.as_ref().is_none_or(|s| *s == d.status)
                && binding.as_ref().is_none_or(|b| *b == d.channel_binding_id)
        })
        .collect();
    found.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| b.created_at.cmp(&a.created_at))
            .then_with(|| b.sequence.cmp(&a.sequence))
    });
    let deliveries: Vec<Value> = found.into_iter().take(limit).map(super::store::Delivery::public).collect();
    json_response(200, &json!({"deliveries": deliveries}))
}

fn delivery_action(cloud: &Rc<DevCloud>, call: &Call, delivery_id: &str, dead: bool) -> Response<ResponseBody> {
    let mut store = cloud.store.borrow_mut();
    let Some(index) = unique_delivery(&store, call, delivery_id, None) else {
        return error(404, "Channel delivery was not found.");
    };
    let (status, last_error) = if dead {
        ("dead", Some(call.text("lastError").unwrap_or_else(|| "Manually dead-lettered by gateway operator.".into())))
    } else {
        ("failed", None)
    };
    let public = settle_delivery(&mut store, index, status.into(), last_error, None);
    drop(store);
    cloud.changed.notify_waiters();
    json_response(200, &json!({"delivery": public}))
}

fn enqueue_delivery(cloud: &Rc<DevCloud>, call: &Call) -> Response<ResponseBody> {
    let Some(binding_id) = call.text("channelBindingId") else {
        return error(400, "Channel delivery requires channelBindingId.");
    };
    let Some(binding) = cloud.store.borrow().channel_binding(&binding_id).cloned() else {
        return error(403, "Gateway API token is not authorized for the requested channel binding.");
    };
    let delivery = cloud.store.borrow_mut().enqueue_delivery(&call.body, &binding);
    cloud.changed.notify_waiters();
    json_response(201, &json!({"delivery": delivery.public()}))
}

fn create_agent(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let Some(name) = call.text("name") else { return error(400, "Headless agent requires name.") };
    let id = call.text("agentId").unwrap_or_else(|| format!("channel_agent_{}", random_base64url(12)));
    let agent = cloud.store.borrow_mut().add_agent(&id, &name);
    json_response(201, &json!({"agent": agent}))
}

fn create_binding(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let (Some(agent_id), Some(provider)) = (call.text("agentId"), call.text("provider").filter(|p| valid_provider(p)))
    else {
        return error(400, "Channel binding requires agentId and provider.");
    };
    if !cloud.store.borrow().agents.iter().any(|a| a.agent_id == agent_id) {
        return error(404, "Headless agent was not found.");
    }
    let id = call.text("bindingId").unwrap_or_else(|| format!("channel_binding_{}", random_base64url(12)));
    let binding =
        cloud.store.borrow_mut().add_channel_binding(&id, &agent_id, &provider, call.text("externalWorkspaceId"));
    json_response(201, &json!({"binding": binding}))
}

fn token_json(token: &super::store::ApiToken) -> Value {
    json!({"tokenId": token.token_id, "scopes": token.scopes, "channelBindingIds": token.grants, "revoked": token.revoked})
}

fn create_token(cloud: &DevCloud, call: &Call) -> Response<ResponseBody> {
    let strings = |key: &str| -> Vec<String> {
        call.body
            .get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let scopes = strings("scopes");
    if scopes.is_empty()
        || !scopes.iter().all(|s| ["desktop", "gateway", "admin", "operator", "worker-internal"].contains(&s.as_str()))
    {
        return error(400, "API token scopes are invalid.");
    }
    let token = cloud.store.borrow_mut().issue_token(scopes, strings("channelBindingIds"));
    json_response(201, &json!({"token": token_json(&token), "plaintext": token.plaintext}))
}

fn grant_token(cloud: &DevCloud, call: &Call, token_id: &str) -> Response<ResponseBody> {
    let Some(binding) = call.text("channelBindingId") else {
        return error(400, "Channel binding grant requires channelBindingId.");
    };
    let mut store = cloud.store.borrow_mut();
    let org = store.org_id.clone();
    let (_, now) = store.now();
    let Some(token) = store.tokens.iter_mut().find(|t| t.token_id == token_id) else {
        return error(404, "API token was not found.");
    };
    if !token.has_scope("gateway") {
        return error(400, "Only gateway tokens accept channel binding grants.");
    }
    if !token.grants.contains(&binding) {
        token.grants.push(binding.clone());
    }
    json_response(
        200,
        &json!({"grant": {"orgId": org, "tokenId": token_id, "channelBindingId": binding, "createdAt": now}, "token": token_json(token)}),
    )
}

fn revoke_token(cloud: &DevCloud, token_id: &str) -> Response<ResponseBody> {
    let mut store = cloud.store.borrow_mut();
    let Some(token) = store.tokens.iter_mut().find(|t| t.token_id == token_id) else {
        return error(404, "API token was not found.");
    };
    token.revoked = true;
    json_response(200, &json!({"token": token_json(token), "revoked": true}))
}

/// Headers of the two SSE responses (cloud-api.md §4.2, §4.3).
pub fn sse_headers(response: &mut Response<ResponseBody>, session_stream: bool) {
    let headers = response.headers_mut();
    if session_stream {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store, no-transform"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    } else {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(crate::util::base64::encode_standard(b""), "");
        assert_eq!(crate::util::base64::encode_standard(b"f"), "Zg==");
        assert_eq!(crate::util::base64::encode_standard(b"fo"), "Zm8=");
        assert_eq!(crate::util::base64::encode_standard(b"foo"), "Zm9v");
        assert_eq!(crate::util::base64::encode_standard(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn provider_ids() {
        assert!(valid_provider("telegram"));
        assert!(valid_provider("telegram-prod"));
        assert!(!valid_provider("fake"));
        assert!(!valid_provider("Bad-Id"));
    }

    #[test]
    fn routes_do_not_decode_ids() {
        assert_eq!(
            match_table(ROUTES, &Method::POST, "/api/channels/deliveries/a%3Ab/ack"),
            Ok(Route::Ack("a%3Ab".into()))
        );
        assert_eq!(match_table(ROUTES, &Method::POST, "/api/channels/deliveries"), Ok(Route::EnqueueDelivery));
        assert!(match_table(ROUTES, &Method::GET, "/api/channels/provider-events/claim").is_err());
    }
}
