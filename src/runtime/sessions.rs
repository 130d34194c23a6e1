//! Session streams: one task per open session binding follows its Cloud event stream, renders
//! each event in order for the binding's channel (a render plan, carried out by
//! [`super::plan_executor`]), and persists the cursor. A transiently failed render is retried in
//! place, so no later event overtakes it, and each try resumes the plan where the last one
//! stopped; after the retry budget the event is skipped ("poison") and counted.
//!
//! Streams exist only while they are needed: a stream closes a short grace after its session
//! went idle (`session.idle`, or no event for [`QUIET_CLOSE`]) unless an approval or a question
//! is pending, and reopens on the next prompt or interaction from the cursor, so nothing is
//! missed or rendered twice. A stream waiting only on a user's answer stays open while there is
//! room, but gives its slot up under pressure like an idle one. At most
//! `OPEN_COWORK_GATEWAY_MAX_SESSION_STREAMS` (default 190, below Cloud's per-organisation cap of
//! 200 so the delivery stream keeps its slot) are open; a chat that needs one beyond that waits
//! in a bounded FIFO while the least recently used idle stream closes (an eviction). A 429 from
//! Cloud lowers the budget for a while instead of retrying hot.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::Duration;

use smol_str::SmolStr;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::plan_executor::{carry_out, PlanContext, Progress, RenderError, Rendered};
use super::state::{OpenStreamEntry, StateFile};
use crate::channel::{Channel, ChannelRegistry, ChannelTarget};
use crate::cloud::client::CloudClient;
use crate::cloud::retry::with_retry;
use crate::cloud::streams::{follow_session_events, SessionStreamItem, StreamContext};
use crate::cloud::types::{CursorUpdate, SessionBindingRecord, SessionEvent};
use crate::config::ProviderKind;
use crate::metrics::{bounded_channel_kind, Direction, Metrics, Outcome, Stat};
use crate::render::{render_event, RenderContext, RenderState};
use crate::shutdown::Shutdown;

const MAX_STREAMS: usize = 2000;
const IDLE_TTL: Duration = Duration::from_secs(30 * 60);
/// The default stream budget: below Cloud's per-organisation cap (200) with room for the
/// delivery stream and a few spare slots.
const DEFAULT_BUDGET: usize = 190;
/// The default grace between a session going idle and its stream closing.
const DEFAULT_IDLE_CLOSE: Duration = Duration::from_secs(30);
/// A stream that saw no event for this long closes even without `session.idle` (unless an
/// approval or question is pending).
const QUIET_CLOSE: Duration = Duration::from_secs(10 * 60);
/// Chats waiting for a stream slot; beyond it the oldest waiter is dropped (its events are read
/// when its chat next writes).
const MAX_WAITING: usize = 4096;
/// Cursors of recently closed streams, so a reopen never goes behind what this process handled
/// even when the last cursor write failed.
const MAX_RECENT: usize = 4096;
/// After a 429 on a stream open the budget stays lowered for this long.
const LOWERED_FOR: Duration = Duration::from_secs(30);
/// 429s closer together than this lower the budget only once.
const LOWER_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// Approvals and questions tracked per stream.
const MAX_PENDING: usize = 64;
/// Events buffered between the stream reader and the renderer.
const QUEUE_DEPTH: usize = 512;
/// How long one event may keep failing transiently (or keep being rate-limited) before it is
/// skipped: minutes, so a channel outage or flood control does not cost the user a reply.
const RENDER_BUDGET: Duration = Duration::from_secs(10 * 60);
/// The longest pause between two tries of one event.
const RENDER_RETRY_CAP: Duration = Duration::from_secs(60);

/// The pause after the `attempt`-th failed try: 1 s·2ⁿ⁻¹, capped at a minute.
fn retry_pause(attempt: u32) -> Duration {
    crate::net::backoff::RetryPolicy::new(Duration::from_secs(1), RENDER_RETRY_CAP).with_jitter(0.0).nth(attempt.into())
}
/// Tries of one cursor write (transient failures are retried in place, after Cloud's hint).
const CURSOR_ATTEMPTS: u32 = 3;
/// Cursor writes for events that rendered nothing are coalesced to one per this interval.
const CURSOR_COALESCE: Duration = Duration::from_secs(1);
/// A rendered event's cursor waits at most this long for the end of its turn (`session.idle`),
/// so one write covers the turn.
const RENDERED_SETTLE: Duration = Duration::from_millis(250);

/// What a stream's task and the stream table share.
#[derive(Default)]
struct StreamShared {
    /// The cursor the renderer has persisted (or skipped to).
    persisted: Cell<u64>,
    /// The last sequence this process handled (rendered, skipped or found to render nothing).
    handled: Cell<u64>,
    /// The session is idle and nothing is pending: the stream may be closed for another chat.
    idle: Cell<bool>,
    /// When the inbound path last needed this stream (a prompt or interaction follows).
    wanted_at: Cell<Option<Instant>>,
    /// Set when the stream is closing; a chat that needs it opens a fresh one.
    closing: Cell<bool>,
    /// Cloud refused the stream with 429 and it has not read anything since.
    refused: Cell<bool>,
    /// Asks the task to close (the budget needs its slot).
    close: Notify,
}

struct OpenStream {
    entry: OpenStreamEntry,
    last_activity: Instant,
    task: JoinHandle<()>,
    shared: Rc<StreamShared>,
    generation: u64,
}

/// A chat waiting for a stream slot: its prompt is already in Cloud, its events are read once
/// its stream opens.
struct Waiting {
    binding: SessionBindingRecord,
    provider_id: SmolStr,
}

/// The open session streams, keyed by session binding id.
pub struct SessionStreams {
    open: HashMap<SmolStr, OpenStream>,
    state_file: Option<StateFile>,
    /// Rewrites the state file after changes; set by [`SessionStreams::shared`].
    writer: Option<crate::util::durable::DebouncedFile>,
    /// The configured budget.
    budget: usize,
    /// The budget Cloud's 429 lowered it to, and until when.
    lowered: Option<(usize, Instant)>,
    idle_close: Duration,
    waiting: VecDeque<Waiting>,
    recent: HashMap<SmolStr, (u64, Instant)>,
    next_generation: u64,
}

impl SessionStreams {
    pub fn new(state_file: Option<StateFile>) -> Self {
        Self {
            open: HashMap::new(),
            state_file,
            writer: None,
            budget: DEFAULT_BUDGET,
            lowered: None,
            idle_close: DEFAULT_IDLE_CLOSE,
            waiting: VecDeque::new(),
            recent: HashMap::new(),
            next_generation: 0,
        }
    }

    /// Sets the stream budget (at most [`MAX_STREAMS`]) and the idle-close grace.
    pub fn configure(&mut self, budget: usize, idle_close: Duration) {
        self.budget = budget.clamp(1, MAX_STREAMS);
        self.idle_close = idle_close;
    }

    /// The streams that may be open now: the budget, or less for a while after a 429.
    pub fn budget(&self, now: Instant) -> usize {
        match self.lowered {
            Some((lowered, until)) if now < until => lowered.min(self.budget),
            _ => self.budget,
        }
    }

    /// Chats waiting for a stream slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The newest cursor this process knows for a binding (an open stream's, or a recently
    /// closed one's): reusing a binding without Cloud's cursor is safe only then.
    pub fn known_cursor(&self, binding_id: &str) -> Option<u64> {
        let open = self.open.get(binding_id).map(|s| s.shared.handled.get().max(s.shared.persisted.get()));
        open.or_else(|| self.recent.get(binding_id).map(|(c, _)| *c))
    }

    fn remember(&mut self, binding_id: &SmolStr, handled: u64, now: Instant) {
        if self.recent.len() >= MAX_RECENT && !self.recent.contains_key(binding_id) {
            if let Some(oldest) = self.recent.iter().min_by_key(|(_, (_, at))| *at).map(|(id, _)| id.clone()) {
                self.recent.remove(&oldest);
            }
        }
        let known = self.recent.get(binding_id).map_or(0, |(c, _)| *c);
        self.recent.insert(binding_id.clone(), (handled.max(known), now));
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
        self.open.iter().map(|(id, s)| (id.clone(), s.shared.persisted.get())).collect()
    }

    /// Evicts streams idle for longer than the TTL; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let before = self.open.len();
        let mut closed = Vec::new();
        self.open.retain(|id, stream| {
            let keep = now.duration_since(stream.last_activity) < IDLE_TTL && !stream.task.is_finished();
            if !keep {
                stream.task.abort();
                closed.push((id.clone(), stream.shared.handled.get()));
            }
            keep
        });
        for (id, handled) in closed {
            self.remember(&id, handled, now);
        }
        self.recent.retain(|_, (_, at)| now.duration_since(*at) < IDLE_TTL);
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
                self.remember(&id, stream.shared.handled.get(), Instant::now());
            }
        }
    }

    /// Asks the least recently active idle stream that is not already closing to close; returns
    /// whether there was one.
    fn close_least_recent_idle(&mut self) -> bool {
        let candidate = self
            .open
            .values()
            .filter(|s| s.shared.idle.get() && !s.shared.closing.get())
            .min_by_key(|s| s.last_activity);
        match candidate {
            Some(stream) => {
                stream.shared.closing.set(true);
                stream.shared.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stops every stream; the state file keeps them for the next start.
    pub fn close_all(&mut self) {
        for (_, stream) in self.open.drain() {
            stream.task.abort();
        }
        self.waiting.clear();
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
        let sessions =
            Self { streams, metrics: Rc::clone(&stream_context.metrics), registry, client, shutdown, stream_context };
        sessions.refresh_gauges();
        sessions
    }

    /// The open streams, for the operator views and tests.
    pub fn streams(&self) -> &Rc<RefCell<SessionStreams>> {
        &self.streams
    }

    /// Opens the binding's stream, or touches it if already open.
    pub fn ensure(&self, binding: SessionBindingRecord, provider_id: &str) {
        ensure(self, binding, provider_id);
    }

    /// Evicts idle streams and refreshes the open-streams gauge (the periodic sweep).
    pub fn sweep_idle(&self) {
        let evicted = self.streams.borrow_mut().sweep(Instant::now());
        self.metrics.add(Stat::StreamEvictions, evicted as u64);
        self.pump();
    }

    /// The stream budget now (lowered for a while after a 429).
    pub fn budget(&self) -> usize {
        self.streams.borrow().budget(Instant::now())
    }

    /// Cloud refused a stream open with 429: no new stream opens until one closes, for a while.
    fn rate_limited(&self) {
        self.metrics.increment(Stat::SessionStreamRateLimits);
        let now = Instant::now();
        let mut streams = self.streams.borrow_mut();
        // Once per window: several streams refused at the same moment lower it once, to what
        // was open then less one.
        let recently = streams.lowered.is_some_and(|(_, until)| now + LOWERED_FOR - until < LOWER_AGAIN_AFTER);
        if !recently {
            // What Cloud actually holds for us: the open streams it has not refused.
            let connected = streams.open.values().filter(|s| !s.shared.refused.get()).count();
            let lowered = connected.max(1).min(streams.budget(now));
            streams.lowered = Some((lowered, now + LOWERED_FOR));
        }
        // The refused stream keeps its place (its prompt's events are still to come) and retries
        // after the wait; the room it needs in Cloud is held by streams of this gateway that are
        // merely idle. Close the least recently used of them so the retry finds a slot, instead
        // of the refused chat waiting out their idle close.
        let holding = streams.open.values().filter(|s| !s.shared.closing.get()).count();
        if holding > streams.budget(now) && streams.close_least_recent_idle() {
            self.metrics.increment(Stat::StreamEvictions);
        }
        drop(streams);
        self.refresh_gauges();
    }

    /// A stream task ended: its slot goes to the next waiting chat.
    fn stream_ended(&self, binding_id: &SmolStr, generation: u64) {
        {
            let mut streams = self.streams.borrow_mut();
            if streams.open.get(binding_id).is_some_and(|s| s.generation == generation) {
                if let Some(stream) = streams.open.remove(binding_id) {
                    streams.remember(binding_id, stream.shared.handled.get(), Instant::now());
                    streams.save();
                }
            }
        }
        self.pump();
    }

    /// Opens streams for waiting chats while the budget allows; when it does not, asks the
    /// least recently used idle stream to make room.
    fn pump(&self) {
        if !self.shutdown.is_draining() {
            loop {
                let next = {
                    let mut streams = self.streams.borrow_mut();
                    let budget = streams.budget(Instant::now());
                    if streams.waiting.is_empty() {
                        None
                    } else if streams.open.len() < budget {
                        streams.waiting.pop_front()
                    } else {
                        let closing = streams.open.values().filter(|s| s.shared.closing.get()).count();
                        if closing < streams.waiting.len() && streams.close_least_recent_idle() {
                            self.metrics.increment(Stat::StreamEvictions);
                        }
                        None
                    }
                };
                let Some(waiting) = next else { break };
                self.open_stream(waiting.binding, &waiting.provider_id);
            }
        }
        self.refresh_gauges();
    }

    fn refresh_gauges(&self) {
        let streams = self.streams.borrow();
        self.metrics.set_gauge(Stat::SessionStreams, streams.open.len() as u64);
        self.metrics.set_gauge(Stat::SessionStreamsWaiting, streams.waiting.len() as u64);
        self.metrics.set_gauge(Stat::SessionStreamBudget, streams.budget(Instant::now()) as u64);
    }

    /// The newest cursor this process knows for a binding; see [`SessionStreams::known_cursor`].
    pub fn known_cursor(&self, binding_id: &str) -> Option<u64> {
        self.streams.borrow().known_cursor(binding_id)
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

fn ensure(sessions: &Sessions, mut binding: SessionBindingRecord, provider_id: &str) {
    let now = Instant::now();
    {
        let mut streams = sessions.streams.borrow_mut();
        let mut evicted = 0;
        if let Some(stream) = streams.open.get_mut(&binding.binding_id) {
            if !stream.task.is_finished() && !stream.shared.closing.get() {
                stream.last_activity = now;
                stream.shared.wanted_at.set(Some(now));
                stream.shared.idle.set(false);
                return;
            }
            // A closing stream hands over: the new one starts where it got to.
            let handled = stream.shared.handled.get();
            binding.last_event_sequence = binding.last_event_sequence.max(handled);
        }
        if let Some((known, _)) = streams.recent.get(&binding.binding_id) {
            binding.last_event_sequence = binding.last_event_sequence.max(*known);
        }
        if let Some(waiting) = streams.waiting.iter_mut().find(|w| w.binding.binding_id == binding.binding_id) {
            waiting.binding.last_event_sequence = waiting.binding.last_event_sequence.max(binding.last_event_sequence);
            return;
        }
        evicted += streams.sweep(now);
        // Only while the budget was lowered below what is open: the hard table cap.
        while streams.open.len() >= MAX_STREAMS {
            streams.evict_least_recent();
            evicted += 1;
        }
        sessions.metrics.add(Stat::StreamEvictions, evicted as u64);
        let budget = streams.budget(now);
        let replacing = streams.open.contains_key(&binding.binding_id);
        if !replacing && streams.open.len() >= budget {
            if streams.waiting.len() >= MAX_WAITING {
                if let Some(dropped) = streams.waiting.pop_front() {
                    tracing::warn!(binding = %dropped.binding.binding_id, "too many chats wait for a session stream; the oldest is read on its next message");
                }
            }
            streams.waiting.push_back(Waiting { binding, provider_id: SmolStr::new(provider_id) });
            drop(streams);
            sessions.pump();
            return;
        }
    }
    sessions.open_stream(binding, provider_id);
    sessions.refresh_gauges();
}

impl Sessions {
    fn open_stream(&self, binding: SessionBindingRecord, provider_id: &str) {
        let client = Rc::clone(&self.client);
        let now = Instant::now();
        let mut streams = self.streams.borrow_mut();
        let generation = streams.next_generation;
        streams.next_generation += 1;
        let shared = Rc::new(StreamShared::default());
        shared.persisted.set(binding.last_event_sequence);
        shared.handled.set(binding.last_event_sequence);
        shared.wanted_at.set(Some(now));
        let entry = OpenStreamEntry::new(&binding, provider_id);
        let task = tokio::task::spawn_local(run_stream(
            self.clone(),
            client,
            binding.clone(),
            SmolStr::new(provider_id),
            Rc::clone(&shared),
            generation,
            streams.idle_close,
        ));
        if let Some(old) = streams
            .open
            .insert(binding.binding_id.clone(), OpenStream { entry, last_activity: now, task, shared, generation })
        {
            // The old stream is closing; it flushes its cursor and ends on its own.
            old.shared.closing.set(true);
            old.shared.close.notify_one();
        }
        streams.recent.remove(&binding.binding_id);
        streams.save();
    }
}

/// The binding's persisted cursor and last provider message id.
struct Cursor {
    shared: Rc<StreamShared>,
    workspace: u64,
    last_chat_message_id: Option<String>,
    /// A handled sequence that still has to be written.
    pending: Option<u64>,
    /// The pending sequence includes a rendered (or skipped) event.
    pending_rendered: bool,
    last_write: Instant,
}

impl Cursor {
    async fn persist(&mut self, sessions: &Sessions, client: &CloudClient, binding_id: &str, sequence: u64) {
        // A chatty session can meet Cloud's per-token rate limit: wait as long as Cloud asks.
        let (workspace, message_id) = (self.workspace, self.last_chat_message_id.clone());
        // Boxed for the same reason as rendering: an idle stream need not carry a call's state.
        let calls = Cell::new(0u32);
        let written = Box::pin(with_retry(CURSOR_ATTEMPTS, || {
            calls.set(calls.get() + 1);
            client.update_cursor(binding_id, sequence, workspace, message_id.as_deref())
        }))
        .await;
        // A write retried in place holds the stream's next render like a render retry does.
        sessions.metrics.add(Stat::SessionRenderRetries, u64::from(calls.get().saturating_sub(1)));
        let reason = match &written {
            Ok(CursorUpdate::Updated(binding) | CursorUpdate::Stale(binding)) => {
                self.shared.persisted.set(binding.last_event_sequence.max(sequence));
                self.workspace = binding.last_workspace_sequence;
                self.pending = None;
                self.pending_rendered = false;
                None
            }
            Ok(CursorUpdate::NotFound) => Some("binding_not_found"),
            Err(error) => Some(match error.status {
                None => "network",
                Some(429) => "rate_limited",
                Some(500..) => "cloud_5xx",
                Some(_) => "cloud_4xx",
            }),
        };
        if let Some(reason) = reason {
            // The stream itself resumes from its own cursor; only a restart would replay.
            sessions.metrics.increment(Stat::CursorPersistenceFailures);
            self.pending = Some(sequence);
            let warnings = &sessions.stream_context.warnings;
            if let Some(suppressed) = warnings.allow("session cursor write failed", std::time::Instant::now()) {
                tracing::warn!(
                    binding = binding_id,
                    sequence,
                    reason,
                    attempts = calls.get(),
                    suppressed,
                    "a session cursor write failed; it is written again with the stream's next event or at its close (a restart before then renders those events again)"
                );
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

/// Whether an event opens or settles an approval or question: the stream stays open while one
/// is pending, since its answer produces events to render.
fn pending_change(event: &SessionEvent) -> Option<(bool, String)> {
    let opens = match event.event_type.as_str() {
        "permission.requested" | "question.asked" => true,
        "permission.resolved" | "question.resolved" => false,
        _ => return None,
    };
    let payload = &event.payload;
    let id = ["id", "permissionId", "requestId"].iter().find_map(|k| payload.get(*k).and_then(|v| v.as_str()));
    Some((opens, id.unwrap_or("").to_owned()))
}

/// Why a stream's loop ended.
#[derive(PartialEq, Eq)]
enum StreamEnd {
    /// Idle, or asked to make room: flush the cursor and free the slot.
    Closed,
    /// Drain, the reader gone, or the channel unregistered.
    Stopped,
}

async fn run_stream(
    sessions: Sessions,
    client: Rc<CloudClient>,
    binding: SessionBindingRecord,
    provider_id: SmolStr,
    shared: Rc<StreamShared>,
    generation: u64,
    idle_close: Duration,
) {
    let _work = sessions.shutdown.work_guard();
    let (tx, items) = mpsc::channel(QUEUE_DEPTH);
    // The follower reads Cloud's stream while the consumer renders: two futures polled by this
    // one task (a second task per chat cost its own allocation). When the follower returns
    // (drain, or the consumer gone) it has dropped `tx`, which the consumer reads as the end;
    // it then waits forever, so only the consumer decides when both stop.
    let follower = async {
        let start = binding.last_event_sequence;
        follow_session_events(&sessions.stream_context, &client, binding.binding_id.clone(), start, tx).await;
        std::future::pending::<std::convert::Infallible>().await
    };
    let consumer = consume(&sessions, &client, &binding, &provider_id, &shared, idle_close, items);
    let (end, mut cursor) = tokio::select! {
        biased;
        ended = consumer => ended,
        never = follower => match never {},
    };
    // The follower is dropped above, which closes the stream and frees its Cloud slot first;
    // then what is left of the cursor is written.
    shared.closing.set(true);
    cursor.flush(&sessions, &client, &binding.binding_id).await;
    if end == StreamEnd::Closed || !sessions.shutdown.is_draining() {
        sessions.stream_ended(&binding.binding_id, generation);
    }
}

/// Renders what the follower reads, in order, and keeps the cursor; returns why it stopped and
/// the cursor with anything still to write.
async fn consume(
    sessions: &Sessions,
    client: &CloudClient,
    binding: &SessionBindingRecord,
    provider_id: &SmolStr,
    shared: &Rc<StreamShared>,
    idle_close: Duration,
    mut items: mpsc::Receiver<SessionStreamItem>,
) -> (StreamEnd, Cursor) {
    let mut drain = sessions.shutdown.signal();
    let mut consumer = Consumer::new(sessions, client, binding, provider_id, shared, idle_close);
    let end = loop {
        let (close_at, park_at) = consumer.deadlines();
        let settle = if consumer.cursor.pending_rendered { RENDERED_SETTLE } else { CURSOR_COALESCE };
        let item = tokio::select! {
            item = items.recv() => item,
            _ = tokio::time::sleep(settle), if consumer.cursor.pending.is_some() => {
                consumer.flush().await;
                continue;
            }
            _ = tokio::time::sleep_until(close_at.unwrap_or_else(Instant::now)), if close_at.is_some() => {
                if consumer.close_due() {
                    break StreamEnd::Closed;
                }
                continue;
            }
            // Quiet for the grace while an answer is pending: may now be closed under pressure.
            _ = tokio::time::sleep_until(park_at.unwrap_or_else(Instant::now)), if park_at.is_some() => continue,
            _ = shared.close.notified() => break StreamEnd::Closed,
            _ = drain.started() => None,
        };
        let Some(item) = item else { break StreamEnd::Stopped };
        if let ControlFlow::Break(end) = consumer.take(item, &items).await {
            break end;
        }
    };
    (end, consumer.cursor)
}

/// What one stream's consumer keeps between the items it reads.
struct Consumer<'a> {
    sessions: &'a Sessions,
    client: &'a CloudClient,
    binding: &'a SessionBindingRecord,
    provider_id: &'a SmolStr,
    shared: &'a Rc<StreamShared>,
    idle_close: Duration,
    cursor: Cursor,
    state: RenderState,
    /// Approvals and questions waiting for an answer (bounded; an overflow keeps the stream open
    /// until the quiet close anyway).
    pending_answers: HashSet<String>,
    /// When the session last reported `session.idle` (and nothing arrived since).
    idle_since: Option<Instant>,
    last_event: Instant,
}

/// The binding's channel as a render needs it: the channel, its runtime id and runtime kind.
type RenderChannel = (Rc<dyn Channel>, SmolStr, &'static str);

impl<'a> Consumer<'a> {
    fn new(
        sessions: &'a Sessions,
        client: &'a CloudClient,
        binding: &'a SessionBindingRecord,
        provider_id: &'a SmolStr,
        shared: &'a Rc<StreamShared>,
        idle_close: Duration,
    ) -> Self {
        let cursor = Cursor {
            shared: Rc::clone(shared),
            workspace: binding.last_workspace_sequence,
            last_chat_message_id: binding.last_chat_message_id.clone(),
            pending: None,
            pending_rendered: false,
            last_write: Instant::now(),
        };
        Self {
            sessions,
            client,
            binding,
            provider_id,
            shared,
            idle_close,
            cursor,
            state: RenderState::default(),
            pending_answers: HashSet::new(),
            idle_since: None,
            last_event: Instant::now(),
        }
    }

    /// When the stream closes by itself and when it may be closed under pressure; marks it idle
    /// (closable for another chat) accordingly.
    fn deadlines(&self) -> (Option<Instant>, Option<Instant>) {
        let pending = !self.pending_answers.is_empty();
        // With an approval or a question pending the stream never closes by itself: its answer
        // produces events to render.
        let close_at = match self.idle_since {
            Some(since) if !pending => Some(since + self.idle_close),
            None if !pending => Some(self.last_event + QUIET_CLOSE),
            _ => None,
        };
        // But one waiting only on a user (the session went idle, or has been quiet for the grace)
        // holds a slot it does not need: under pressure it closes like an idle stream, and it
        // reopens from the cursor when the answer comes or the chat writes again. Unanswered
        // approvals would otherwise starve every other chat of the stream budget.
        let waiting_on_user = pending && (self.idle_since.is_some() || self.last_event.elapsed() >= self.idle_close);
        let park_at = (pending && !waiting_on_user).then_some(self.last_event + self.idle_close);
        self.shared.idle.set(self.idle_since.is_some() || waiting_on_user);
        (close_at, park_at)
    }

    /// The close deadline passed: whether the stream closes now.
    fn close_due(&mut self) -> bool {
        // A prompt or interaction asked for this stream after the session went idle: its events
        // are still to come.
        let since = self.idle_since.unwrap_or(self.last_event);
        if self.shared.wanted_at.get().is_some_and(|wanted| wanted > since) {
            self.idle_since = None;
            self.last_event = Instant::now();
            return false;
        }
        self.sessions.metrics.increment(Stat::SessionStreamIdleCloses);
        true
    }

    async fn flush(&mut self) {
        self.cursor.flush(self.sessions, self.client, &self.binding.binding_id).await;
    }

    /// Handles one item of the follower; a break ends the stream.
    async fn take(
        &mut self,
        item: SessionStreamItem,
        items: &mpsc::Receiver<SessionStreamItem>,
    ) -> ControlFlow<StreamEnd> {
        self.shared.refused.set(false);
        match item {
            SessionStreamItem::RateLimited(_) => {
                self.shared.refused.set(true);
                self.sessions.rate_limited();
            }
            SessionStreamItem::CursorJump(sequence) => {
                self.shared.handled.set(sequence);
                self.cursor.persist(self.sessions, self.client, &self.binding.binding_id, sequence).await;
            }
            SessionStreamItem::Event(event) => return self.on_event(&event, items).await,
        }
        ControlFlow::Continue(())
    }

    /// Tracks approvals and questions opened and settled by `event`.
    fn note_pending(&mut self, event: &SessionEvent) {
        if let Some((opens, id)) = pending_change(event) {
            if opens && self.pending_answers.len() < MAX_PENDING {
                self.pending_answers.insert(id);
            } else if !opens {
                self.pending_answers.remove(&id);
            }
        }
    }

    /// The binding's channel, while it is registered and built.
    fn channel(&self) -> Option<RenderChannel> {
        let registration = self.sessions.registry.get(self.provider_id)?;
        Some((registration.channel()?, registration.config.runtime_id(), registration.config.runtime_kind()))
    }

    async fn on_event(
        &mut self,
        event: &SessionEvent,
        items: &mpsc::Receiver<SessionStreamItem>,
    ) -> ControlFlow<StreamEnd> {
        self.last_event = Instant::now();
        self.idle_since = None;
        self.note_pending(event);
        // A rendered event's cursor is written before anything else may render, so at most the
        // end-of-turn events ride along with it.
        if self.cursor.pending_rendered && !matches!(event.event_type.as_str(), "session.idle" | "session.status") {
            self.flush().await;
        }
        let Some((provider, runtime_id, runtime_kind)) = self.channel() else {
            return ControlFlow::Break(StreamEnd::Stopped);
        };
        let target = ChannelTarget {
            provider: runtime_id,
            provider_kind: runtime_kind.into(),
            chat_id: self.binding.external_chat_id.clone(),
            is_direct: None,
            thread_id: Some(self.binding.external_thread_id.clone()),
            user_id: None,
            message_id: self.cursor.last_chat_message_id.clone(),
        };
        let context = PlanContext { client: self.client, provider: &*provider, binding: self.binding, target };
        let (rendered, attempts) = render_with_retries(self.sessions, &context, &mut self.state, event).await;
        // Session render telemetry counts under the runtime provider kind.
        let kind = self
            .sessions
            .registry
            .get(self.provider_id)
            .and_then(|r| ProviderKind::parse(r.config.kind.table(), runtime_kind));
        let kind = kind.map_or("other", |k| bounded_channel_kind(k, self.provider_id));
        record_render(&self.sessions.metrics, kind, &rendered, attempts);
        self.shared.handled.set(event.sequence);
        self.settle(event, rendered, attempts);
        if event.event_type == "session.idle" {
            self.idle_since = Some(Instant::now());
        }
        // One cursor write per rendered turn: the end of a turn writes at once; a rendered (or
        // skipped) event waits at most RENDERED_SETTLE for the turn to end, and is written before
        // any later event may render, so a crash repeats at most that turn's events; events that
        // render nothing are coalesced to one write a second.
        let cursor = &self.cursor;
        let write_now = items.is_empty()
            && (self.idle_since.is_some()
                || (!cursor.pending_rendered && cursor.last_write.elapsed() >= CURSOR_COALESCE));
        if write_now {
            self.flush().await;
        }
        ControlFlow::Continue(())
    }

    /// The cursor after an event's render: a shown event's message becomes the chat's last one;
    /// a skipped event is counted and logged, and moves the cursor like a rendered one.
    fn settle(&mut self, event: &SessionEvent, rendered: Result<Rendered, RenderError>, attempts: u32) {
        let cursor = &mut self.cursor;
        cursor.pending = Some(event.sequence);
        match rendered {
            Ok(rendered) if rendered.handled => {
                if rendered.last_chat_message_id.is_some() {
                    cursor.last_chat_message_id = rendered.last_chat_message_id;
                }
                cursor.pending_rendered = true;
            }
            Ok(_) => {}
            Err(error) => {
                let metrics = &self.sessions.metrics;
                metrics.increment(Stat::Errors);
                metrics.increment(Stat::DroppedSessionEvents);
                metrics.increment(Stat::SessionRenderDeadLetters);
                tracing::warn!(sequence = event.sequence, event_type = %event.event_type, attempts, error = %crate::config::redact::redact_text(&error.message), "session event skipped after failed renders");
                cursor.pending_rendered = true;
            }
        }
    }
}

/// Renders one event and carries the plan out, trying again in place while it fails
/// transiently (or is rate-limited) within the budget, so no later event overtakes it. The plan
/// is decided once; each try resumes it where the last one stopped (see [`Progress`]), so a
/// retry never shows again what already went out. Returns the outcome and the tries it took.
async fn render_with_retries(
    sessions: &Sessions,
    context: &PlanContext<'_>,
    state: &mut RenderState,
    event: &SessionEvent,
) -> (Result<Rendered, RenderError>, u32) {
    let artifact_url = |artifact_id: &str| context.client.artifact_url(&context.binding.binding_id, artifact_id);
    let render = RenderContext { capabilities: context.provider.capabilities(), artifact_url: &artifact_url };
    let plan = render_event(&render, state, event);
    let mut progress = Progress::default();
    let first_try = Instant::now();
    let mut attempt = 1;
    loop {
        // Boxed: rendering is rare next to waiting, and inline its state would size every idle
        // stream's task for the largest render.
        match Box::pin(carry_out(context, state, &plan, &mut progress)).await {
            Ok(rendered) => return (Ok(rendered), attempt),
            // The channel said how long to wait: wait exactly that and try the same event again.
            // Not a failed attempt; later events still wait their turn.
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
            Err(error) => return (Err(error), attempt),
        }
    }
}

/// Counts a render that sent something, failed or was retried as one outbound attempt and its
/// outcome; an event that rendered nothing at the first try is not a message.
fn record_render(metrics: &Metrics, kind: &'static str, rendered: &Result<Rendered, RenderError>, attempts: u32) {
    if attempts > 1 || rendered.as_ref().is_ok_and(|r| r.handled) || rendered.is_err() {
        metrics.record_channel_message(kind, Direction::Outbound, Outcome::Attempt, None);
        let outcome = match rendered {
            Ok(_) => Outcome::Success,
            Err(error) if error.transient => Outcome::Retry,
            Err(_) => Outcome::Error,
        };
        metrics.record_channel_message(kind, Direction::Outbound, outcome, None);
    }
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
        sessions.registry.settled(&entry.provider_id).await;
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
                shared: Rc::new(StreamShared::default()),
                generation: 0,
            },
        );
    }

    /// A reply split in three messages: the second send fails with a 502, the third meets a rate
    /// limit. The retries resume the plan, so the chat shows each part once, in order.
    #[tokio::test(start_paused = true)]
    async fn retried_renders_resume_where_they_stopped() {
        use crate::channel::{Capabilities, SendErrorKind};
        use crate::render::Plan;
        use crate::runtime::scripted_channel::ScriptedChannel;
        let sessions = test_sessions();
        let capabilities = Capabilities::text_only(100);
        let content: String = (10..40).map(|n| format!("word{n} ")).collect();
        let event: SessionEvent = serde_json::from_value(serde_json::json!({"sessionId": "s1", "sequence": 1,
            "type": "assistant.message", "payload": {"messageId": "a1", "content": content}}))
        .unwrap();
        let mut state = RenderState::default();
        let parts = crate::render::plan::message_texts(&capabilities, content.trim());
        assert_eq!(parts.len(), 3, "{parts:?}");
        let provider = ScriptedChannel::new(capabilities);
        provider.refuse_once(&parts[1], SendErrorKind::Transient);
        provider.refuse_once(&parts[2], SendErrorKind::RateLimited(Duration::from_secs(3)));
        let binding: SessionBindingRecord = serde_json::from_value(serde_json::json!({"bindingId": "b1",
            "channelBindingId": "c1", "sessionId": "s1", "provider": "cli", "externalChatId": "chat",
            "externalThreadId": "chat"}))
        .unwrap();
        let target = ChannelTarget { chat_id: "chat".into(), ..ChannelTarget::default() };
        let context = PlanContext { client: &sessions.client, provider: &provider, binding: &binding, target };
        let started = Instant::now();
        let (rendered, attempts) = render_with_retries(&sessions, &context, &mut state, &event).await;
        assert_eq!(rendered.map(|r| r.last_chat_message_id), Ok(Some("m5".into())));
        let sends: Vec<String> = provider.calls().iter().map(|c| c.replace(" thread=None reply_to=None", "")).collect();
        let send = |n: usize| format!("send {}", parts[n]);
        let expected = [send(0), format!("refused {}", send(1)), send(1), format!("refused {}", send(2)), send(2)];
        assert_eq!(sends, expected, "no part sent twice");
        assert_eq!(attempts, 2, "the rate limit is a wait, not a failed try");
        assert_eq!(started.elapsed(), retry_pause(1) + Duration::from_secs(3), "the pause, then the asked wait");
        assert_eq!(sessions.metrics.get(Stat::SessionRenderRetries), 1);
        assert_eq!(sessions.metrics.get(Stat::SessionRenderDelays), 1);
        let again = RenderContext { capabilities: provider.capabilities(), artifact_url: &|id| id.into() };
        assert_eq!(render_event(&again, &state, &event), Plan::Nothing { message_id: Some("m5".into()) });
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
