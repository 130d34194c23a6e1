//! Small helpers every layer may use; nothing here knows about Cloud, channels or HTTP routes.

pub mod base64;
pub mod console;
pub mod ct;
pub mod durable;
pub mod graphemes;
pub mod ids;
pub mod keyed_lanes;
pub mod maps;
pub mod percent;
#[cfg(test)]
pub mod test_logs;
