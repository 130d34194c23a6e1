//! The running gateway's pipelines: the ingress queue's chat lanes ([`lanes`]) and the inbound
//! path each message takes ([`inbound`]), a webhook message's receipt on arrival ([`receipt`])
//! and the journal of webhook messages answered before their claim ([`journal`]), button presses
//! and fallback commands ([`interactions`]), ordered session streams ([`sessions`]) and the
//! carrying out of their render plans ([`plan_executor`]), the delivery
//! dispatcher ([`deliveries`]), readiness from named conditions ([`readiness`]) and the state
//! file ([`state`]). Each gets the narrow handles it needs from the wiring (`app.rs`); nothing
//! here names a channel kind.

pub mod deliveries;
pub mod inbound;
pub mod interactions;
pub mod journal;
pub mod lanes;
pub mod plan_executor;
pub mod readiness;
pub mod receipt;
#[cfg(test)]
mod scripted_channel;
pub mod sessions;
pub mod state;

pub use readiness::Readiness;
