//! The gateway as the binary in a child process whose stdin and stdout the test holds: the way
//! to drive the CLI channel, which reads its input from stdin and writes JSON lines to stdout.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{command, TempDir};

/// The test's ends of the child's pipes: what it writes to stdin, what it printed to stdout.
#[derive(Default)]
pub struct ChildIo {
    stdin: RefCell<Option<ChildStdin>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl ChildIo {
    /// Writes one line to the running child's stdin.
    pub fn write_line(&self, line: &str) {
        let mut stdin = self.stdin.borrow_mut();
        let stdin = stdin.as_mut().expect("the child gateway is running");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Every stdout line so far, from every child started with these pipes.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}

/// A running child gateway; killed (SIGKILL, no drain) on drop.
pub struct ChildGateway {
    child: Child,
    pub address: SocketAddr,
    _dir: TempDir,
}

impl ChildGateway {
    /// Starts the binary with exactly `settings` as its environment and waits for its
    /// "listening on" line, then for `/ready`.
    pub async fn start(settings: &[(&str, &str)], io: &ChildIo) -> Self {
        let dir = TempDir::new("child-gateway");
        let mut child = command(&dir.0, settings)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the gateway binary");
        *io.stdin.borrow_mut() = child.stdin.take();
        let before = io.stdout().len();
        let lines = Arc::clone(&io.stdout);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let listening = "Open Cowork gateway listening on http://";
        let port =
            || io.stdout()[before..].iter().find_map(|l| l.strip_prefix(listening)?.rsplit(':').next()?.parse().ok());
        super::eventually("the listening line", || port().is_some()).await;
        let gateway = Self { child, address: SocketAddr::from(([127, 0, 0, 1], port().unwrap())), _dir: dir };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        let http = open_cowork_gateway::net::https::build_client(None).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let request = http::Request::get(format!("http://{}/ready", self.address))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            if http.request(request).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the child gateway never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
