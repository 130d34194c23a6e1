//! A dev Cloud request once authenticated and parsed: which Cloud call it is ([`Route`]), who
//! makes it ([`Principal`]) and the parts the handlers read ([`Call`]). The routes build it, the
//! handlers and the streams read it.

use serde_json::{Map, Value};

/// The Cloud call a request matched, with its raw (undecoded) path ids.
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

/// Every key [`Route::fault_key`] returns: the route names `POST /dev/faults` accepts.
pub const FAULT_KEYS: [&str; 19] = [
    "identity",
    "bind",
    "by-thread",
    "snapshot",
    "prompt",
    "claim",
    "complete",
    "resolve-interaction",
    "create-interaction",
    "artifact",
    "session-events",
    "delivery-stream",
    "cursor",
    "ack",
    "list-deliveries",
    "retry",
    "dead-letter",
    "enqueue",
    "setup",
];

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
}

/// The caller, once its token is known.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub scopes: Vec<String>,
    pub grants: Vec<String>,
}

impl Principal {
    pub(super) fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Scoped by grants: a gateway token without the admin scope.
    pub(super) fn is_gateway_only(&self) -> bool {
        self.has("gateway") && !self.has("admin")
    }
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
