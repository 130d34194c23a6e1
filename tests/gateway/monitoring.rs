//! The monitoring files in `deploy/monitoring/` against a real Prometheus (Debian's `prometheus`
//! package, with `promtool`): the alert rules pass `promtool check rules`; Prometheus scrapes a
//! running gateway (dev Cloud, fake channel, a few messages and deliveries) with the admin token
//! and loads the rules; every alert expression and every dashboard panel and variable query is
//! sent to its HTTP API: each parses, names only metrics the gateway exports, and every panel
//! and variable returns data. Needs the packages, so `#[ignore]`d here; `.ci/run` installs them
//! and runs it with `--ignored`.

#![cfg(feature = "devcloud")]

use crate::support;

use std::collections::BTreeSet;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Gateway, TempDir, ADMIN_TOKEN};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A GET over HTTP/1.0 (no chunked answers to decode); `(status, body)`.
fn get(address: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n{auth}\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let response = support::parse_response(&raw);
    (response.status, response.body)
}

fn query(prometheus: SocketAddr, expr: &str) -> Value {
    let encoded: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let (status, body) = get(prometheus, &format!("/api/v1/query?query={encoded}"), None);
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(status, 200, "{expr} does not parse: {body}");
    assert_eq!(answer["status"], "success", "{expr}: {body}");
    answer["data"]["result"].clone()
}

/// The dev Cloud as a process: its address and the environment it prints.
fn dev_cloud(dir: &Path) -> (std::process::Child, Vec<(String, String)>) {
    let mut child = support::command(dir, &[])
        .args(["dev-cloud", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut env = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let (key, value) = line.split_once('=').unwrap();
        env.push((key.to_owned(), value.to_owned()));
        if key == "OPEN_COWORK_DEVCLOUD_ADMIN_TOKEN" {
            break;
        }
    }
    (child, env)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Identifiers of the gateway's families an expression names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("open_cowork_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The dashboard's template variables as Prometheus sees them: every gateway, the fake channel.
fn expand(expr: &str) -> String {
    expr.replace("$instance", ".*").replace("$channel", "fake").replace("$__rate_interval", "1m")
}

#[test]
#[ignore = "needs Debian's prometheus package (prometheus, promtool); .ci/run installs it and runs this"]
fn prometheus_scrapes_the_gateway_and_every_rule_and_panel_query_works() {
    let rules = Path::new(ROOT).join("deploy/monitoring/alerts.yml");
    let checked = Command::new("promtool").arg("check").arg("rules").arg(&rules).output().expect("promtool");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));

    let dir = TempDir::new("monitoring");
    let (mut cloud, cloud_env) = dev_cloud(&dir.0);
    let cloud_value = |key: &str| cloud_env.iter().find(|(k, _)| k == key).unwrap().1.clone();
    let gateway = Gateway::start(
        &[
            ("OPEN_COWORK_CLOUD_BASE_URL", &cloud_value("OPEN_COWORK_CLOUD_BASE_URL")),
            ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", &cloud_value("OPEN_COWORK_GATEWAY_SERVICE_TOKEN")),
            ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN),
            ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
            ("OPEN_COWORK_GATEWAY_PORT", "0"),
        ],
        &[],
    );

    let port = free_port();
    let prometheus_address = SocketAddr::from(([127, 0, 0, 1], port));
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: open-cowork-gateway\n    authorization:\n      type: Bearer\n      credentials: {ADMIN_TOKEN}\n    static_configs:\n      - targets: [\"{}\"]\n",
        rules.display(),
        gateway.address
    );
    std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.0.join("tsdb").display()))
        .arg(format!("--web.listen-address={prometheus_address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");

    // A few messages: inbound through the fake channel's webhook (the echo agent answers) and
    // deliveries straight from Cloud.
    let cloud_address: SocketAddr = cloud_value("OPEN_COWORK_CLOUD_BASE_URL")["http://".len()..].parse().unwrap();
    let cloud_admin = format!("Bearer {}", cloud_value("OPEN_COWORK_DEVCLOUD_ADMIN_TOKEN"));
    for n in 0..3 {
        let message = json!({"id": format!("m{n}"), "text": format!("hello {n}"), "chatId": "chat-1", "userId": "u1"});
        let answer = support::request(
            gateway.address,
            "POST",
            "/webhooks/fake",
            &[("content-type", "application/json")],
            message.to_string().as_bytes(),
        );
        assert!((200..300).contains(&answer.status), "{}", answer.body);
        let delivery = json!({"deliveryId": format!("d{n}"), "channelBindingId": "fake-binding", "target": {"externalChatId": "chat-2"}, "payload": {"text": format!("delivery {n}")}});
        let enqueued = support::request(
            cloud_address,
            "POST",
            "/api/channels/deliveries",
            &[("authorization", &cloud_admin), ("content-type", "application/json")],
            delivery.to_string().as_bytes(),
        );
        assert_eq!(enqueued.status, 201, "{}", enqueued.body);
    }

    // Until Prometheus has a few scrapes with the deliveries in them and the rules evaluated.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "Prometheus never saw the deliveries");
        std::thread::sleep(Duration::from_millis(500));
        if TcpStream::connect(prometheus_address).is_err() {
            continue;
        }
        let sent = query(prometheus_address, "open_cowork_gateway_deliveries_sent_total >= 3");
        let samples = query(prometheus_address, "count_over_time(open_cowork_gateway_uptime_seconds[1m]) >= 5");
        if sent.as_array().is_some_and(|r| !r.is_empty()) && samples.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
    }

    let (_, exposition) = get(gateway.address, "/metrics", Some(ADMIN_TOKEN));
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let check_names = |expr: &str| {
        let names = metric_names(expr);
        assert!(!names.is_empty() || expr.contains("up{"), "{expr} names no gateway metric");
        for name in names {
            assert!(exported.contains(&name), "{expr} names {name}, which the gateway does not export");
        }
    };

    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let alert_exprs: Vec<&str> = rules_text.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).collect();
    assert_eq!(alert_exprs.len(), 8, "one expression per alert");
    for expr in &alert_exprs {
        check_names(expr);
        query(prometheus_address, expr);
    }
    let (_, loaded) = get(prometheus_address, "/api/v1/rules", None);
    let loaded: Value = serde_json::from_str(&loaded).unwrap();
    let rules_loaded = loaded["data"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(rules_loaded.len(), 8, "{loaded}");
    for rule in rules_loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/monitoring/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert_eq!(variables[0]["type"], "datasource", "the data source is a variable");
    for variable in &variables[1..] {
        let definition = variable["definition"].as_str().unwrap();
        let inner = definition.strip_prefix("label_values(").unwrap().strip_suffix(')').unwrap();
        let (selector, label) = inner.rsplit_once(", ").unwrap();
        check_names(selector);
        let encoded: String = form_urlencoded::byte_serialize(expand(selector).as_bytes()).collect();
        let (status, body) = get(prometheus_address, &format!("/api/v1/label/{label}/values?match[]={encoded}"), None);
        let values: Value = serde_json::from_str(&body).unwrap();
        assert!(status == 200 && !values["data"].as_array().unwrap().is_empty(), "{definition}: {body}");
    }
    let channel_rows: Vec<&Value> =
        dashboard["panels"].as_array().unwrap().iter().filter(|p| p["repeat"] == "channel").collect();
    assert_eq!(channel_rows.len(), 1, "one row per channel, repeated by the channel variable");
    let panels: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row").collect();
    assert!(panels.len() >= 10);
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        let mut with_data = 0;
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            check_names(expr);
            with_data += usize::from(!query(prometheus_address, &expand(expr)).as_array().unwrap().is_empty());
        }
        assert!(with_data > 0, "panel {} shows no data", panel["title"]);
    }

    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = cloud.kill();
    let _ = cloud.wait();
}
