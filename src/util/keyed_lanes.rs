//! A keyed-lane scheduler: items with the same key run strictly one after another, in the order
//! they came; items of different keys run side by side, up to a cap on the keys whose turn is
//! taken. The items waiting for their turn are bounded: a full scheduler refuses a new item and
//! hands it back rather than growing. Once a drain begins it refuses every new item and hands back
//! the waiting ones its owner does not keep; the kept ones still run, in order.
//!
//! "Decide, then do": [`KeyedLanes::next_turn`] decides whose turn it is (the head of the
//! longest-ready lane, while under the cap); the owner then runs that item as a task the
//! scheduler owns ([`KeyedLanes::run`]) or ends the turn at once without running it
//! ([`KeyedLanes::end_turn`]). [`KeyedLanes::finished`] waits for a task to end and frees its lane.
//! The tasks belong to the scheduler: dropping it (its owner's task aborted) aborts them, as a
//! killed process would leave them. Tasks are `spawn_local`ed, so the scheduler runs in a
//! `LocalSet`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;

use tokio::task::{Id, JoinError, JoinSet};

/// Per-key FIFO lanes with a concurrency cap and a bound on what waits.
pub struct KeyedLanes<K, T> {
    /// Each key's items waiting for their turn, oldest first (only non-empty lanes are kept).
    lanes: HashMap<K, VecDeque<T>>,
    /// Keys with a waiting item and no turn taken, in the order they became ready.
    ready: VecDeque<K>,
    /// Keys whose turn is taken: their item runs (or the owner is about to run it).
    in_turn: HashSet<K>,
    tasks: JoinSet<()>,
    task_keys: HashMap<Id, K>,
    waiting: usize,
    max_in_turn: usize,
    max_waiting: usize,
    draining: bool,
}

/// Why an item was not taken; the item comes back with the reason.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<T> {
    /// As many items as the bound allows already wait.
    Full(T),
    /// The drain has begun: nothing new is taken.
    Draining(T),
}

impl<T> Refused<T> {
    pub fn into_item(self) -> T {
        match self {
            Refused::Full(item) | Refused::Draining(item) => item,
        }
    }
}

impl<K: Clone + Eq + Hash + 'static, T> KeyedLanes<K, T> {
    /// At most `max_in_turn` keys take their turn at once; at most `max_waiting` items wait.
    pub fn new(max_in_turn: usize, max_waiting: usize) -> Self {
        Self {
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            in_turn: HashSet::new(),
            tasks: JoinSet::new(),
            task_keys: HashMap::new(),
            waiting: 0,
            max_in_turn,
            max_waiting,
            draining: false,
        }
    }

    /// Items waiting for their turn.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// The bound on [`KeyedLanes::waiting`].
    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// Keys whose turn is taken (their items running).
    pub fn running(&self) -> usize {
        self.in_turn.len()
    }

    /// Whether another item would be taken now, the drain aside: an owner reads its source only
    /// then, so a full scheduler backs the source up instead of refusing.
    pub fn has_room(&self) -> bool {
        self.waiting < self.max_waiting
    }

    /// Nothing waits and nothing runs.
    pub fn is_idle(&self) -> bool {
        self.waiting == 0 && self.in_turn.is_empty()
    }

    /// Queues `item` behind the items of its key; refused (and handed back) when full or draining.
    pub fn push(&mut self, key: K, item: T) -> Result<(), Refused<T>> {
        if self.draining {
            return Err(Refused::Draining(item));
        }
        if !self.has_room() {
            return Err(Refused::Full(item));
        }
        let lane = self.lanes.entry(key.clone()).or_default();
        lane.push_back(item);
        self.waiting += 1;
        if lane.len() == 1 && !self.in_turn.contains(&key) {
            self.ready.push_back(key);
        }
        Ok(())
    }

    /// The next item whose turn it is, unless the cap is reached: its key's turn is taken from
    /// now until the owner ends it ([`KeyedLanes::end_turn`]) or the task given to
    /// [`KeyedLanes::run`] finishes.
    pub fn next_turn(&mut self) -> Option<(K, T)> {
        if self.in_turn.len() >= self.max_in_turn {
            return None;
        }
        loop {
            let key = self.ready.pop_front()?;
            let Some(lane) = self.lanes.get_mut(&key) else { continue };
            let Some(item) = lane.pop_front() else { continue };
            if lane.is_empty() {
                self.lanes.remove(&key);
            }
            self.waiting -= 1;
            self.in_turn.insert(key.clone());
            return Some((key, item));
        }
    }

    /// Runs the item whose turn `key` took as a task of the scheduler's; the turn ends with it.
    pub fn run(&mut self, key: K, work: impl Future<Output = ()> + 'static) {
        let task = self.tasks.spawn_local(work);
        self.task_keys.insert(task.id(), key);
    }

    /// Ends `key`'s turn without (or after) running anything: its next item becomes ready.
    pub fn end_turn(&mut self, key: &K) {
        if self.in_turn.remove(key) && self.lanes.contains_key(key) {
            self.ready.push_back(key.clone());
        }
    }

    /// Waits for a running task to end, ends its key's turn and returns the key, with the task's
    /// panic if it had one. `None` when no task runs.
    pub async fn finished(&mut self) -> Option<(K, Result<(), JoinError>)> {
        loop {
            let (id, ended) = match self.tasks.join_next_with_id().await? {
                Ok((id, ())) => (id, Ok(())),
                Err(error) => (error.id(), Err(error)),
            };
            let Some(key) = self.task_keys.remove(&id) else { continue };
            self.end_turn(&key);
            return Some((key, ended));
        }
    }

    /// Begins the drain: from now on every new item is refused. Returns the waiting items `keep`
    /// does not keep (in their lanes' order); the kept ones stay and take their turns as before.
    pub fn drain(&mut self, mut keep: impl FnMut(&T) -> bool) -> Vec<T> {
        self.draining = true;
        let mut handed_back = Vec::new();
        for lane in self.lanes.values_mut() {
            for item in std::mem::take(lane) {
                if keep(&item) {
                    lane.push_back(item);
                } else {
                    handed_back.push(item);
                }
            }
        }
        self.lanes.retain(|_, lane| !lane.is_empty());
        let lanes = &self.lanes;
        self.ready.retain(|key| lanes.contains_key(key));
        self.waiting -= handed_back.len();
        handed_back
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;
    use tokio::time::{sleep, Instant};

    /// What ran, as `(key, item, start, end)` in seconds since the test began.
    type Log = Rc<RefCell<Vec<(&'static str, u32, u64, u64)>>>;

    /// Starts every item whose turn it is: each sleeps `item` seconds and logs itself.
    fn start_all(lanes: &mut KeyedLanes<&'static str, u32>, log: &Log, began: Instant) {
        while let Some((key, item)) = lanes.next_turn() {
            let log = Rc::clone(log);
            lanes.run(key, async move {
                let start = began.elapsed().as_secs();
                sleep(Duration::from_secs(item.into())).await;
                log.borrow_mut().push((key, item, start, began.elapsed().as_secs()));
            });
        }
    }

    /// Runs the lanes until idle, starting what is ready after each task ends.
    async fn run_until_idle(lanes: &mut KeyedLanes<&'static str, u32>, log: &Log, began: Instant) {
        start_all(lanes, log, began);
        while lanes.finished().await.is_some() {
            start_all(lanes, log, began);
        }
        assert!(lanes.is_idle());
    }

    async fn local(test: impl Future<Output = ()>) {
        tokio::task::LocalSet::new().run_until(test).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_keys_items_run_in_order_one_at_a_time_and_keys_side_by_side_up_to_the_cap() {
        local(async {
            let (log, began) = (Log::default(), Instant::now());
            let mut lanes = KeyedLanes::new(2, 16);
            for (key, item) in [("a", 3), ("a", 1), ("b", 2), ("c", 1), ("b", 1)] {
                lanes.push(key, item).unwrap();
            }
            run_until_idle(&mut lanes, &log, began).await;
            let log = log.borrow();
            let of = |key| log.iter().filter(|e| e.0 == key).map(|e| (e.1, e.2, e.3)).collect::<Vec<_>>();
            assert_eq!(of("a"), [(3, 0, 3), (1, 3, 4)], "a's second item waits for its first");
            assert_eq!(of("c"), [(1, 2, 3)], "c waits for a free slot (two keys at once), then goes first");
            assert_eq!(of("b"), [(2, 0, 2), (1, 3, 4)], "b runs beside a; its second item queues behind c");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_scheduler_refuses_and_hands_the_item_back() {
        local(async {
            let mut lanes = KeyedLanes::new(1, 2);
            lanes.push("a", 1).unwrap();
            lanes.push("b", 2).unwrap();
            assert!(!lanes.has_room());
            assert_eq!(lanes.push("c", 3), Err(Refused::Full(3)));
            let (key, item) = lanes.next_turn().unwrap();
            assert_eq!((key, item), ("a", 1));
            assert!(lanes.next_turn().is_none(), "the cap of one is taken");
            assert!(lanes.has_room(), "a running item no longer waits");
            lanes.push("c", 3).unwrap();
            lanes.end_turn(&"a");
            assert_eq!(lanes.next_turn(), Some(("b", 2)), "ready lanes take turns in arrival order");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_waits_for_its_keys_turn_to_end_even_with_slots_free() {
        local(async {
            let mut lanes = KeyedLanes::new(4, 4);
            lanes.push("a", 1).unwrap();
            assert_eq!(lanes.next_turn(), Some(("a", 1)));
            lanes.push("a", 2).unwrap();
            lanes.push("b", 3).unwrap();
            assert_eq!(lanes.next_turn(), Some(("b", 3)));
            assert_eq!(lanes.next_turn(), None, "a's second item, queued during its turn, waits");
            lanes.end_turn(&"a");
            assert_eq!(lanes.next_turn(), Some(("a", 2)), "an ended turn without a task frees the lane");
            lanes.end_turn(&"a");
            lanes.end_turn(&"b");
            assert!(lanes.is_idle());
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_hands_back_what_is_not_kept_refuses_new_items_and_runs_the_rest() {
        local(async {
            let (log, began) = (Log::default(), Instant::now());
            let mut lanes = KeyedLanes::new(1, 16);
            for (key, item) in [("a", 2), ("a", 1), ("a", 4), ("b", 6), ("b", 3)] {
                lanes.push(key, item).unwrap();
            }
            start_all(&mut lanes, &log, began);
            let mut handed_back = lanes.drain(|item| item % 2 == 0);
            handed_back.sort_unstable();
            assert_eq!(handed_back, [1, 3], "odd items are not kept");
            assert_eq!(lanes.waiting(), 2);
            assert_eq!(lanes.push("c", 8), Err(Refused::Draining(8)));
            run_until_idle(&mut lanes, &log, began).await;
            let ran: Vec<_> = log.borrow().iter().map(|e| (e.0, e.1)).collect();
            assert_eq!(ran, [("a", 2), ("b", 6), ("a", 4)], "the running item ends; the kept ones take their turns");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_frees_its_lane_and_says_so() {
        local(async {
            let mut lanes = KeyedLanes::<&str, u32>::new(1, 4);
            lanes.push("a", 1).unwrap();
            lanes.push("a", 2).unwrap();
            let (key, _) = lanes.next_turn().unwrap();
            lanes.run(key, async { panic!("a task panics") });
            let (key, ended) = lanes.finished().await.unwrap();
            assert_eq!(key, "a");
            assert!(ended.is_err_and(|error| error.is_panic()));
            assert_eq!(lanes.next_turn(), Some(("a", 2)));
        })
        .await;
    }
}
