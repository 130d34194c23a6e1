//! Small helpers every layer may use; nothing here knows about Cloud, channels or HTTP routes.

pub mod args;
pub mod base64;
pub mod console;
pub mod ct;
pub mod durable;
pub mod graphemes;
pub mod hex;
pub mod ids;
pub mod keyed_lanes;
pub mod maps;
pub mod percent;
#[cfg(any(feature = "webhook", feature = "slack"))]
pub mod recent;
#[cfg(test)]
pub mod test_logs;
