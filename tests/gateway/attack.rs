//! The daemon under attack, on loopback: held request bodies stay within the body budget, a
//! wrong webhook secret is refused before its body is read, one address cannot take every
//! connection, operator token guesses are throttled, and ambiguous request heads are refused.
//! The binary runs as a child; its memory is read from `/proc/<pid>/status`.

use crate::support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::{base_env, request, Gateway, ADMIN_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A connection from `source`: every 127.x.y.z address is this machine's loopback, so each test
/// client can be a different "client address" to the gateway.
async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(to).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Sends a webhook head that declares a 1 MiB body and all but its last byte, then holds it.
async fn hold_a_body(source: Ipv4Addr, to: SocketAddr) -> Option<TcpStream> {
    const BODY: usize = 1024 * 1024;
    let mut stream = connect_from(source, to).await.ok()?;
    let head = format!(
        "POST /webhooks/fake HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent + chunk.len() < BODY {
        // A refused body (503 and close) ends the write early: that is the budget at work.
        if stream.write_all(&chunk).await.is_err() {
            return Some(stream);
        }
        sent += chunk.len();
    }
    Some(stream)
}

/// 60 held 1 MiB bodies from one address, then 500 from many: the gateway buffers no more than
/// its body budget (8 MiB by default) and keeps answering `/health`.
#[test]
fn held_bodies_stay_within_the_memory_budget() {
    let gateway = Gateway::start(&base_env(), &[]);
    let before = rss_kib(gateway.pid());
    let runtime = runtime();
    let address = gateway.address;
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..60 {
            held.extend(hold_a_body(Ipv4Addr::new(127, 0, 0, 2), address).await);
        }
        for n in 0..500u32 {
            let source = Ipv4Addr::new(127, 1, (n / 200) as u8, (n % 200 + 1) as u8);
            held.extend(hold_a_body(source, address).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        held
    });
    let during = rss_kib(gateway.pid());
    assert_eq!(gateway.get("/health", &[]).status, 200, "the gateway answers during the attack");
    let budget_kib = 8 * 1024;
    assert!(
        during < before + budget_kib + 24 * 1024,
        "RSS went from {before} KiB to {during} KiB holding {} connections",
        held.len()
    );
    let metrics = gateway.get("/metrics", &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))]).body;
    assert!(metrics.contains("open_cowork_gateway_errors_total"), "{metrics}");
    drop(held);
}

/// A wrong Telegram secret is refused from the headers: the 1 MiB body is never sent, and the
/// 401 comes anyway.
#[test]
fn a_wrong_webhook_secret_is_refused_before_the_body_is_read() {
    let mut env: Vec<(&str, &str)> =
        base_env().into_iter().filter(|(k, _)| *k != "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER").collect();
    env.extend([
        ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", "123456789:AAH-telegramBotTokenForTests0000"),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL", "http://127.0.0.1:9"),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_MODE", "webhook"),
        ("OPEN_COWORK_GATEWAY_PUBLIC_URL", "https://gateway.example.com"),
        ("OPEN_COWORK_GATEWAY_TELEGRAM_WEBHOOK_SECRET", "telegram-Webhook-Secret-0000000042"),
    ]);
    let gateway = Gateway::start(&env, &[]);
    let status = runtime().block_on(async {
        let mut stream = TcpStream::connect(gateway.address).await.unwrap();
        let head = "POST /webhooks/telegram HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                    X-Telegram-Bot-Api-Secret-Token: wrong\r\nContent-Length: 1048000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 512];
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut answer)).await;
        let read = read.expect("answered without the body").unwrap();
        String::from_utf8_lossy(&answer[..read]).split(' ').nth(1).unwrap_or("").to_owned()
    });
    assert_eq!(status, "401");
}

/// 1,100 slow request heads from one address take at most that address's share of the
/// connections; `/health` from loopback answers while they hang.
#[test]
fn slowloris_from_one_address_leaves_health_answering() {
    let gateway = Gateway::start(&base_env(), &[]);
    let runtime = runtime();
    let address = gateway.address;
    let (held, refused) = runtime.block_on(async {
        let (mut held, mut refused) = (Vec::new(), 0);
        for _ in 0..1_100 {
            match connect_from(Ipv4Addr::new(127, 0, 0, 3), address).await {
                Ok(mut stream) => {
                    if stream.write_all(b"GET /health HTTP/1.1\r\nHost: 1").await.is_ok() {
                        held.push(stream);
                    } else {
                        refused += 1;
                    }
                }
                Err(_) => refused += 1,
            }
        }
        (held, refused)
    });
    let health = request(gateway.address, "GET", "/health", &[], b"");
    assert_eq!(health.status, 200, "loopback operators get a connection during the attack");
    // The gateway closes what it does not admit: most of the 1,100 are already gone.
    let open = runtime.block_on(async {
        let mut open = 0;
        for mut stream in held {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(20), stream.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {}
                _ => open += 1,
            }
        }
        open
    });
    assert!(open <= 64, "{open} connections of one address stayed open ({refused} refused at connect)");
}

#[test]
fn operator_token_guesses_are_throttled_per_client() {
    let gateway = Gateway::start(&base_env(), &[]);
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(gateway.get("/metrics", &[("authorization", "Bearer guess-0123456789")]).status);
    }
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 5], "{statuses:?}");
    let blocked = gateway.get("/metrics", &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))]);
    assert_eq!(blocked.status, 429, "a blocked client stays blocked for the window, right token or not");
    assert!(blocked.header("retry-after").is_some());
    assert_eq!(gateway.get("/health", &[]).status, 200, "unauthenticated routes are not affected");
}

#[test]
fn two_host_headers_are_refused() {
    let gateway = Gateway::start(&base_env(), &[]);
    let response = request(gateway.address, "GET", "/health", &[("Host", "evil.example")], b"");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "Gateway request has more than one Host header.");
}
