//! A loopback TCP proxy that can black-hole its connections: while black-holed it keeps every
//! socket open and accepts new ones, but copies no byte in either direction, which is what a
//! half-open connection looks like to both ends (no FIN, no RST, no error, just silence). Bytes
//! sent meanwhile wait in the kernel buffers and flow again when the proxy resumes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct BlackholeProxy {
    address: SocketAddr,
    /// `true` while bytes are copied. Dropping it ends every pump (they see the sender gone).
    forwarding: watch::Sender<bool>,
    accepted: Rc<Cell<usize>>,
    accept_loop: JoinHandle<()>,
}

impl BlackholeProxy {
    /// Listens on an ephemeral loopback port and forwards every connection to `upstream`.
    /// Must run inside a `LocalSet`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (forwarding, _) = watch::channel(true);
        let accepted = Rc::new(Cell::new(0));
        let accept_loop = {
            let forwarding = forwarding.subscribe();
            let accepted = Rc::clone(&accepted);
            tokio::task::spawn_local(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else { return };
                    accepted.set(accepted.get() + 1);
                    // Connect upstream right away, black-holed or not: the TCP handshake with
                    // the proxy succeeded, so to the client the path looks open.
                    let Ok(server) = TcpStream::connect(upstream).await else { continue };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::task::spawn_local(pump(client_read, server_write, forwarding.clone()));
                    tokio::task::spawn_local(pump(server_read, client_write, forwarding.clone()));
                }
            })
        };
        Self { address, forwarding, accepted, accept_loop }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops copying bytes, both ways, on every connection, present and future.
    pub fn black_hole(&self) {
        self.forwarding.send_replace(false);
    }

    /// Copies bytes again; what waited in the buffers goes through first.
    pub fn resume(&self) {
        self.forwarding.send_replace(true);
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.get()
    }
}

impl Drop for BlackholeProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Copies `from` into `to` while forwarding is on. While it is off nothing is read, so the bytes
/// stay in the kernel and the sender sees neither an error nor progress.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut forwarding: watch::Receiver<bool>) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        if forwarding.wait_for(|on| *on).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = forwarding.wait_for(|on| !*on) => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
