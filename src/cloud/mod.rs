//! What the gateway asks of Open Cowork Cloud. This module holds the delivery-operations
//! interface the operator routes call (spec §2.10) and the records it returns; the HTTP Cloud
//! client implements it.

pub mod types;

use std::future::Future;
use std::pin::Pin;

use smol_str::SmolStr;

pub use types::{DeliveryRecord, DeliveryStatus};

/// A boxed future that stays on the current thread.
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A failed Cloud call, as far as the operator routes need it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cloud request failed: {message}")]
pub struct CloudError {
    /// HTTP status, or `None` for a network failure or timeout.
    pub status: Option<u16>,
    /// Cloud's `error` text or the transport error; shown to operators only after redaction.
    pub message: String,
}

/// `listDeliveries` filters (cloud-api.md §3.14).
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
