//! The CLI channel reading a stdin that stays open and idle (a terminal, or a pipe nobody writes
//! to): SIGTERM must stop the process, and a line written after the drain began must be left for
//! whoever reads that stdin next.

#![cfg(feature = "cli")]

use crate::support;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use support::{base_env, request, TempDir};

const SIGTERM: i32 = 15;

/// Far more than a stop with nothing in flight takes, far less than a hung process lives.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// A gateway with only the CLI channel, whose stdin is a pipe this test holds both ends of.
struct CliGateway {
    child: Child,
    port: u16,
    /// Every stdout and stderr line, as they arrive.
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// The pipe's write end: open, so the gateway never sees the end of its input.
    stdin_writer: Option<File>,
    /// A second handle on the read end the gateway has as its stdin, to read back what it left.
    stdin_reader: File,
    _dir: TempDir,
}

impl CliGateway {
    fn start() -> Self {
        // Close-on-exec, so no gateway started by a test running beside this one inherits either
        // end; the child's own stdin is a dup2 copy, which exec keeps.
        let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let stdin_reader = File::from(read_end.try_clone().unwrap());
        let mut env: Vec<(&str, &str)> =
            base_env().into_iter().filter(|(key, _)| *key != "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER").collect();
        env.push(("OPEN_COWORK_GATEWAY_CLI_ENABLED", "true"));
        let dir = TempDir::new("cli");
        let mut child = support::command(&dir.0, &env)
            .stdin(Stdio::from(read_end))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the gateway");
        let (tx, lines) = mpsc::channel();
        for stream in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut gateway = Self {
            child,
            port: 0,
            lines,
            seen: Vec::new(),
            stdin_writer: Some(File::from(write_end)),
            stdin_reader,
            _dir: dir,
        };
        let listening = gateway.wait_line(|line| line.starts_with("Open Cowork gateway listening on http://"));
        gateway.port = listening.rsplit(':').next().unwrap().parse().unwrap();
        gateway
    }

    /// Waits for an output line that `matches`; panics with everything seen if none comes.
    fn wait_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no matching output line; seen: {:#?}", self.seen),
            }
        }
    }

    fn sigterm(&self) {
        // The kill(1) utility keeps the test free of unsafe libc calls.
        let status = std::process::Command::new("kill")
            .arg(format!("-{SIGTERM}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`; `None` if it is still running.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
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

    fn write_stdin(&mut self, bytes: &[u8]) {
        self.stdin_writer.as_mut().unwrap().write_all(bytes).unwrap();
    }

    /// Closes the write end and reads what is left in the pipe. Call it only once the gateway
    /// has exited: then this test holds the only ends, so the read ends at the pipe's end
    /// instead of racing a reader in the gateway.
    fn unread_stdin(&mut self) -> Vec<u8> {
        drop(self.stdin_writer.take());
        let mut left = Vec::new();
        self.stdin_reader.read_to_end(&mut left).unwrap();
        left
    }

    fn output(&mut self) -> String {
        self.seen.extend(self.lines.try_iter());
        self.seen.join("\n")
    }
}

impl Drop for CliGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Before the fix, the reader sat in a blocking `read(0)` on tokio's blocking pool, and the
/// runtime waited for that thread at exit: the process logged "stopped" and then lived on until
/// a line or the end of input arrived. Here neither ever does.
#[test]
fn sigterm_stops_the_cli_with_stdin_open_and_idle() {
    let mut gateway = CliGateway::start();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], gateway.port));
    assert_eq!(request(address, "GET", "/health", &[], b"").status, 200);
    gateway.sigterm();
    let status = gateway.wait_exit(EXIT_LIMIT);
    let output = gateway.output();
    let status = status.unwrap_or_else(|| panic!("still running {EXIT_LIMIT:?} after SIGTERM; output:\n{output}"));
    assert_eq!(status.code(), Some(0), "{output}");

    // Nothing was taken from the pipe: a line written now is all that is in it.
    gateway.write_stdin(b"{\"text\":\"for the next reader\"}\n");
    assert_eq!(gateway.unread_stdin(), b"{\"text\":\"for the next reader\"}\n");
}

/// A line that arrives after the drain began belongs to whoever reads this stdin next. Before
/// the fix, the blocked `read(0)` was still in flight after "stopped": it took this line (and
/// only then let the process exit), so the pipe came back empty.
#[test]
fn a_line_written_after_the_drain_is_left_unread() {
    let mut gateway = CliGateway::start();
    gateway.sigterm();
    gateway.wait_line(|line| line.contains(" stopped exit="));
    gateway.write_stdin(b"hello after the drain\n");
    let status = gateway.wait_exit(EXIT_LIMIT);
    let output = gateway.output();
    let status = status.unwrap_or_else(|| panic!("still running {EXIT_LIMIT:?} after SIGTERM; output:\n{output}"));
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(
        String::from_utf8_lossy(&gateway.unread_stdin()),
        "hello after the drain\n",
        "the gateway read stdin after the drain began; output:\n{output}"
    );
}
