//! The dev Cloud: an in-memory Open Cowork Cloud that honours the Cloud contract the gateway speaks
//! (docs/cloud-calls.md) — statuses, bodies, SSE framing, claim and lease rules — with a built-in
//! echo agent and fault injection. The demo and the integration tests run against it; it is a peer,
//! not a mock. Cargo feature `devcloud`; never in a board build.
//!
//! Where the contract leaves room, the choices are written next to the code; the main ones:
//! new channel identities are active members by default (dev mode, switchable), remote approvals
//! are enabled (upstream's default profile disables them), and setup calls need an admin token.
//!
//! Beyond the Cloud API it has dev-only control routes under `/dev/` (admin token; never
//! upstream): `POST /dev/faults` arms the faults of `faults` from another process, and
//! `GET /dev/records` reads what `records` and the store saw (deliveries with their ack calls,
//! prompt commands, prompt calls per idempotency key, provider-event claims), in bounded pages.
//! `scripts/soak` drives a separate gateway process through them; see `routes/control.rs`.

pub(crate) mod agent;
mod call;
pub(crate) mod faults;
pub(crate) mod records;
mod respond;
pub(crate) mod routes;
pub(crate) mod sse;
pub mod store;
pub(crate) mod time;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use faults::Faults;
use store::{Delivery, Store};

/// Timings of the dev Cloud; tests shorten them.
#[derive(Debug, Clone)]
pub struct DevCloudOptions {
    /// New identities start `active`/`member` instead of `pending`/`viewer`.
    pub auto_activate_identities: bool,
    /// `runtime.allowRemoteApprovalResponses` of the profile.
    pub allow_remote_approvals: bool,
    /// Streams end cleanly after this long (upstream: 30 minutes).
    pub sse_lifetime: Duration,
    /// Delivery claim poll interval (upstream `ssePollMs`, 1 s).
    pub poll_interval: Duration,
    /// Session stream heartbeat interval.
    pub keep_alive: Duration,
    /// How long the echo agent "thinks" before answering.
    pub agent_delay: Duration,
    /// Concurrent SSE streams (session and delivery together) per organisation; one more is
    /// answered 429 (upstream `OPEN_COWORK_CLOUD_MAX_SSE_CONNECTIONS_PER_ORG`, default 200).
    pub max_sse_per_org: usize,
}

impl Default for DevCloudOptions {
    fn default() -> Self {
        Self {
            auto_activate_identities: true,
            allow_remote_approvals: true,
            sse_lifetime: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            agent_delay: Duration::from_millis(20),
            max_sse_per_org: 200,
        }
    }
}

/// One seeded channel binding (described by its kind).
pub use crate::config::providers::kind::SeededBinding;

/// What [`DevCloud::seed`] created.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub agent_id: String,
    /// A gateway-scoped token granted every seeded binding.
    pub gateway_token: String,
    /// A `gateway`+`admin` token for the setup calls.
    pub admin_token: String,
    pub bindings: Vec<SeededBinding>,
}

/// The default channel-binding ids, one per channel kind compiled into this build (each kind
/// names its own in its description), in the table's order.
fn seeded_bindings() -> Vec<SeededBinding> {
    crate::providers::KINDS.iter().filter_map(|kind| kind.seeded_binding()).collect()
}

/// The dev Cloud. Lives in an `Rc` on the current thread.
pub struct DevCloud {
    pub store: RefCell<Store>,
    pub faults: RefCell<Faults>,
    /// Ack and prompt calls as they came, for `GET /dev/records`.
    pub records: RefCell<records::Records>,
    /// Woken whenever events or deliveries change, so streams write without waiting a poll.
    pub changed: Notify,
    pub options: DevCloudOptions,
    /// `true` while stopped: open streams end and the listener is closed.
    halted: watch::Sender<bool>,
    server: RefCell<Option<JoinHandle<()>>>,
    /// Agent commands still running.
    pub(crate) busy: std::cell::Cell<usize>,
    /// SSE streams open now (the dev Cloud has one organisation).
    pub(crate) sse_open: std::cell::Cell<usize>,
    /// The most SSE streams that were open at once.
    pub(crate) sse_peak: std::cell::Cell<usize>,
    /// Stream opens refused by the per-organisation cap.
    pub(crate) sse_rejected: std::cell::Cell<u64>,
    /// Requests per route (by fault key), so tests count Cloud calls on the wire.
    pub(crate) calls: RefCell<std::collections::HashMap<&'static str, u64>>,
}

impl DevCloud {
    pub fn new(options: DevCloudOptions) -> Rc<Self> {
        Rc::new(Self {
            store: RefCell::new(Store::new(options.auto_activate_identities, options.allow_remote_approvals)),
            faults: RefCell::new(Faults::default()),
            records: RefCell::new(records::Records::default()),
            changed: Notify::new(),
            options,
            halted: watch::channel(false).0,
            server: RefCell::new(None),
            busy: std::cell::Cell::new(0),
            sse_open: std::cell::Cell::new(0),
            sse_peak: std::cell::Cell::new(0),
            sse_rejected: std::cell::Cell::new(0),
            calls: RefCell::new(std::collections::HashMap::new()),
        })
    }

    /// Seeds one agent, the default bindings and two tokens.
    pub fn seed(&self) -> Seeded {
        let mut store = self.store.borrow_mut();
        let agent = store.add_agent("dev-agent", "Dev echo agent");
        let bindings = seeded_bindings();
        for binding in &bindings {
            store.add_channel_binding(binding.binding_id, &agent.agent_id, binding.provider, None);
        }
        let grants: Vec<String> = bindings.iter().map(|b| b.binding_id.to_owned()).collect();
        let gateway = store.issue_token(vec!["gateway".into()], grants.clone());
        let admin = store.issue_token(vec!["gateway".into(), "admin".into()], grants);
        Seeded { agent_id: agent.agent_id, gateway_token: gateway.plaintext, admin_token: admin.plaintext, bindings }
    }

    /// Binds and serves in the background (on the current `LocalSet`).
    pub async fn start(self: &Rc<Self>, host: &str, port: u16) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind((host.trim_start_matches('[').trim_end_matches(']'), port)).await?;
        let address = listener.local_addr()?;
        let cloud = Rc::clone(self);
        self.halted.send_replace(false);
        let server = tokio::task::spawn_local(crate::http::server::serve(listener, move |request, _peer| {
            routes::handle(Rc::clone(&cloud), request)
        }));
        if let Some(previous) = self.server.borrow_mut().replace(server) {
            previous.abort();
        }
        Ok(address)
    }

    /// Takes the Cloud away: the listener closes and every open stream ends with an error, as
    /// when Cloud crashes. [`DevCloud::start`] brings it back with its state.
    pub fn stop(&self) {
        if let Some(server) = self.server.borrow_mut().take() {
            server.abort();
        }
        self.halted.send_replace(true);
    }

    /// Resolves when [`DevCloud::stop`] is called.
    pub fn halted(&self) -> watch::Receiver<bool> {
        self.halted.subscribe()
    }

    /// Enqueues an outbound delivery, as `POST /api/channels/deliveries` does.
    pub fn enqueue_delivery(
        &self,
        channel_binding_id: &str,
        delivery_id: &str,
        target: Value,
        payload: Value,
    ) -> Option<Delivery> {
        let binding = self.store.borrow().channel_binding(channel_binding_id).cloned()?;
        let mut input = Map::new();
        input.insert("deliveryId".into(), delivery_id.into());
        input.insert("target".into(), target);
        input.insert("payload".into(), payload);
        input.insert("eventType".into(), "workflow.completed".into());
        let delivery = self.store.borrow_mut().enqueue_delivery(&input, &binding);
        self.changed.notify_waiters();
        Some(delivery)
    }

    /// A delivery's current record (raw form).
    pub fn delivery(&self, channel_binding_id: &str, delivery_id: &str) -> Option<Value> {
        self.store
            .borrow()
            .deliveries
            .iter()
            .find(|d| d.channel_binding_id == channel_binding_id && d.delivery_id == delivery_id)
            .map(Delivery::raw)
    }

    /// Drops a session's events up to `sequence`, as retention pruning does.
    pub fn prune_session_events(&self, session_id: &str, through_sequence: u64) {
        if let Some(session) = self.store.borrow_mut().sessions.get_mut(session_id) {
            session.events.retain(|e| e["sequence"].as_u64().is_some_and(|s| s > through_sequence));
        }
    }

    /// Appends an event to a session (as the runtime would) and wakes its streams.
    pub fn append_session_event(&self, session_id: &str, event_type: &str, payload: Value) -> Option<u64> {
        let sequence = self.store.borrow_mut().append_event(session_id, event_type, payload);
        self.changed.notify_waiters();
        sequence
    }

    /// The prompts a session received, in order.
    pub fn prompts(&self, session_id: &str) -> Vec<String> {
        self.store
            .borrow()
            .sessions
            .get(session_id)
            .map(|s| {
                s.commands
                    .iter()
                    .filter(|c| c["kind"] == "prompt")
                    .filter_map(|c| c["payload"]["text"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Requests received so far on the route with this fault key (`"claim"`, `"prompt"`, …).
    pub fn calls(&self, route: &str) -> u64 {
        self.calls.borrow().get(route).copied().unwrap_or(0)
    }

    /// Requests received so far, per route, sorted by route.
    pub fn calls_by_route(&self) -> Vec<(&'static str, u64)> {
        let mut calls: Vec<_> = self.calls.borrow().iter().map(|(k, v)| (*k, *v)).collect();
        calls.sort_unstable();
        calls
    }

    /// Requests received so far on every route.
    pub fn total_calls(&self) -> u64 {
        self.calls.borrow().values().sum()
    }

    /// SSE streams open now, the most open at once, and the opens refused by the cap.
    pub fn sse_counts(&self) -> (usize, usize, u64) {
        (self.sse_open.get(), self.sse_peak.get(), self.sse_rejected.get())
    }

    /// No agent command is running.
    pub fn agent_idle(&self) -> bool {
        self.busy.get() == 0
    }

    /// The newest event sequence of the session behind a session binding.
    pub fn latest_sequence(&self, session_binding_id: &str) -> Option<u64> {
        let store = self.store.borrow();
        let binding = store.session_binding(session_binding_id)?;
        store.sessions.get(&binding.session_id).map(|s| s.next_sequence - 1)
    }
}
