//! The ingress queue's consumer: chat lanes with bounded concurrency (`util::keyed_lanes`). Up
//! to [`MAX_CHATS_IN_FLIGHT`] chats are processed at once, each chat's messages strictly one
//! after another in arrival order (`runtime::inbound` runs each one), at most [`MAX_WAITING`]
//! waiting for their turn. A webhook's message gets its
//! receipt on arrival, not in its chat's turn (`runtime::receipt`): written to the inbound journal
//! (with a state directory) or claimed in Cloud, and its webhook answered then, while its place in
//! the chat's lane is taken at once, so the order holds.

use std::rc::Rc;

use smol_str::SmolStr;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

use super::inbound::Inbound;
use super::receipt::Receipt;
use crate::channel::ingress::{InboundItem, IngressReceiver};
use crate::shutdown::Shutdown;
use crate::util::keyed_lanes::KeyedLanes;

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
    let mut chats = KeyedLanes::new(MAX_CHATS_IN_FLIGHT, MAX_WAITING);
    let mut receipts = Receipts { tasks: JoinSet::new(), slots: Rc::new(Semaphore::new(MAX_RECEIPTS_IN_FLIGHT)) };
    let mut drain = shutdown.signal();
    let mut open = true;
    loop {
        if !open && chats.is_idle() && receipts.tasks.is_empty() {
            break;
        }
        tokio::select! {
            // Read only while there is room, so a full set of lanes backs the queue up.
            item = queue.recv(), if open && chats.has_room() => match item {
                None => open = false,
                Some(item) => {
                    let chat = chat_key(&item);
                    let queued = take_in(&inbound, &mut receipts, &shutdown, item);
                    if chats.push(chat, queued).is_err() {
                        // Not reached: the queue is read only while there is room, and not after
                        // the drain began.
                        tracing::error!("an inbound message was refused by its chat's lane");
                    }
                }
            },
            Some(_) = receipts.tasks.join_next(), if !receipts.tasks.is_empty() => {}
            ended = chats.finished(), if chats.running() > 0 => {
                if let Some((_, Err(error))) = ended {
                    tracing::error!(%error, "an inbound pipeline task ended abnormally");
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
                chats.drain(|queued| matches!(queued, Queued::Receiving(_)));
            }
        }
        while let Some((chat, queued)) = chats.next_turn() {
            let (inbound, work) = (inbound.clone(), shutdown.work_guard());
            chats.run(chat, async move {
                inbound.handle_queued(queued).await;
                drop(work);
            });
        }
    }
}
