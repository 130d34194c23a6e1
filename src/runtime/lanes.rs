//! The ingress queue's consumer: chat lanes with bounded concurrency. Up to
//! [`MAX_CHATS_IN_FLIGHT`] chats are processed at once, each chat's messages strictly one after
//! another in arrival order (`runtime::inbound` runs each one). A webhook's message gets its
//! receipt on arrival, not in its chat's turn (`runtime::receipt`): written to the inbound journal
//! (with a state directory) or claimed in Cloud, and its webhook answered then, while its place in
//! the chat's lane is taken at once, so the order holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use smol_str::SmolStr;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

use super::inbound::Inbound;
use super::receipt::Receipt;
use crate::channel::ingress::{InboundItem, IngressReceiver};
use crate::shutdown::Shutdown;

/// Chats processed at the same time; a chat's own messages never overlap.
pub const MAX_CHATS_IN_FLIGHT: usize = 32;
/// Messages taken from the queue but waiting for their chat's turn, across all chats.
pub(super) const MAX_WAITING: usize = 1024;
/// Webhook receipts (journal writes or Cloud claims) at work at the same time.
const MAX_RECEIPTS_IN_FLIGHT: usize = 32;

/// A chat: messages with the same key are processed in order, one at a time.
type ChatKey = (SmolStr, String, Option<String>);

fn chat_key(item: &InboundItem) -> ChatKey {
    let target = &item.message.target;
    (item.provider_id.clone(), target.chat_id.clone(), target.thread_id.clone())
}

/// A message in its chat's lane.
pub(super) enum Queued {
    /// A poller's, the CLI's or a journal replay's: claimed in its turn.
    Ready(Box<InboundItem>),
    /// A webhook's, whose receipt (journal or claim) runs on arrival; the item comes back with it.
    Receiving(oneshot::Receiver<(InboundItem, Receipt)>),
}

/// Takes an item in: a webhook's gets its receipt started now, off the lane.
fn take_in(inbound: &Inbound, receipts: &mut Receipts, shutdown: &Shutdown, mut item: InboundItem) -> Queued {
    let Some(answer) = item.claimed.take() else { return Queued::Ready(Box::new(item)) };
    let (done, receiving) = oneshot::channel();
    let (inbound, work, slots) = (inbound.clone(), shutdown.work_guard(), Rc::clone(&receipts.slots));
    receipts.tasks.spawn_local(async move {
        // The semaphore is never closed; without a permit the receipt would still be bounded
        // by the lanes' own limit.
        let _slot = slots.acquire().await.ok();
        let receipt = inbound.receive(&item.provider_id, &item.message, answer).await;
        let _ = done.send((item, receipt));
        drop(work);
    });
    Queued::Receiving(receiving)
}

/// The receipts being made: each a task, at most [`MAX_RECEIPTS_IN_FLIGHT`] of them at work (the
/// rest wait for a slot), so a burst of webhooks cannot open a thousand Cloud claims or journal
/// writes on the blocking pool at once.
struct Receipts {
    tasks: JoinSet<()>,
    slots: Rc<Semaphore>,
}

/// Drains the ingress queue until it closes (every producer gone) and the waiting work is done.
/// Each processed item holds a drain work guard, so SIGTERM waits for it.
/// The items in progress belong to this task: when it is aborted (a crash, in tests), they end
/// with it, mid-pipeline, exactly as a killed process would leave them.
pub async fn run_ingress(inbound: Inbound, mut queue: IngressReceiver, shutdown: Shutdown) {
    let mut in_progress: JoinSet<()> = JoinSet::new();
    let mut receipts = Receipts { tasks: JoinSet::new(), slots: Rc::new(Semaphore::new(MAX_RECEIPTS_IN_FLIGHT)) };
    let mut chats_in_progress: HashMap<tokio::task::Id, ChatKey> = HashMap::new();
    let mut waiting: HashMap<ChatKey, VecDeque<Queued>> = HashMap::new();
    let mut ready: VecDeque<ChatKey> = VecDeque::new();
    let mut busy: HashSet<ChatKey> = HashSet::new();
    let mut waiting_total = 0usize;
    let mut drain = shutdown.signal();
    let mut open = true;
    loop {
        if !open && busy.is_empty() && ready.is_empty() && receipts.tasks.is_empty() {
            break;
        }
        tokio::select! {
            item = queue.recv(), if open && waiting_total < MAX_WAITING => match item {
                None => open = false,
                Some(item) => {
                    let key = chat_key(&item);
                    let lane = waiting.entry(key.clone()).or_default();
                    lane.push_back(take_in(&inbound, &mut receipts, &shutdown, item));
                    waiting_total += 1;
                    if lane.len() == 1 && !busy.contains(&key) {
                        ready.push_back(key);
                    }
                }
            },
            Some(_) = receipts.tasks.join_next(), if !receipts.tasks.is_empty() => {}
            Some(done) = in_progress.join_next_with_id(), if !in_progress.is_empty() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(error) => {
                        tracing::error!(%error, "an inbound pipeline task ended abnormally");
                        error.id()
                    }
                };
                let Some(key) = chats_in_progress.remove(&id) else { continue };
                busy.remove(&key);
                if waiting.get(&key).is_some_and(|lane| !lane.is_empty()) {
                    ready.push_back(key);
                } else {
                    waiting.remove(&key);
                }
            }
            _ = drain.started(), if open => {
                // Intake is closed. What is still queued was never taken in: dropping it answers
                // its webhooks 503. Pollers' and replays' messages waiting for their turn were not
                // claimed: the platform (or the journal) hands them to the next process. Webhooks
                // taken in were answered (journaled or claimed): they are finished.
                open = false;
                queue.close();
                while queue.try_recv().is_ok() {}
                for lane in waiting.values_mut() {
                    lane.retain(|queued| matches!(queued, Queued::Receiving(_)));
                }
                waiting.retain(|_, lane| !lane.is_empty());
                ready.retain(|key| waiting.get(key).is_some_and(|lane| !lane.is_empty()));
                waiting_total = waiting.values().map(VecDeque::len).sum();
            }
        }
        while busy.len() < MAX_CHATS_IN_FLIGHT {
            let Some(key) = ready.pop_front() else { break };
            let Some(queued) = waiting.get_mut(&key).and_then(VecDeque::pop_front) else { continue };
            waiting_total -= 1;
            busy.insert(key.clone());
            let (inbound, work) = (inbound.clone(), shutdown.work_guard());
            let task = in_progress.spawn_local(async move {
                inbound.handle_queued(queued).await;
                drop(work);
            });
            chats_in_progress.insert(task.id(), key);
        }
    }
}
