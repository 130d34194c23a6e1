//! SIGTERM and SIGINT through signal-hook: the handler only writes a byte to a socket pair
//! (async-signal-safe); a task on the runtime reads it and turns it into a [`StopRequest`].
//!
//! SIGHUP (a closed terminal, or an operator's `kill -HUP` or `systemctl reload` habit) would end
//! the process without a drain by default. The gateway reloads nothing (its configuration shapes
//! every task; a restart drains cleanly and resumes from Cloud), so SIGHUP is logged and ignored.

use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
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
    hangups: UnixStream,
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
        let (hangups, hangup_writer) = StdUnixStream::pair()?;
        hangups.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(SIGHUP, hangup_writer)?;
        Ok(Self { reader: UnixStream::from_std(reader)?, hangups: UnixStream::from_std(hangups)?, received: 0 })
    }

    /// Waits for the next stop signal; a SIGHUP meanwhile is logged and ignored.
    pub async fn next(&mut self) -> StopRequest {
        let (mut stop, mut hangup) = ([0u8; 1], [0u8; 1]);
        loop {
            tokio::select! {
                // A read error would mean the pipe is broken; treat it as a request to stop rather than spin.
                _ = self.reader.read(&mut stop) => break,
                read = self.hangups.read(&mut hangup) => {
                    if !matches!(read, Ok(1)) {
                        break;
                    }
                    tracing::info!("SIGHUP received and ignored: the gateway does not reload its configuration; restart it to apply changes (it drains first)");
                }
            }
        }
        self.received += 1;
        if self.received == 1 {
            StopRequest::Drain
        } else {
            StopRequest::Immediate
        }
    }
}
