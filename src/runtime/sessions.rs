//! Session streams (gateway.md §3.4, §8.4, §8.16): one task per open session binding follows its
//! Cloud event stream, renders each event in order to the binding's provider, and persists the
//! cursor. A transiently failed render is retried in place, so no later event overtakes it; after
//! the retry budget the event is skipped ("poison") and counted. Idle streams are evicted after
//! 30 minutes, and at most 2,000 are open; an evicted stream reopens on the next message.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use smol_str::SmolStr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::state::{OpenStreamEntry, StateFile};
use crate::channel::{ChannelRegistry, ChannelTarget};
use crate::cloud::client::CloudClient;
use crate::cloud::retry::with_retry;
use crate::cloud::streams::{follow_session_events, SessionStreamItem, StreamContext};
use crate::cloud::types::{CursorUpdate, SessionBindingRecord};
use crate::config::ProviderKind;
use crate::metrics::{bounded_channel_kind, Direction, Metrics, Outcome, Stat};
use crate::render::{render_event, RenderContext, RenderState};
use crate::shutdown::Shutdown;

pub const MAX_STREAMS: usize = 2000;
pub const IDLE_TTL: Duration = Duration::from_secs(30 * 60);
/// Events buffered between the stream reader and the renderer.
const QUEUE_DEPTH: usize = 512;
/// How long one event may keep failing transiently (or keep being rate-limited) before it is
/// skipped: minutes, so a channel outage or flood control does not cost the user a reply.
const RENDER_BUDGET: Duration = Duration::from_secs(10 * 60);
/// The longest pause between two tries of one event.
const RENDER_RETRY_CAP: Duration = Duration::from_secs(60);

/// The pause after the `attempt`-th failed try: 1 s·2ⁿ⁻¹, capped at a minute.
fn retry_pause(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << (attempt.saturating_sub(1)).min(6)).min(RENDER_RETRY_CAP)
}
/// Cursor writes for events that rendered nothing are coalesced to one per this interval.
const CURSOR_COALESCE: Duration = Duration::from_secs(1);

struct OpenStream {
    entry: OpenStreamEntry,
    last_activity: Instant,
    task: JoinHandle<()>,
    /// The cursor the renderer has persisted (or skipped to), shared with its task.
    cursor: Rc<std::cell::Cell<u64>>,
}

/// The open session streams, keyed by session binding id.
#[derive(Default)]
pub struct SessionStreams {
    open: HashMap<SmolStr, OpenStream>,
    state_file: Option<StateFile>,
    /// Rewrites the state file after changes; set by [`SessionStreams::shared`].
    writer: Option<crate::util::durable::DebouncedFile>,
}

impl SessionStreams {
    pub fn new(state_file: Option<StateFile>) -> Self {
        Self { open: HashMap::new(), state_file, writer: None }
    }

    /// The streams, shared, with the state file (if any) kept in step with them.
    pub fn shared(state_file: Option<StateFile>) -> Rc<RefCell<Self>> {
        let streams = Rc::new(RefCell::new(Self::new(state_file)));
        let writer = streams.borrow().state_file.as_ref().map(|file| file.writer(Rc::downgrade(&streams)));
        streams.borrow_mut().writer = writer;
        streams
    }

    /// The streams a previous run left open (empty without a state directory).
    pub fn saved(&self) -> Vec<OpenStreamEntry> {
        self.state_file.as_ref().map(|f| f.load(MAX_STREAMS)).unwrap_or_default()
    }

    /// The open streams changed: the state file is rewritten shortly, off this path.
    fn save(&self) {
        if let Some(writer) = &self.writer {
            writer.mark_dirty();
        }
    }

    /// The entries the state file should hold now.
    pub fn entries(&self) -> Vec<OpenStreamEntry> {
        self.open.values().map(|s| s.entry.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The last cursor each open stream persisted.
    pub fn cursors(&self) -> Vec<(SmolStr, u64)> {
        self.open.iter().map(|(id, s)| (id.clone(), s.cursor.get())).collect()
    }

    /// Evicts streams idle for longer than the TTL; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let before = self.open.len();
        self.open.retain(|_, stream| {
            let keep = now.duration_since(stream.last_activity) < IDLE_TTL && !stream.task.is_finished();
            if !keep {
                stream.task.abort();
            }
            keep
        });
        let evicted = before - self.open.len();
        if evicted > 0 {
            self.save();
        }
        evicted
    }

    fn evict_least_recent(&mut self) {
        if let Some(id) = self.open.iter().min_by_key(|(_, s)| s.last_activity).map(|(id, _)| id.clone()) {
            if let Some(stream) = self.open.remove(&id) {
                stream.task.abort();
            }
        }
    }

    /// Stops every stream; the state file keeps them for the next start.
    pub fn close_all(&mut self) {
        for (_, stream) in self.open.drain() {
            stream.task.abort();
        }
    }
}

/// The session streams and what they need, as one cheap handle: the inbound path opens streams
/// through it, the wiring resumes, sweeps and closes them.
#[derive(Clone)]
pub struct Sessions {
    streams: Rc<RefCell<SessionStreams>>,
    metrics: Rc<Metrics>,
    registry: Rc<ChannelRegistry>,
    client: Rc<CloudClient>,
    shutdown: Shutdown,
    stream_context: StreamContext,
}

impl Sessions {
    pub fn new(
        streams: Rc<RefCell<SessionStreams>>,
        registry: Rc<ChannelRegistry>,
        client: Rc<CloudClient>,
        shutdown: Shutdown,
        stream_context: StreamContext,
    ) -> Self {
        Self { streams, metrics: Rc::clone(&stream_context.metrics), registry, client, shutdown, stream_context }
    }

    /// The open streams, for the operator views and tests.
    pub fn streams(&self) -> &Rc<RefCell<SessionStreams>> {
        &self.streams
    }

    /// Opens the binding's stream, or touches it if already open (§3.4 `ensure`).
    pub fn ensure(&self, binding: SessionBindingRecord, provider_id: &str) {
        ensure(self, binding, provider_id);
    }

    /// Evicts idle streams and refreshes the open-streams gauge (the periodic sweep).
    pub fn sweep_idle(&self) {
        let mut streams = self.streams.borrow_mut();
        let evicted = streams.sweep(Instant::now());
        self.metrics.add(Stat::StreamEvictions, evicted as u64);
        self.metrics.set_gauge(Stat::SessionStreams, streams.len() as u64);
    }

    /// Stops every stream (the state file keeps them for the next start) and writes a pending
    /// state file change now.
    pub fn close_all(&self) {
        // Written before the streams close, so the file still lists them for the next start.
        let writer = self.streams.borrow().writer.clone();
        if let Some(writer) = writer {
            writer.flush_now();
        }
        self.streams.borrow_mut().close_all();
        self.metrics.set_gauge(Stat::SessionStreams, 0);
    }
}

fn ensure(sessions: &Sessions, binding: SessionBindingRecord, provider_id: &str) {
    let client = Rc::clone(&sessions.client);
    let now = Instant::now();
    let mut streams = sessions.streams.borrow_mut();
    if let Some(stream) = streams.open.get_mut(&binding.binding_id) {
        if !stream.task.is_finished() {
            stream.last_activity = now;
            return;
        }
    }
    let mut evicted = streams.sweep(now);
    while streams.open.len() >= MAX_STREAMS {
        streams.evict_least_recent();
        evicted += 1;
    }
    sessions.metrics.add(Stat::StreamEvictions, evicted as u64);
    let cursor = Rc::new(std::cell::Cell::new(binding.last_event_sequence));
    let entry = OpenStreamEntry::new(&binding, provider_id);
    let task = tokio::task::spawn_local(run_stream(
        sessions.clone(),
        client,
        binding.clone(),
        SmolStr::new(provider_id),
        Rc::clone(&cursor),
    ));
    streams.open.insert(binding.binding_id.clone(), OpenStream { entry, last_activity: now, task, cursor });
    streams.save();
    sessions.metrics.set_gauge(Stat::SessionStreams, streams.open.len() as u64);
}

/// The binding's persisted cursor and last provider message id.
struct Cursor {
    persisted: Rc<std::cell::Cell<u64>>,
    workspace: u64,
    last_chat_message_id: Option<String>,
    /// A sequence rendered-as-nothing that still has to be written.
    pending: Option<u64>,
    last_write: Instant,
}

impl Cursor {
    async fn persist(&mut self, sessions: &Sessions, client: &CloudClient, binding_id: &str, sequence: u64) {
        // A chatty session can meet Cloud's per-token rate limit: wait as long as Cloud asks.
        let (workspace, message_id) = (self.workspace, self.last_chat_message_id.clone());
        let written =
            with_retry(3, || client.update_cursor(binding_id, sequence, workspace, message_id.as_deref())).await;
        match written {
            Ok(CursorUpdate::Updated(binding) | CursorUpdate::Stale(binding)) => {
                self.persisted.set(binding.last_event_sequence.max(sequence));
                self.workspace = binding.last_workspace_sequence;
                self.pending = None;
            }
            Ok(CursorUpdate::NotFound) | Err(_) => {
                // The stream itself resumes from its own cursor; only a restart would replay.
                sessions.metrics.increment(Stat::CursorPersistenceFailures);
                self.pending = Some(sequence);
            }
        }
        self.last_write = Instant::now();
    }

    async fn flush(&mut self, sessions: &Sessions, client: &CloudClient, binding_id: &str) {
        if let Some(sequence) = self.pending {
            self.persist(sessions, client, binding_id, sequence).await;
        }
    }
}

async fn run_stream(
    sessions: Sessions,
    client: Rc<CloudClient>,
    binding: SessionBindingRecord,
    provider_id: SmolStr,
    persisted: Rc<std::cell::Cell<u64>>,
) {
    let _work = sessions.shutdown.work_guard();
    let mut drain = sessions.shutdown.signal();
    let (tx, mut items) = mpsc::channel(QUEUE_DEPTH);
    let follower = {
        let context = sessions.stream_context.clone();
        let client = Rc::clone(&client);
        let id = binding.binding_id.clone();
        let start = binding.last_event_sequence;
        tokio::task::spawn_local(async move { follow_session_events(&context, &client, id, start, tx).await })
    };
    let mut cursor = Cursor {
        persisted,
        workspace: binding.last_workspace_sequence,
        last_chat_message_id: binding.last_chat_message_id.clone(),
        pending: None,
        last_write: Instant::now(),
    };
    let mut state = RenderState::default();
    loop {
        let item = tokio::select! {
            item = items.recv() => item,
            _ = tokio::time::sleep(CURSOR_COALESCE), if cursor.pending.is_some() => {
                cursor.flush(&sessions, &client, &binding.binding_id).await;
                continue;
            }
            _ = drain.started() => None,
        };
        let Some(item) = item else { break };
        match item {
            SessionStreamItem::CursorJump(sequence) => {
                cursor.persist(&sessions, &client, &binding.binding_id, sequence).await
            }
            SessionStreamItem::Event(event) => {
                let registration = sessions
                    .registry
                    .get(&provider_id)
                    .and_then(|r| Some((r.channel()?, r.config.runtime_id(), r.config.runtime_kind())));
                let Some((provider, runtime_id, runtime_kind)) = registration else { break };
                let target = ChannelTarget {
                    provider: runtime_id,
                    provider_kind: runtime_kind.into(),
                    chat_id: binding.external_chat_id.clone(),
                    is_direct: None,
                    thread_id: Some(binding.external_thread_id.clone()),
                    user_id: None,
                    message_id: cursor.last_chat_message_id.clone(),
                };
                let context = RenderContext { client: &client, provider: &*provider, binding: &binding, target };
                let first_try = Instant::now();
                let mut attempt = 1;
                let rendered = loop {
                    match render_event(&context, &mut state, &event).await {
                        Ok(rendered) => break Ok(rendered),
                        // The channel said how long to wait: wait exactly that and try the same
                        // event again. Not a failed attempt; later events still wait their turn.
                        Err(error) if error.retry_after.is_some() && first_try.elapsed() < RENDER_BUDGET => {
                            sessions.metrics.increment(Stat::SessionRenderDelays);
                            tokio::time::sleep(error.retry_after.unwrap_or_default()).await;
                        }
                        Err(error) if error.transient && first_try.elapsed() + retry_pause(attempt) < RENDER_BUDGET => {
                            sessions.metrics.increment(Stat::SessionRenderRetries);
                            sessions.metrics.increment(Stat::Errors);
                            tokio::time::sleep(retry_pause(attempt)).await;
                            attempt += 1;
                        }
                        Err(error) => break Err(error),
                    }
                };
                // Session render telemetry counts under the runtime provider kind (§3.11).
                let kind = ProviderKind::parse(runtime_kind).map_or("other", |k| bounded_channel_kind(k, &provider_id));
                if attempt > 1 || rendered.as_ref().is_ok_and(|r| r.handled) || rendered.is_err() {
                    sessions.metrics.record_channel_message(kind, Direction::Outbound, Outcome::Attempt, None);
                    let outcome = match &rendered {
                        Ok(_) => Outcome::Success,
                        Err(error) if error.transient => Outcome::Retry,
                        Err(_) => Outcome::Error,
                    };
                    sessions.metrics.record_channel_message(kind, Direction::Outbound, outcome, None);
                }
                match rendered {
                    Ok(rendered) if rendered.handled => {
                        if rendered.last_chat_message_id.is_some() {
                            cursor.last_chat_message_id = rendered.last_chat_message_id;
                        }
                        cursor.persist(&sessions, &client, &binding.binding_id, event.sequence).await;
                    }
                    Ok(_) => {
                        cursor.pending = Some(event.sequence);
                        if cursor.last_write.elapsed() >= CURSOR_COALESCE {
                            cursor.flush(&sessions, &client, &binding.binding_id).await;
                        }
                    }
                    Err(error) => {
                        sessions.metrics.increment(Stat::Errors);
                        sessions.metrics.increment(Stat::DroppedSessionEvents);
                        sessions.metrics.increment(Stat::SessionRenderDeadLetters);
                        tracing::warn!(sequence = event.sequence, event_type = %event.event_type, attempts = attempt, error = %crate::config::redact::redact_text(&error.message), "session event skipped after failed renders");
                        cursor.persist(&sessions, &client, &binding.binding_id, event.sequence).await;
                    }
                }
            }
        }
    }
    cursor.flush(&sessions, &client, &binding.binding_id).await;
    follower.abort();
}

/// Reopens the streams a previous run left open, each from its current Cloud cursor.
pub async fn resume_saved(sessions: Sessions) {
    let client = Rc::clone(&sessions.client);
    let saved = sessions.streams.borrow().saved();
    if saved.is_empty() {
        return;
    }
    let mut resumed = 0;
    for entry in saved {
        if !sessions.registry.get(&entry.provider_id).is_some_and(|r| r.is_started()) {
            continue;
        }
        match client
            .find_session_by_thread(
                &entry.provider,
                entry.external_workspace_id.as_deref(),
                &entry.external_chat_id,
                &entry.external_thread_id,
            )
            .await
        {
            Ok(Some(bound)) => {
                sessions.ensure(bound.binding, &entry.provider_id);
                resumed += 1;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %crate::config::redact::Redacted(&error), "cannot look up a saved session binding; it reopens on its next message")
            }
        }
    }
    tracing::info!(resumed, "session streams resumed from the state file");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_sessions() -> Sessions {
        let config = crate::config::test_config(&[]);
        let metrics = Rc::new(Metrics::new(&config));
        let shutdown = Shutdown::new();
        let (status, _) = crate::cloud::streams::CloudStatusReporter::new("");
        let context = StreamContext {
            metrics: Rc::clone(&metrics),
            drain: shutdown.signal(),
            status,
            warnings: Rc::new(crate::logging::WarnLimiter::new(Duration::from_secs(60))),
        };
        let http = crate::net::https::build_client(None).unwrap();
        let client = Rc::new(CloudClient::new(
            http,
            "http://127.0.0.1:9",
            crate::config::Secret::new("t"),
            Duration::from_secs(1),
        ));
        let registry = Rc::new(ChannelRegistry::new(&config, metrics));
        Sessions::new(SessionStreams::shared(None), registry, client, shutdown, context)
    }

    fn entry(id: &str) -> OpenStreamEntry {
        OpenStreamEntry {
            session_binding_id: id.into(),
            provider_id: "fake".into(),
            provider: "cli".into(),
            external_workspace_id: None,
            external_chat_id: id.into(),
            external_thread_id: id.into(),
        }
    }

    fn open(streams: &mut SessionStreams, id: &str) {
        let task = tokio::task::spawn_local(std::future::pending::<()>());
        streams.open.insert(
            id.into(),
            OpenStream {
                entry: entry(id),
                last_activity: Instant::now(),
                task,
                cursor: Rc::new(std::cell::Cell::new(0)),
            },
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_streams_are_evicted_after_the_ttl_and_the_least_recent_at_the_cap() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let mut streams = SessionStreams::new(None);
                open(&mut streams, "old");
                tokio::time::advance(IDLE_TTL / 2).await;
                open(&mut streams, "recent");
                assert_eq!(streams.sweep(Instant::now()), 0);
                tokio::time::advance(IDLE_TTL / 2 + Duration::from_secs(1)).await;
                assert_eq!(streams.sweep(Instant::now()), 1, "only the stream idle for the whole TTL");
                assert_eq!(streams.cursors().len(), 1);
                open(&mut streams, "newest");
                streams.evict_least_recent();
                let left: Vec<SmolStr> = streams.cursors().into_iter().map(|(id, _)| id).collect();
                assert_eq!(left, ["newest"], "the least recently active goes first");
                streams.close_all();
                assert!(streams.is_empty());
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_periodic_sweep_counts_evictions_and_refreshes_the_gauge() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let gateway = test_sessions();
                open(&mut gateway.streams.borrow_mut(), "idle");
                gateway.metrics.set_gauge(Stat::SessionStreams, 1);
                tokio::time::advance(IDLE_TTL + Duration::from_secs(1)).await;
                gateway.sweep_idle();
                assert_eq!(gateway.metrics.get(Stat::StreamEvictions), 1);
                assert_eq!(gateway.metrics.get(Stat::SessionStreams), 0);
            })
            .await;
    }
}
