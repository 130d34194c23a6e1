//! `probe`, the container health check: exit 0 when the gateway answers 2xx on loopback, 1 when it
//! answers anything else, refuses or hangs (within the timeout), 64 for a URL it will not probe.

use crate::support;

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::{base_env, command, Gateway, TempDir};

fn probe(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = TempDir::new("probe");
    command(&dir.0, env).arg("probe").args(args).output().unwrap()
}

#[test]
fn probe_answers_for_a_running_gateway() {
    let gateway = Gateway::start(&base_env(), &[]);
    let base = format!("http://{}", gateway.address);
    let port = gateway.address.port().to_string();

    let health = probe(&[], &["--url", &base]);
    assert_eq!(health.status.code(), Some(0), "{}", String::from_utf8_lossy(&health.stderr));
    assert!(String::from_utf8_lossy(&health.stdout).contains("/health -> 200"));

    // Without --url the probe finds the listener the way `run` does: from the environment.
    let configured = probe(&[("OPEN_COWORK_GATEWAY_PORT", &port)], &[]);
    assert_eq!(configured.status.code(), Some(0), "{}", String::from_utf8_lossy(&configured.stderr));
    let wildcard = probe(&[("OPEN_COWORK_GATEWAY_HOST", "0.0.0.0"), ("OPEN_COWORK_GATEWAY_PORT", &port)], &[]);
    assert_eq!(wildcard.status.code(), Some(0), "a wildcard bind is probed on loopback");

    // The test Cloud (port 9) never connects, so the gateway is alive but not ready: 503, exit 1.
    let ready = probe(&[("OPEN_COWORK_GATEWAY_PORT", &port)], &["--ready"]);
    assert_eq!(ready.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ready.stderr).contains("/ready -> 503"), "{ready:?}");
}

#[test]
fn probe_fails_when_nothing_answers_in_time() {
    // Refused: bind a port, then free it.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = probe(&[], &["--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(refused.status.code(), Some(1));

    // Accepted but never answered: the deadline ends it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ready", listener.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut sink = [0u8; 256];
        let _ = stream.read(&mut sink);
        std::thread::sleep(Duration::from_secs(3));
    });
    let started = Instant::now();
    let hung = probe(&[], &["--url", &url, "--timeout-ms", "300"]);
    assert_eq!(hung.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(String::from_utf8_lossy(&hung.stderr).contains("failed"), "{hung:?}");
    holder.join().unwrap();
}

#[test]
fn probe_refuses_urls_off_loopback() {
    for url in ["http://example.com/health", "https://127.0.0.1:8790/health", "http://10.0.0.1:8790", "127.0.0.1"] {
        let output = probe(&[], &["--url", url]);
        assert_eq!(output.status.code(), Some(64), "{url}");
    }
    assert_eq!(probe(&[], &["--bogus"]).status.code(), Some(64));
}
