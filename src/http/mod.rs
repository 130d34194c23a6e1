//! The operator and webhook HTTP surface.

pub mod admin;
pub mod body;
pub mod client_ip;
pub mod operator;
pub mod rate_limit;
pub mod response;
pub mod router;
pub mod server;
pub mod state;
pub mod status;
pub mod webhook;
