//! SIGTERM and SIGINT through signal-hook: the handler only writes a byte to a socket pair
//! (async-signal-safe); a task on the runtime reads it and turns it into a [`StopRequest`].

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;

use signal_hook::consts::{SIGINT, SIGTERM};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// What an operator asked for, counted across signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// The first SIGTERM/SIGINT: drain, then exit 0.
    Drain,
    /// A second signal while draining: exit at once.
    Immediate,
}

/// The receiving end of the signal pipe.
pub struct Signals {
    reader: UnixStream,
    received: u32,
}

impl Signals {
    /// Registers the handlers. Must run inside the runtime (the reader is a tokio socket).
    pub fn register() -> io::Result<Self> {
        let (reader, writer) = StdUnixStream::pair()?;
        reader.set_nonblocking(true)?;
        for signal in [SIGTERM, SIGINT] {
            signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
        }
        Ok(Self { reader: UnixStream::from_std(reader)?, received: 0 })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> StopRequest {
        let mut byte = [0u8; 1];
        // A read error would mean the pipe is broken; treat it as a request to stop rather than spin.
        let _ = self.reader.read(&mut byte).await;
        self.received += 1;
        if self.received == 1 {
            StopRequest::Drain
        } else {
            StopRequest::Immediate
        }
    }
}
