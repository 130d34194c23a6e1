//! Shutdown as data flow: one drain signal fans out to every task, and every piece of in-flight
//! work holds a [`WorkGuard`]; the daemon waits until the last guard is dropped or the drain
//! deadline passes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

#[derive(Default)]
struct WorkTracker {
    in_flight: Cell<usize>,
    idle: Notify,
}

/// The owner side: starts the drain and waits for work to finish. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    drain: Rc<watch::Sender<bool>>,
    work: Rc<WorkTracker>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self { drain: Rc::new(watch::channel(false).0), work: Rc::default() }
    }

    /// Starts the drain; idempotent.
    pub fn begin_drain(&self) {
        self.drain.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// A receiver that resolves once the drain starts.
    pub fn signal(&self) -> DrainSignal {
        DrainSignal(self.drain.subscribe())
    }

    /// Marks a piece of work as in flight until the guard is dropped.
    pub fn work_guard(&self) -> WorkGuard {
        self.work.in_flight.set(self.work.in_flight.get() + 1);
        WorkGuard(Rc::clone(&self.work))
    }

    pub fn in_flight(&self) -> usize {
        self.work.in_flight.get()
    }

    /// Waits until no work is in flight, or `deadline` passes. Returns whether all work finished.
    pub async fn wait_for_work(&self, deadline: Duration) -> bool {
        let all_done = async {
            loop {
                let idle = self.work.idle.notified();
                if self.work.in_flight.get() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(deadline, all_done).await.is_ok()
    }
}

/// Held by in-flight work; dropping the last one wakes the drain.
pub struct WorkGuard(Rc<WorkTracker>);

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let remaining = self.0.in_flight.get().saturating_sub(1);
        self.0.in_flight.set(remaining);
        if remaining == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The task side of the drain signal.
#[derive(Clone)]
pub struct DrainSignal(watch::Receiver<bool>);

impl DrainSignal {
    /// Resolves once the drain has started (at once if it already has).
    pub async fn started(&mut self) {
        // An error means the owner is gone, which is a shutdown too.
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_guards_or_the_deadline() {
        let shutdown = Shutdown::new();
        assert!(shutdown.wait_for_work(Duration::from_secs(1)).await, "no work means done at once");

        let guard = shutdown.work_guard();
        let mut signal = shutdown.signal();
        shutdown.begin_drain();
        signal.started().await;
        assert!(shutdown.is_draining());
        assert!(!shutdown.wait_for_work(Duration::from_secs(1)).await, "a held guard runs into the deadline");

        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                tokio::task::spawn_local(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    drop(guard);
                });
                assert!(shutdown.wait_for_work(Duration::from_secs(60)).await);
            })
            .await;
        assert_eq!(shutdown.in_flight(), 0);
    }
}
