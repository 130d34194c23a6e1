//! The real binary against the fake Bot API: what a failing Telegram start writes to its logs.
//! The fake runs on its own thread (its own current_thread runtime and `LocalSet`, loopback only);
//! the binary's stdout and stderr are kept whole, from its first line.

#![cfg(feature = "telegram")]

use crate::support;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use support::fake_telegram::{self, FakeBot, Shared, TOKEN};
use support::{base_env, request, TempDir, ADMIN_TOKEN};

/// Secrets a Bot API error body could carry: a bearer token, an e-mail address, a project name in
/// a home path and a token in that path's query string.
const PLANTED: [&str; 4] = ["provider-token-0123456789abcdef", "alice@example.test", "acme", "secret-0123456789"];

/// Starts the fake Bot API on a thread of its own, scripted by `script`; returns its base URL and
/// a count of the `getMe` calls it has seen.
fn start_fake_bot(script: impl FnOnce(&mut FakeBot) + Send + 'static) -> (String, Arc<AtomicUsize>) {
    let (url_tx, url_rx) = mpsc::channel();
    let get_me = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&get_me);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, async move {
            let bot: Shared = Rc::new(RefCell::new(FakeBot::default()));
            script(&mut bot.borrow_mut());
            url_tx.send(fake_telegram::start(Rc::clone(&bot)).await).unwrap();
            // Serves until the test process ends.
            loop {
                seen.store(bot.borrow().calls("getMe").len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    });
    (url_rx.recv_timeout(Duration::from_secs(20)).unwrap(), get_me)
}

/// The binary, killed if the test fails before it exits.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every line of `stream`, sent on as it is read.
fn pump(stream: impl Read + Send + 'static, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

/// Reads lines into `log` until `done` holds for the log so far; panics after 20 s.
fn read_until(lines: &mpsc::Receiver<String>, log: &mut Vec<String>, what: &str, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(log) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(remaining.min(Duration::from_millis(100))) {
            Ok(line) => log.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => panic!("no {what} in the output:\n{}", log.join("\n")),
        }
    }
}

/// What one run of the binary showed while its bot's `getMe` failed with `description`.
struct FailedStart {
    /// Every stdout and stderr line, from the first to the exit after SIGTERM.
    log: Vec<String>,
    /// `/ready` as the admin sees it, after the failure was logged.
    ready: serde_json::Value,
    ready_body: String,
    get_me_calls: usize,
}

/// Runs the binary (debug logs on stderr, an unreachable loopback Cloud) against a fake Bot API
/// whose `getMe` answers 400 with `description`, until the failure is logged; then SIGTERM.
fn failed_start(description: String) -> FailedStart {
    let (bot_url, get_me) = start_fake_bot(move |bot| bot.error("getMe", 400, &description, None));
    let mut env = base_env();
    env.retain(|(key, _)| *key != "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER");
    env.extend([
        ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", TOKEN),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL", bot_url.as_str()),
        ("OPEN_COWORK_GATEWAY_LOG_LEVEL", "debug"),
    ]);
    let dir = TempDir::new("tg-logs");
    let mut child = support::command(&dir.0, &env)
        .args(["--log-format", "stderr"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let (tx, lines) = mpsc::channel();
    pump(child.stdout.take().unwrap(), tx.clone());
    pump(child.stderr.take().unwrap(), tx);
    let mut process = Process(child);
    let mut log = Vec::new();

    read_until(&lines, &mut log, "listening line", |log| log.iter().any(|l| l.contains("listening on http://")));
    let port: u16 = log
        .iter()
        .find_map(|l| l.split("listening on http://").nth(1))
        .and_then(|url| url.rsplit(':').next())
        .and_then(|port| port.trim().parse().ok())
        .expect("a port");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    read_until(&lines, &mut log, "getMe failure", |log| log.iter().any(|l| l.contains("getMe") && l.contains("400")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_me.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the fake never counted the getMe");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ready = request(address, "GET", "/ready", &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))], b"");

    let status = std::process::Command::new("kill").args(["-15", &process.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while process.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the gateway did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both pipes are closed once the process is gone: this reads to their ends.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        log.push(line);
    }
    FailedStart { log, ready: ready.json(), ready_body: ready.body, get_me_calls: get_me.load(Ordering::SeqCst) }
}

/// Asserts that none of `secrets` (nor the bot token) was printed or served, and that the getMe
/// failure was logged with the redaction marker.
fn assert_redacted(run: &FailedStart, secrets: &[&str]) {
    let output = run.log.join("\n");
    for secret in secrets.iter().chain([&TOKEN]) {
        assert!(!output.contains(secret), "{secret} leaked into the log:\n{output}");
        assert!(!run.ready_body.contains(secret), "{secret} leaked into /ready: {}", run.ready_body);
    }
    let failure = run.log.iter().find(|l| l.contains("getMe") && l.contains("400")).unwrap();
    assert!(failure.contains("[redacted]"), "the failure is logged, redacted: {failure}");
}

#[test]
fn a_failed_get_me_is_logged_redacted_and_the_bot_counts_as_not_started() {
    let run = failed_start(format!(
        "Bad Request: Bearer {} for {} at /Users/alice/{}/notes.txt from https://files.example.test/d?token={}",
        PLANTED[0], PLANTED[1], PLANTED[2], PLANTED[3]
    ));
    assert_redacted(&run, &PLANTED);
    assert_eq!(run.get_me_calls, 1, "a 400 from getMe is not retried");
    // fail_start: the bot reports a failed start, not a running but unhealthy channel.
    let telegram = run.ready["providers"].as_array().unwrap().iter().find(|p| p["id"] == "telegram").cloned().unwrap();
    assert_eq!(telegram["started"], false, "{telegram}");
    assert_eq!(telegram["healthy"], false, "{telegram}");
    assert!(telegram["error"].as_str().unwrap().contains("getMe"), "{telegram}");
}

#[test]
fn a_secret_in_a_bot_api_error_reaches_no_log_line() {
    let run = failed_start(format!(
        "Bad Request: Bearer {} for {} at /Users/alice/{}?token={}",
        PLANTED[0], PLANTED[1], PLANTED[2], PLANTED[3]
    ));
    assert_redacted(&run, &PLANTED);
}
