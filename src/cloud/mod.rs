//! Open Cowork Cloud as the gateway sees it: the typed HTTP client (one function per call, listed in
//! docs/cloud-calls.md), the incremental SSE parser, the two resubscribing streams, the error
//! classification and the records. [`DeliveryOperations`] is the slice the operator routes use,
//! so they can be tested against an in-memory store.

pub mod client;
pub mod clock;
pub mod error;
mod requests;
pub mod retry;
pub mod sse;
pub mod streams;
mod transport;
pub mod types;

use std::future::Future;
use std::pin::Pin;

use smol_str::SmolStr;

pub use types::{DeliveryRecord, DeliveryStatus};

/// A boxed future that stays on the current thread.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

pub use error::CloudError;

/// `listDeliveries` filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    pub delivery_id: Option<SmolStr>,
    pub status: Option<DeliveryStatus>,
    pub channel_binding_id: SmolStr,
    pub limit: u32,
}

/// The delivery calls behind `/deliveries*`. Retry and dead-letter are optional, as upstream's
/// client methods are; the routes answer 503 when an implementation lacks them.
pub trait DeliveryOperations {
    fn list_deliveries(&self, query: DeliveryQuery) -> LocalBoxFuture<'_, Result<Vec<DeliveryRecord>, CloudError>>;

    fn supports_retry(&self) -> bool;

    fn supports_dead_letter(&self) -> bool;

    /// `Ok(None)` when Cloud does not know the delivery.
    fn retry_delivery<'a>(
        &'a self,
        delivery_id: &'a str,
        channel_binding_id: &'a str,
    ) -> LocalBoxFuture<'a, Result<Option<DeliveryRecord>, CloudError>>;

    fn dead_letter_delivery<'a>(
        &'a self,
        delivery_id: &'a str,
        channel_binding_id: &'a str,
        last_error: Option<&'a str>,
    ) -> LocalBoxFuture<'a, Result<Option<DeliveryRecord>, CloudError>>;
}

#[cfg(test)]
#[cfg(feature = "devcloud")]
mod tests;
