//! Outbound networking shared by the Cloud client and the providers.

pub(crate) mod backoff;
pub mod https;
pub mod retry_after;
pub mod url_policy;
