//! Each channel's side of the battery: its fake platform server behind [`super::platform::Platform`].

pub mod cli;
pub mod email;
pub mod relay;
pub mod slack;
pub mod telegram;
