//! Channel health, kept separately for receiving (a poller, a webhook registration) and for
//! sending (the token works, the delivery circuit is closed): a bot whose poller is in a 409
//! conflict can still send, and the delivery path needs to tell the two apart.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::sync::watch;

/// A problem, as the operator reads it in `/ready` and `/diagnostics`; `None` is healthy.
type Problem = Option<String>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct State {
    receiving: Problem,
    sending: Problem,
    /// The delivery circuit breaker's reason while it is open (set by the runtime, not the channel).
    circuit: Problem,
    /// The channel could not finish starting (a rejected token, a refused webhook registration).
    start_failed: bool,
    /// The channel is still starting (checking its token with the platform): it neither sends nor
    /// counts as started, so no delivery is claimed for it before the platform said yes.
    starting: Problem,
}

/// A snapshot of one channel's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHealth {
    pub receiving: Problem,
    pub sending: Problem,
    /// The delivery circuit is open (then `sending` holds its reason).
    pub circuit_open: bool,
}

impl ChannelHealth {
    pub fn is_healthy(&self) -> bool {
        self.receiving.is_none() && self.sending.is_none()
    }

    /// The first problem, for the single `error` field of the status JSON.
    pub fn problem(&self) -> Option<&str> {
        self.sending.as_deref().or(self.receiving.as_deref())
    }
}

/// Bumped on every health change of any channel, so the delivery subscription can follow which
/// channels can send without polling.
pub type HealthChanges = Rc<watch::Sender<u64>>;

/// The shared health cell of one registration. The channel writes through its
/// [`HealthReporter`]; the registry and the delivery circuit read and write the rest.
#[derive(Debug, Clone)]
pub struct HealthCell {
    state: Rc<RefCell<State>>,
    changes: HealthChanges,
}

impl Default for HealthCell {
    fn default() -> Self {
        Self::new(Rc::new(watch::channel(0).0))
    }
}

impl HealthCell {
    pub fn new(changes: HealthChanges) -> Self {
        Self { state: Rc::default(), changes }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let changed = {
            let mut state = self.state.borrow_mut();
            let before = state.clone();
            change(&mut state);
            *state != before
        };
        if changed {
            self.changes.send_modify(|version| *version = version.wrapping_add(1));
        }
    }

    pub fn reporter(&self) -> HealthReporter {
        HealthReporter(self.clone())
    }

    pub fn snapshot(&self) -> ChannelHealth {
        let state = self.state.borrow();
        ChannelHealth {
            receiving: state.starting.clone().or(state.receiving.clone()),
            sending: state.starting.clone().or(state.sending.clone()).or(state.circuit.clone()),
            circuit_open: state.circuit.is_some() && state.starting.is_none() && state.sending.is_none(),
        }
    }

    /// Opens (`Some(reason)`) or closes (`None`) the delivery circuit.
    pub fn set_circuit(&self, reason: Problem) {
        self.update(|state| state.circuit = reason);
    }

    /// Forgets everything (the channel stopped).
    pub fn reset(&self) {
        self.update(|state| *state = State::default());
    }

    /// Whether the channel said its start failed (it then counts as not started).
    pub fn start_failed(&self) -> bool {
        self.state.borrow().start_failed
    }

    /// Whether the channel is still checking its credentials (it then counts as not started).
    pub fn is_starting(&self) -> bool {
        self.state.borrow().starting.is_some()
    }
}

/// The channel's handle on its own health.
#[derive(Debug, Clone)]
pub struct HealthReporter(HealthCell);

impl HealthReporter {
    /// Receiving works (`None`) or why it does not.
    pub fn set_receiving(&self, problem: Problem) {
        self.0.update(|state| state.receiving = problem);
    }

    /// Sending works (`None`) or why it does not (a rejected token).
    pub fn set_sending(&self, problem: Problem) {
        self.0.update(|state| state.sending = problem);
    }

    /// The channel's start has work left that the platform must answer first (a token check):
    /// until [`HealthReporter::started`], it counts as not started and claims no delivery.
    pub fn starting(&self, reason: String) {
        self.0.update(|state| state.starting = Some(reason));
    }

    /// The platform accepted the channel: it is started.
    pub fn started(&self) {
        self.0.update(|state| state.starting = None);
    }

    /// The channel cannot start at all (`reason` for both directions): it reports `started: false`
    /// and its provider state is `failed`, as for a channel that could not be built.
    pub fn fail_start(&self, reason: String) {
        self.0.update(|state| {
            state.receiving = Some(reason.clone());
            state.sending = Some(reason);
            state.start_failed = true;
            state.starting = None;
        });
    }

    /// The same problem (or recovery) for both directions, e.g. a token the platform rejects.
    pub fn set_both(&self, problem: Problem) {
        self.set_receiving(problem.clone());
        self.set_sending(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiving_and_sending_are_reported_apart_and_the_circuit_counts_as_sending() {
        let changes: HealthChanges = Rc::new(watch::channel(0).0);
        let mut seen = changes.subscribe();
        let cell = HealthCell::new(Rc::clone(&changes));
        let reporter = cell.reporter();
        assert!(cell.snapshot().is_healthy());
        reporter.set_receiving(Some("conflict: another poller".into()));
        assert!(seen.has_changed().unwrap(), "a change is signalled");
        seen.mark_unchanged();
        reporter.set_receiving(Some("conflict: another poller".into()));
        assert!(!seen.has_changed().unwrap(), "repeating the same state is not a change");
        let health = cell.snapshot();
        assert_eq!(health.sending, None, "a poller conflict does not stop sends");
        assert_eq!(health.problem(), Some("conflict: another poller"));
        reporter.set_receiving(None);
        cell.set_circuit(Some("circuit open".into()));
        assert_eq!(cell.snapshot().sending.as_deref(), Some("circuit open"));
        reporter.set_both(Some("auth: rejected".into()));
        assert_eq!(cell.snapshot().problem(), Some("auth: rejected"));
        reporter.fail_start("auth: rejected".into());
        assert!(cell.start_failed());
        cell.reset();
        assert!(cell.snapshot().is_healthy() && !cell.start_failed());
    }

    #[test]
    fn a_starting_channel_neither_sends_nor_counts_as_started_until_the_platform_said_yes() {
        let cell = HealthCell::default();
        let reporter = cell.reporter();
        reporter.starting("checking the token".into());
        assert!(cell.is_starting());
        assert_eq!(cell.snapshot().sending.as_deref(), Some("checking the token"));
        reporter.started();
        assert!(!cell.is_starting() && cell.snapshot().is_healthy());
        cell.set_circuit(Some("circuit open".into()));
        assert!(cell.snapshot().circuit_open);
        reporter.starting("again".into());
        reporter.fail_start("rejected".into());
        assert!(!cell.is_starting() && cell.start_failed(), "a failed start is no longer starting");
    }
}
