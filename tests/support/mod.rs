//! Helpers shared by the integration tests: start the real binary on an ephemeral loopback port,
//! talk to it with minimal HTTP/1.1 requests, and collect its output.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod blackhole_proxy;
#[cfg(feature = "devcloud")]
pub mod child_gateway;
#[cfg(feature = "devcloud")]
pub mod fake_gateway;
pub mod fake_slack;
pub mod fake_telegram;
pub mod logs;
pub mod smtp_sink;
#[cfg(feature = "devcloud")]
pub mod test_gateway;
pub mod webhook_receiver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_open-cowork-gateway");

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("ocg-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command for the binary with an empty environment and an empty working directory, so no
/// setting of the machine running the tests leaks in.
pub fn command(cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear().current_dir(cwd);
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// The smallest environment that passes every startup rule (fake provider, loopback).
pub fn base_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("OPEN_COWORK_CLOUD_BASE_URL", "http://127.0.0.1:9"),
        ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", "occ_gwtest_Service0Token0Value0123"),
        ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-Token-Value-For-Tests-42"),
        ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
        ("OPEN_COWORK_GATEWAY_PORT", "0"),
    ]
}

pub const ADMIN_TOKEN: &str = "admin-Token-Value-For-Tests-42";

/// A running gateway whose stdout and stderr are collected.
pub struct Gateway {
    pub child: Child,
    pub address: SocketAddr,
    stderr: mpsc::Receiver<String>,
    stdout: mpsc::Receiver<String>,
    pub _dir: TempDir,
}

fn pump(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Gateway {
    /// Starts the binary and waits for its "listening on" line.
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = TempDir::new("gw");
        let mut child = command(&dir.0, env)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        let stdout = pump(child.stdout.take().unwrap());
        let stderr = pump(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("Open Cowork gateway listening on http://") {
                        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
                        return Self {
                            child,
                            address: SocketAddr::from(([127, 0, 0, 1], port)),
                            stderr,
                            stdout,
                            _dir: dir,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let errors: Vec<String> = stderr.try_iter().collect();
                    panic!("gateway did not start: {errors:?}");
                }
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // The kill(1) utility keeps the tests free of unsafe libc calls.
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written so far to stdout and stderr.
    pub fn output(&self) -> String {
        let mut lines: Vec<String> = self.stdout.try_iter().collect();
        lines.extend(self.stderr.try_iter());
        lines.join("\n")
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        request(self.address, "GET", path, headers, b"")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), response read to the end.
pub fn request(address: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        address.port(),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    HttpResponse { status, headers, body: body.to_owned() }
}

/// A fake platform's JSON answer: `body` with `status` and a JSON content type.
pub fn json_response(status: u16, body: &serde_json::Value) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body.to_string())));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// Runs an in-process test (the dev Cloud, the gateway, fake platforms) on one current_thread
/// runtime, as the daemon runs.
pub fn run<F: std::future::Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, test);
}

/// [`run`] with tokio's clock paused: it moves only when every task waits, so delays are exact.
pub fn run_paused<F: std::future::Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, test);
}

/// Polls `condition` every 10 ms until it holds; fails the test after `limit`.
pub async fn eventually_within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually_within`] 20 seconds.
pub async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(Duration::from_secs(20), what, condition).await;
}
