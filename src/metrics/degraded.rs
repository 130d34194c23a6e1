//! `open_cowork_gateway_degraded{reason}`: 1 while the gateway runs but something an operator
//! should look at holds (a second poller on the same bot, a poll loop that stopped answering,
//! Cloud refusing session streams, a channel's send circuit open), else 0. Every reason is always
//! exported, so an alert on one of them has a series to evaluate from the first scrape on.

/// A reason the gateway is degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    PollingConflict,
    PollStalled,
    SessionStreamRefused,
    SendCircuitOpen,
}

impl Degraded {
    pub const ALL: [Degraded; 4] =
        [Self::PollingConflict, Self::PollStalled, Self::SessionStreamRefused, Self::SendCircuitOpen];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PollingConflict => "polling_conflict",
            Self::PollStalled => "poll_stalled",
            Self::SessionStreamRefused => "session_stream_refused",
            Self::SendCircuitOpen => "send_circuit_open",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}
