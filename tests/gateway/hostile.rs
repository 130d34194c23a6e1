//! Hostile HTTP input against the running daemon (issue 18, part 3), spoken byte by byte over raw
//! loopback TCP where a well-behaved client would refuse to: request smuggling, slowloris heads,
//! bodies and readers, oversized heads and bodies, 2,000 concurrent connections, malformed
//! percent-encoding, invalid UTF-8, deeply nested JSON, and operator endpoints probed with
//! forwarded headers and guessed tokens. Each case must end in a clear 4xx or a closed connection,
//! the daemon must still answer `/health` afterwards, and no configured secret may appear in any
//! answer or in the daemon's log (run at debug level so every rejection is logged).
//!
//! Already covered in `tests/attack.rs` and not repeated here: held request bodies staying within
//! the memory budget, a wrong webhook secret refused before the body is read, slowloris from one
//! address (1,100 connections), operator token guesses throttled per client, and two `Host`
//! headers refused.

// The fake provider (its webhook reads bodies without a signature) and the generic webhook (a
// configured shared secret) are both needed.
#![cfg(all(feature = "devcloud", feature = "webhook"))]

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::{base_env, parse_response, Gateway, HttpResponse, ADMIN_TOKEN};

const SERVICE_TOKEN: &str = "occ_gwtest_Service0Token0Value0123";
const WEBHOOK_SECRET: &str = "hostile-Webhook-Shared-Secret-0042";
/// Every secret the hostile gateway is configured with: none may leave it.
const SECRETS: [&str; 3] = [ADMIN_TOKEN, SERVICE_TOKEN, WEBHOOK_SECRET];
/// `OPEN_COWORK_GATEWAY_MAX_REQUEST_BODY_BYTES` for these tests: small, so oversize is cheap.
const BODY_LIMIT: usize = 64 * 1024;
/// How long any single answer may take before the test calls it a hang. Generous: it bounds a
/// failure, it does not time a success.
const PATIENCE: Duration = Duration::from_secs(20);

const BAD_BODY: &str = "Gateway webhook body must be valid JSON or form-encoded payload.";
const ADMIN_REQUIRED: &str = "Gateway admin authorization is required.";

/// The fake provider (no signature, so its bodies are read), the generic webhook with a shared
/// secret (never dialled: no delivery reaches it), diagnostics on, and a 64 KiB body cap.
fn hostile_env() -> Vec<(&'static str, &'static str)> {
    let mut env = base_env();
    env.extend([
        ("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", "https://hooks.example.com/in"),
        ("OPEN_COWORK_GATEWAY_WEBHOOK_SHARED_SECRET", WEBHOOK_SECRET),
        ("OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED", "true"),
        ("OPEN_COWORK_GATEWAY_MAX_REQUEST_BODY_BYTES", "65536"),
    ]);
    env
}

fn start() -> Gateway {
    Gateway::start(&hostile_env(), &["--log-level", "debug"])
}

/// What came back on one raw connection.
struct Exchange {
    raw: Vec<u8>,
    /// The gateway closed (or reset) the connection; false if it was still open after [`PATIENCE`].
    closed: bool,
}

impl Exchange {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Every complete response in the byte stream, in order.
    fn responses(&self) -> Vec<HttpResponse> {
        split_responses(&self.raw)
    }

    /// The only response: more than one means a second request was read from the same bytes.
    fn single(&self) -> HttpResponse {
        let mut responses = self.responses();
        assert_eq!(responses.len(), 1, "expected exactly one response in {:?}", self.text());
        responses.remove(0)
    }
}

/// Splits a byte stream into responses framed by `content-length` (every gateway and hyper
/// answer carries one).
fn split_responses(mut raw: &[u8]) -> Vec<HttpResponse> {
    let mut responses = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = parse_response(&raw[..end + 4]);
        let length: usize = head.header("content-length").map_or(0, |v| v.parse().unwrap());
        let body_end = (end + 4 + length).min(raw.len());
        let body = String::from_utf8_lossy(&raw[end + 4..body_end]).into_owned();
        responses.push(HttpResponse { body, ..head });
        raw = &raw[body_end..];
    }
    responses
}

/// Writes `bytes` on a fresh connection and reads until the gateway closes it. A write the
/// gateway cuts short (it answered and closed early) is not an error: what it said still counts.
fn talk(address: SocketAddr, bytes: &[u8]) -> Exchange {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = stream.write_all(bytes);
    read_until_closed(&mut stream)
}

fn read_until_closed(stream: &mut TcpStream) -> Exchange {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Exchange { raw, closed: true },
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Exchange { raw, closed: false }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset is the gateway closing with our unread bytes still in its buffer.
            Err(_) => return Exchange { raw, closed: true },
        }
    }
}

/// A request head (CRLF line ends, blank line added) followed by `body`.
fn raw_request(lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut bytes = lines.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(body);
    bytes
}

/// One `Connection: close` request with the given extra header lines and body.
fn send(address: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Exchange {
    let start = format!("{method} {path} HTTP/1.1");
    let length = format!("Content-Length: {}", body.len());
    let mut lines = vec![start.as_str(), "Host: 127.0.0.1", "Connection: close", length.as_str()];
    lines.extend_from_slice(headers);
    talk(address, &raw_request(&lines, body))
}

/// Asserts a JSON error answer `{ok:false, error}` with the gateway's content type.
fn assert_json_error(response: &HttpResponse, status: u16, message: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json; charset=utf-8"), "{response:?}");
    assert_eq!(response.json(), serde_json::json!({"ok": false, "error": message}), "{response:?}");
}

/// Asserts hyper's own refusal of a request it could not parse: the status, no body, closed.
fn assert_refused_by_parser(exchange: &Exchange, status: u16) {
    let response = exchange.single();
    assert_eq!(response.status, status, "{}", exchange.text());
    assert_eq!(response.body, "", "{}", exchange.text());
    assert!(exchange.closed, "the connection is closed after a refused head: {}", exchange.text());
}

/// The daemon survived: still running, `/health` answers 200, its log shows no panic, and no
/// secret appears in any of `answers` or in anything it logged.
fn assert_unharmed(gateway: &mut Gateway, answers: &[String]) {
    assert!(gateway.child.try_wait().unwrap().is_none(), "the gateway exited");
    let health = gateway.get("/health", &[]);
    assert_eq!(health.status, 200, "{health:?}");
    let log = gateway.output();
    assert!(!log.contains("panicked"), "{log}");
    for secret in SECRETS {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
        for answer in answers {
            assert!(!answer.contains(secret), "a secret reached an answer: {answer}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request smuggling

/// `Content-Length` next to `Transfer-Encoding: chunked`, in either order: the body is read as
/// chunked (RFC 9112 §6.3), the one answer is given, and the connection is closed, so the bytes
/// after the chunked body (a second request a front end that trusted `Content-Length` would
/// see) are never read as a request.
#[test]
fn content_length_beside_chunked_is_read_as_chunked_and_the_connection_closes() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let smuggled = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for framing in [
        // CL.TE: a length that ends inside the chunked body.
        ["Content-Length: 4", "Transfer-Encoding: chunked"],
        ["Transfer-Encoding: chunked", "Content-Length: 4"],
        // TE.CL: a length that covers the smuggled request too.
        ["Content-Length: 200", "Transfer-Encoding: chunked"],
        // A length of zero: the chunked body itself would be the next request.
        ["Transfer-Encoding: chunked", "Content-Length: 0"],
    ] {
        let mut lines = vec!["POST /webhooks/fake HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"];
        lines.extend_from_slice(&framing);
        let mut bytes = raw_request(&lines, b"1\r\nx\r\n0\r\n\r\n");
        bytes.extend_from_slice(smuggled);
        let exchange = talk(gateway.address, &bytes);
        // The chunked body is `x`: invalid JSON, so a 400 from the webhook pipeline proves
        // the body was read by its chunks.
        assert_json_error(&exchange.single(), 400, BAD_BODY);
        assert!(exchange.closed, "{framing:?}: the connection stays open: {}", exchange.text());
        answers.push(exchange.text());
    }
    assert_unharmed(&mut gateway, &answers);
}

/// Framing a server could read two ways is refused by the HTTP parser with a bare 400 and a
/// closed connection: conflicting lengths, lengths that are not plain digits, a transfer coding
/// that is not chunked last, chunked on HTTP/1.0, and header names or values that smuggle
/// whitespace or control bytes. The spec is silent on these; hyper's 400 (no body: nothing was
/// routed) is what a proxy in front would also answer.
#[test]
fn ambiguous_framing_is_refused_with_400() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let cases: [(&str, &[&str]); 14] = [
        ("two different lengths", &["Content-Length: 3", "Content-Length: 4"]),
        ("a list of lengths", &["Content-Length: 3, 4"]),
        ("a signed length", &["Content-Length: +3"]),
        ("a negative length", &["Content-Length: -1"]),
        ("a hex length", &["Content-Length: 0x3"]),
        ("a length past u64", &["Content-Length: 99999999999999999999999"]),
        ("gzip only", &["Transfer-Encoding: gzip"]),
        ("chunked not last", &["Transfer-Encoding: chunked, gzip"]),
        ("a lookalike coding", &["Transfer-Encoding: xchunked"]),
        ("chunked and gzip lines", &["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"]),
        ("whitespace before the colon", &["Transfer-Encoding : chunked"]),
        ("a folded header", &["Transfer-Encoding:", " chunked"]),
        ("a NUL in a value", &["X-Note: a\0b"]),
        ("a bare CR in a value", &["X-Note: a\rTransfer-Encoding: chunked"]),
    ];
    for (name, framing) in cases {
        let mut lines = vec!["POST /webhooks/fake HTTP/1.1", "Host: 127.0.0.1"];
        lines.extend_from_slice(framing);
        let exchange = talk(gateway.address, &raw_request(&lines, b"3\r\nabc\r\n0\r\n\r\n"));
        let response = exchange.responses();
        assert_eq!(response.len(), 1, "{name}: {}", exchange.text());
        assert_eq!(response[0].status, 400, "{name}: {}", exchange.text());
        assert_eq!(response[0].body, "", "{name}: {}", exchange.text());
        assert!(exchange.closed, "{name}: the connection stays open");
        answers.push(exchange.text());
    }
    let http10 = raw_request(
        &["POST /webhooks/fake HTTP/1.0", "Host: 127.0.0.1", "Transfer-Encoding: chunked"],
        b"1\r\nx\r\n0\r\n\r\n",
    );
    let exchange = talk(gateway.address, &http10);
    assert_refused_by_parser(&exchange, 400);
    answers.push(exchange.text());

    // The same length twice is one length (RFC 9110 §8.6 allows it): the 3 bytes are the body.
    let exchange = send(gateway.address, "POST", "/webhooks/fake", &["Content-Length: 3"], b"abc");
    assert_json_error(&exchange.single(), 400, BAD_BODY);
    answers.push(exchange.text());
    assert_unharmed(&mut gateway, &answers);
}

/// A chunked body whose framing is broken (a chunk size past `u64`, a size that is not hex, a
/// chunk extension or a trailer that never ends) is the gateway's JSON 400 once the body reader
/// fails, and the connection is closed: nothing after the broken framing is read as a request.
#[test]
fn broken_chunked_bodies_are_400() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let long_extension = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(70_000));
    let long_trailer = format!("1\r\nx\r\n0\r\nX-Trailer: {}\r\n\r\n", "a".repeat(70_000));
    let bodies = [
        "FFFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n".to_owned(),
        "zz\r\nx\r\n0\r\n\r\n".to_owned(),
        "-1\r\nx\r\n0\r\n\r\n".to_owned(),
        "1\r\nxyz\r\n0\r\n\r\n".to_owned(),
        long_extension,
        long_trailer,
    ];
    for body in bodies {
        let lines = [
            "POST /webhooks/fake HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ];
        let mut bytes = raw_request(&lines, body.as_bytes());
        bytes.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let exchange = talk(gateway.address, &bytes);
        assert_json_error(&exchange.single(), 400, "Gateway request body could not be read.");
        assert!(exchange.closed, "{}", exchange.text());
        answers.push(exchange.text());
    }
    assert_unharmed(&mut gateway, &answers);
}

/// Request lines that are not HTTP/1.x are refused by the parser (400 and closed), and an
/// HTTP/2 preface on this HTTP/1-only listener is closed unanswered.
#[test]
fn request_lines_that_are_not_http1_are_refused() {
    let mut gateway = start();
    let mut answers = Vec::new();
    for line in [
        &b"GET /health\r\n\r\n"[..],
        b"GET /health HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /health HTTP/1.1 extra\r\nHost: 127.0.0.1\r\n\r\n",
        b"G\x01T /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"\r\n\r\n\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let exchange = talk(gateway.address, line);
        assert_refused_by_parser(&exchange, 400);
        answers.push(exchange.text());
    }
    let preface = talk(gateway.address, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(preface.closed);
    assert_eq!(preface.text(), "", "an HTTP/2 client gets no HTTP/1 answer to misread");
    assert_unharmed(&mut gateway, &answers);
}

// ---------------------------------------------------------------------------------------------
// Oversized heads and bodies

/// A request head past 16 KiB, whether one long header, many headers or a long path, is
/// answered 431 by the parser and closed: it is never buffered whole.
#[test]
fn oversized_heads_are_431() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let long_value = format!("X-Padding: {}", "a".repeat(20 * 1024));
    let exchange = talk(gateway.address, &raw_request(&["GET /health HTTP/1.1", "Host: 127.0.0.1", &long_value], b""));
    assert_refused_by_parser(&exchange, 431);
    answers.push(exchange.text());

    let many: Vec<String> = (0..150).map(|n| format!("X-Header-{n}: {n}")).collect();
    let mut lines = vec!["GET /health HTTP/1.1".to_owned(), "Host: 127.0.0.1".to_owned()];
    lines.extend(many);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let exchange = talk(gateway.address, &raw_request(&lines, b""));
    assert_refused_by_parser(&exchange, 431);
    answers.push(exchange.text());

    let long_path = format!("GET /webhooks/{} HTTP/1.1", "p".repeat(20 * 1024));
    let exchange = talk(gateway.address, &raw_request(&[&long_path, "Host: 127.0.0.1"], b""));
    assert_refused_by_parser(&exchange, 431);
    answers.push(exchange.text());
    assert_unharmed(&mut gateway, &answers);
}

/// A body past the configured cap is 413 with the gateway's JSON error: a declared length is
/// refused before a byte of the body is sent, a chunked body as soon as its running total
/// passes the cap, and an operator action body past its own 16 KiB cap likewise.
#[test]
fn oversized_bodies_are_413() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let too_large = "Gateway request body exceeds the configured limit.";

    // Only the head: the 413 must come without the body.
    let length = format!("Content-Length: {}", BODY_LIMIT + 1);
    let declared_lines =
        ["POST /webhooks/fake HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", length.as_str()];
    let declared = raw_request(&declared_lines, b"");
    let exchange = talk(gateway.address, &declared);
    assert_json_error(&exchange.single(), 413, too_large);
    assert!(exchange.closed, "a refused body is not waited for");
    answers.push(exchange.text());

    // `Expect: 100-continue` with a length past the cap: refused without inviting the body.
    let mut lines = declared_lines.to_vec();
    lines.push("Expect: 100-continue");
    let exchange = talk(gateway.address, &raw_request(&lines, b""));
    assert!(!exchange.text().contains("100 Continue"), "{}", exchange.text());
    assert_json_error(&exchange.single(), 413, too_large);
    answers.push(exchange.text());

    // Chunked: no length up front; 16 KiB chunks, one more than the cap holds.
    let mut stream = TcpStream::connect(gateway.address).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = raw_request(
        &[
            "POST /webhooks/fake HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
        b"",
    );
    stream.write_all(&head).unwrap();
    let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
    for _ in 0..=(BODY_LIMIT / 0x4000) {
        if stream.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let exchange = read_until_closed(&mut stream);
    assert_json_error(&exchange.single(), 413, too_large);
    answers.push(exchange.text());

    let action = send(
        gateway.address,
        "POST",
        "/deliveries/d-1/retry",
        &[&format!("Authorization: Bearer {ADMIN_TOKEN}"), "Content-Type: application/json"],
        &vec![b' '; 16 * 1024 + 1],
    );
    assert_json_error(&action.single(), 413, too_large);
    answers.push(action.text());
    assert_unharmed(&mut gateway, &answers);
}

// ---------------------------------------------------------------------------------------------
// Slowloris

/// Drips `bytes` one at a time, `every` apart, until the gateway closes the connection; returns
/// what it answered. Fails if it is still open after `bound` (a generous bound, not a timing).
fn drip(address: SocketAddr, head: &[u8], bytes: &[u8], every: Duration, bound: Duration) -> Exchange {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(head).unwrap();
    stream.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + bound;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    for byte in bytes.iter().cycle() {
        assert!(Instant::now() < deadline, "the gateway kept a dripping connection open for {bound:?}");
        match stream.read(&mut buffer) {
            Ok(0) => return Exchange { raw, closed: true },
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return Exchange { raw, closed: true },
        }
        if let Err(e) = stream.write(std::slice::from_ref(byte)) {
            if e.kind() != ErrorKind::WouldBlock {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                let rest = read_until_closed(&mut stream);
                raw.extend_from_slice(&rest.raw);
                return Exchange { raw, closed: true };
            }
        }
        thread::sleep(every);
    }
    unreachable!("cycle() never ends")
}

/// Pipelines `/health` requests on a connection that never reads an answer (its receive buffer
/// shrunk to a few KiB) until the gateway closes it: it must, although it keeps receiving nothing
/// new to read. Returns how many request bytes the gateway took before it stopped reading.
/// Fails if the connection is still open after `bound` (a generous bound, not a timing).
fn never_read_the_answers(address: SocketAddr, bound: Duration) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(address).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(true).unwrap();
    let requests = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(256);
    let deadline = Instant::now() + bound;
    let mut sent = 0;
    loop {
        assert!(Instant::now() < deadline, "a connection that reads nothing was held for {bound:?}");
        match (&stream).write(&requests) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(100)),
            // The gateway gave up on the connection and reset it.
            Err(_) => return sent,
        }
    }
}

/// A request head dripped a byte at a time never completes: the head timer (10 s) runs from the
/// first byte, not from the last one, so the connection is closed with no answer. A body dripped
/// after a complete head is cut off by the request deadline (30 s) with a JSON 408. A client that
/// sends requests and never reads the answers is dropped once the answers have waited 10 s for
/// it. All three run at once against one gateway, each bounded at twice its timer or more.
#[test]
fn slowloris_heads_bodies_and_readers_are_cut_off() {
    let mut gateway = start();
    let address = gateway.address;
    let head = thread::spawn(move || {
        let head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
        drip(address, head, b"a", Duration::from_millis(200), Duration::from_secs(20))
    });
    let body = thread::spawn(move || {
        let head = raw_request(
            &[
                "POST /webhooks/fake HTTP/1.1",
                "Host: 127.0.0.1",
                "Content-Type: application/json",
                "Content-Length: 1000",
            ],
            b"{",
        );
        drip(address, &head, b" ", Duration::from_millis(500), Duration::from_secs(60))
    });
    let reader = thread::spawn(move || never_read_the_answers(address, Duration::from_secs(60)));
    let head = head.join().unwrap();
    assert!(head.closed);
    assert_eq!(head.text(), "", "a head that never completes gets no answer");
    let body = body.join().unwrap();
    assert!(body.closed);
    assert_json_error(&body.single(), 408, "Gateway request body was not received in time.");
    let taken = reader.join().unwrap();
    assert!(taken > 64 * 1024, "the gateway answered requests until the answers backed up ({taken} bytes taken)");
    assert_unharmed(&mut gateway, &[head.text(), body.text()]);
}

// ---------------------------------------------------------------------------------------------
// 2,000 concurrent connections

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The soft `RLIMIT_NOFILE` of this process.
fn fd_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let soft = line.split_whitespace().nth(3).unwrap();
    soft.parse().unwrap_or(u64::MAX) // "unlimited"
}

/// Makes sure this process (and the gateway it starts, which inherits the limit) may open
/// `needed` descriptors, raising the soft limit when the hard one allows. prlimit(1) keeps the
/// test free of unsafe libc calls.
fn ensure_fd_limit(needed: u64) {
    if fd_limit() >= needed {
        return;
    }
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &format!("--nofile={needed}:")])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()) && fd_limit() >= needed,
        "this test needs {needed} open files (ulimit -n); the limit is {}",
        fd_limit()
    );
}

/// A connection from `source`: every 127.x.y.z address is this machine's loopback, so each test
/// client can be a different "client address" to the gateway.
async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(to).await
}

/// A connection that sends a complete webhook head and one byte of its 16-byte body, then
/// holds: the gateway keeps it for the request deadline (30 s) unless it refused it. `None` if
/// the connection could not be made at all.
async fn hold_a_request(source: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect_from(source, to).await.ok()?;
    let head = "POST /webhooks/fake HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{";
    // A refused connection may already be closed: that is the cap at work, not a failure.
    let _ = stream.write_all(head.as_bytes()).await;
    let stream = stream.into_std().ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// Whether the gateway still holds `stream` open: no answer, no close.
fn held_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!((&*stream).read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// A `/health` request from `source`; `None` when the gateway closed the connection unanswered.
async fn health_from(source: Ipv4Addr, to: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_from(source, to).await.ok()?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "a connection beyond the cap was neither answered nor closed");
    (!raw.is_empty()).then(|| parse_response(&raw).status)
}

/// 2,000 connections that each hold a request open: 100 from one address, then 20 from each of
/// 95 more. One address gets its 64, all of them together the 992 slots not kept for the
/// machine's own address; every other connection is closed at once, and so is a newcomer's.
/// The gateway's descriptors and memory stay bounded, `127.0.0.1` is answered throughout, and
/// once the attackers close, a newcomer is answered again.
#[test]
fn two_thousand_connections_hold_the_cap_and_health_comes_back() {
    const ONE_ADDRESS: usize = 100;
    const SPREAD: usize = 1_900;
    const PER_SPREAD_ADDRESS: usize = 20;
    const PER_CLIENT_CAP: usize = 64;
    const NON_LOOPBACK_CAP: usize = 1024 - 32;
    // This process holds every connection; the gateway (which inherits the limit) its cap.
    ensure_fd_limit((ONE_ADDRESS + SPREAD + 1024) as u64);
    let mut gateway = Gateway::start(&hostile_env(), &[]);
    let (pid, address) = (gateway.pid(), gateway.address);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fds_before = open_fds(pid);
    let rss_before = rss_kib(pid);

    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..ONE_ADDRESS {
            held.extend(hold_a_request(Ipv4Addr::new(127, 3, 0, 1), address).await);
        }
        for n in 0..SPREAD {
            let client = n / PER_SPREAD_ADDRESS;
            held.extend(hold_a_request(Ipv4Addr::new(127, 4, 0, client as u8 + 1), address).await);
        }
        held
    });
    assert_eq!(held.len(), ONE_ADDRESS + SPREAD, "every connection was made (the kernel accepts them)");
    // The gateway closes what it does not admit as it accepts: wait until it has caught up.
    runtime.block_on(support::eventually("the gateway to close what it did not admit", || {
        held.iter().filter(|s| held_open(s)).count() <= NON_LOOPBACK_CAP
    }));
    let from_one = held[..ONE_ADDRESS].iter().filter(|s| held_open(s)).count();
    let open = held.iter().filter(|s| held_open(s)).count();
    assert_eq!(from_one, PER_CLIENT_CAP, "one address holds its share and no more");
    assert_eq!(open, NON_LOOPBACK_CAP, "every slot not kept for loopback is held, and no more");

    let fds_during = open_fds(pid);
    let rss_during = rss_kib(pid);
    assert!(
        fds_during <= fds_before + NON_LOOPBACK_CAP + 8,
        "the gateway holds {fds_during} descriptors (from {fds_before})"
    );
    assert!(rss_during < rss_before + 24 * 1024, "RSS went from {rss_before} KiB to {rss_during} KiB");
    let newcomer = runtime.block_on(health_from(Ipv4Addr::new(127, 5, 0, 1), address));
    assert_eq!(newcomer, None, "a newcomer beyond the cap is closed unanswered");
    assert_eq!(gateway.get("/health", &[]).status, 200, "127.0.0.1 is answered from the kept slots");

    drop(held);
    runtime.block_on(support::eventually("the gateway to close the attackers' connections", || {
        open_fds(pid) <= fds_before + 4
    }));
    let newcomer = runtime.block_on(health_from(Ipv4Addr::new(127, 5, 0, 2), address));
    assert_eq!(newcomer, Some(200), "the slots came back");
    assert_unharmed(&mut gateway, &[]);
}

// ---------------------------------------------------------------------------------------------
// Malformed paths, invalid UTF-8, deeply nested JSON

/// A bad percent-encoding in a path parameter is the gateway's JSON 400 (not upstream's
/// 500), before any authorization or body; an escape in a literal segment just does not match
/// (404); raw bytes outside the request-target grammar never reach the router (hyper's 400).
#[test]
fn malformed_paths_are_400_or_404() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let bad_encoding = "Request path has an invalid percent-encoding.";
    for path in [
        "/webhooks/%zz",
        "/webhooks/%",
        "/webhooks/%4",
        "/webhooks/%FF",
        "/webhooks/%C3",
        "/webhooks/%C3%28",
        "/webhooks/%ED%A0%80",
        "/deliveries/%E0%A4%A/retry",
        "/deliveries/%C0%AF/dead-letter",
    ] {
        let exchange = send(gateway.address, "POST", path, &[], b"{}");
        assert_json_error(&exchange.single(), 400, bad_encoding);
        answers.push(exchange.text());
    }
    for (method, path) in [("GET", "/heal%74h"), ("GET", "/%2e%2e/health"), ("GET", "/health%00"), ("GET", "//health")]
    {
        let exchange = send(gateway.address, method, path, &[], b"");
        assert_json_error(&exchange.single(), 404, "Not found.");
        answers.push(exchange.text());
    }
    // A decoded slash does not make a second segment: no provider is called `a/b`.
    let exchange = send(gateway.address, "POST", "/webhooks/a%2Fb", &[], b"{}");
    assert_json_error(&exchange.single(), 404, "Gateway webhook provider was not found.");
    answers.push(exchange.text());

    for raw_target in [&b"/webhooks/\xff\xfe"[..], b"/health\x7f", b"/he alth"] {
        let mut bytes = b"POST ".to_vec();
        bytes.extend_from_slice(raw_target);
        bytes.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
        let exchange = talk(gateway.address, &bytes);
        assert_refused_by_parser(&exchange, 400);
        answers.push(exchange.text());
    }
    assert_unharmed(&mut gateway, &answers);
}

/// Bodies that are not UTF-8, or JSON nested far past any real payload, are the webhook's JSON
/// 400 (and the operator action's): the parser's depth limit answers, not the stack.
#[test]
fn invalid_utf8_and_deeply_nested_json_are_400() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let json = "Content-Type: application/json";
    let form = "Content-Type: application/x-www-form-urlencoded";
    let deep_arrays = "[".repeat(60_000);
    let deep_objects = "{\"a\":".repeat(10_000);
    let deep_form = format!("payload={}", "%5B".repeat(15_000));
    let cases: [(&str, &[u8]); 7] = [
        (json, b"\"\xff\xfe\""),
        (json, b"{\"text\":\"\xc3\x28\"}"),
        (json, b"{\"text\":\"\xed\xa0\x80\"}"),
        (json, deep_arrays.as_bytes()),
        (json, deep_objects.as_bytes()),
        (form, deep_form.as_bytes()),
        (form, b"payload=%7B%22a%22%3A%FF%7D"),
    ];
    for (content_type, body) in cases {
        let exchange = send(gateway.address, "POST", "/webhooks/fake", &[content_type], body);
        assert_json_error(&exchange.single(), 400, BAD_BODY);
        answers.push(exchange.text());
    }
    let authorization = format!("Authorization: Bearer {ADMIN_TOKEN}");
    for body in [&b"{\"lastError\":\"\xff\"}"[..], &deep_arrays.as_bytes()[..8_000]] {
        let exchange = send(gateway.address, "POST", "/deliveries/d-1/dead-letter", &[&authorization, json], body);
        assert_json_error(&exchange.single(), 400, "Delivery action body must be valid JSON.");
        answers.push(exchange.text());
    }
    assert_unharmed(&mut gateway, &answers);
}

// ---------------------------------------------------------------------------------------------
// Operator endpoints probed

/// Operator routes do not trust anything a client says about where it is: forwarded headers,
/// a loopback `Host`, an absolute-form target or a token in the query are all a JSON 401. A
/// handful of guessed tokens (fewer than the throttle allows, see `tests/attack.rs`) are 401
/// too, and the right token still works afterwards; even then `/diagnostics` shows no secret.
#[test]
fn operator_routes_refuse_forwarded_headers_and_guessed_tokens() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let routes =
        [("GET", "/metrics"), ("GET", "/diagnostics"), ("GET", "/deliveries"), ("POST", "/deliveries/d-1/retry")];
    let claims: [&[&str]; 7] = [
        &["X-Forwarded-For: 127.0.0.1"],
        &["Forwarded: for=127.0.0.1;host=localhost;proto=https"],
        &["X-Real-IP: 127.0.0.1", "X-Forwarded-Host: localhost", "X-Forwarded-Proto: https"],
        &["X-Original-URL: /health", "X-Rewrite-URL: /health"],
        &["X-Open-Cowork-Gateway-Admin: true"],
        &[],
        &["Cookie: adminToken=admin"],
    ];
    for (method, path) in routes {
        for claim in claims {
            let exchange = send(gateway.address, method, path, claim, b"");
            assert_json_error(&exchange.single(), 401, ADMIN_REQUIRED);
            answers.push(exchange.text());
        }
    }
    let absolute = send(gateway.address, "GET", "http://localhost/metrics", &[], b"");
    assert_json_error(&absolute.single(), 401, ADMIN_REQUIRED);
    let query =
        send(gateway.address, "GET", &format!("/metrics?adminToken={ADMIN_TOKEN}&token={ADMIN_TOKEN}"), &[], b"");
    assert_json_error(&query.single(), 401, ADMIN_REQUIRED);
    answers.extend([absolute.text(), query.text()]);

    let prefix = format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let longer = format!("Bearer {ADMIN_TOKEN}x");
    let upper = format!("Bearer {}", ADMIN_TOKEN.to_uppercase());
    let inner_space = format!("Bearer {} {}", &ADMIN_TOKEN[..5], &ADMIN_TOKEN[5..]);
    let basic = format!("Basic {ADMIN_TOKEN}");
    let wrong_bearer_right_header =
        ["Authorization: Bearer guess".to_owned(), format!("X-Open-Cowork-Gateway-Admin-Token: {ADMIN_TOKEN}")];
    let guesses: Vec<Vec<String>> = vec![
        vec!["Authorization: Bearer".to_owned()],
        vec!["Authorization: Bearer    ".to_owned()],
        vec![format!("Authorization: {prefix}")],
        vec![format!("Authorization: {longer}")],
        vec![format!("Authorization: {upper}")],
        vec![format!("Authorization: {inner_space}")],
        vec![format!("Authorization: {basic}")],
        vec!["X-Open-Cowork-Gateway-Admin-Token: admin".to_owned()],
        wrong_bearer_right_header.to_vec(),
    ];
    for guess in &guesses {
        let headers: Vec<&str> = guess.iter().map(String::as_str).collect();
        let exchange = send(gateway.address, "GET", "/metrics", &headers, b"");
        assert_json_error(&exchange.single(), 401, ADMIN_REQUIRED);
        answers.push(exchange.text());
    }
    // A token header that is not UTF-8 is no token at all.
    let mut bytes =
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer \xff".to_vec();
    bytes.extend_from_slice(ADMIN_TOKEN.as_bytes());
    bytes.extend_from_slice(b"\r\n\r\n");
    let exchange = talk(gateway.address, &bytes);
    assert_json_error(&exchange.single(), 401, ADMIN_REQUIRED);
    answers.push(exchange.text());

    let authorization = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let metrics = send(gateway.address, "GET", "/metrics", &[&authorization], b"");
    assert_eq!(metrics.single().status, 200, "the right token still works after a few guesses");
    let diagnostics = send(gateway.address, "GET", "/diagnostics", &[&authorization], b"");
    let response = diagnostics.single();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["ok"], true);
    answers.extend([metrics.text(), diagnostics.text()]);
    assert_unharmed(&mut gateway, &answers);
}

/// Without an admin token, on the loopback bypass, a loopback peer is an operator only when
/// nothing says the request came from elsewhere: any proxy header, a foreign `Host` or an
/// absolute-form target naming another host is a JSON 401.
#[test]
fn the_loopback_bypass_refuses_anything_forwarded_or_foreign() {
    let mut env: Vec<(&str, &str)> =
        hostile_env().into_iter().filter(|(k, _)| *k != "OPEN_COWORK_GATEWAY_ADMIN_TOKEN").collect();
    env.push(("OPEN_COWORK_GATEWAY_ALLOW_LOOPBACK_OPERATOR_BYPASS", "true"));
    let mut gateway = Gateway::start(&env, &["--log-level", "debug"]);
    let mut answers = Vec::new();
    let plain = send(gateway.address, "GET", "/metrics", &[], b"");
    assert_eq!(plain.single().status, 200, "the bypass works for the machine itself");
    for claim in [
        "X-Forwarded-For: 127.0.0.1",
        "x-FORWARDED-for: 127.0.0.1",
        "Forwarded: for=127.0.0.1",
        "X-Forwarded-Host: 127.0.0.1",
        "X-Forwarded-Proto: http",
    ] {
        let exchange = send(gateway.address, "GET", "/metrics", &[claim], b"");
        assert_json_error(&exchange.single(), 401, ADMIN_REQUIRED);
        answers.push(exchange.text());
    }
    for host in ["evil.example", "127.attacker.example", "localhost.evil.example:8790", "127.0.0.1@evil.example"] {
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let exchange = talk(gateway.address, request.as_bytes());
        assert_json_error(&exchange.single(), 401, ADMIN_REQUIRED);
        answers.push(exchange.text());
    }
    let request = "GET http://evil.example/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let exchange = talk(gateway.address, request.as_bytes());
    assert_json_error(&exchange.single(), 401, ADMIN_REQUIRED);
    answers.push(exchange.text());
    assert_unharmed(&mut gateway, &answers);
}

/// Guessed webhook signatures (none, the secret itself, a signature of the wrong body or from
/// outside the time window) are each the JSON 401, and neither the answer nor the debug log
/// repeats the shared secret.
#[test]
fn guessed_webhook_signatures_are_401_and_the_secret_stays_in() {
    let mut gateway = start();
    let mut answers = Vec::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let body = br#"{"id":"e-1","text":"hi","chatId":"c-1","userId":"u-1"}"#;
    let timestamp = format!("X-Open-Cowork-Gateway-Webhook-Timestamp: {now}");
    let stale = format!("X-Open-Cowork-Gateway-Webhook-Timestamp: {}", now - 3_600);
    let secret_as_signature = format!("X-Open-Cowork-Gateway-Webhook-Signature: v1={WEBHOOK_SECRET}");
    let secret_as_timestamp = format!("X-Open-Cowork-Gateway-Webhook-Timestamp: {WEBHOOK_SECRET}");
    let zeros = format!("X-Open-Cowork-Gateway-Webhook-Signature: v1={}", "0".repeat(64));
    let cases: [&[&str]; 6] = [
        &[],
        &[timestamp.as_str()],
        &[timestamp.as_str(), secret_as_signature.as_str()],
        &[timestamp.as_str(), zeros.as_str()],
        &[stale.as_str(), zeros.as_str()],
        &[secret_as_timestamp.as_str(), zeros.as_str()],
    ];
    for headers in cases {
        let mut headers = headers.to_vec();
        headers.push("Content-Type: application/json");
        let exchange = send(gateway.address, "POST", "/webhooks/webhook", &headers, body);
        assert_json_error(&exchange.single(), 401, "Gateway webhook authorization failed.");
        answers.push(exchange.text());
    }
    assert_unharmed(&mut gateway, &answers);
}
