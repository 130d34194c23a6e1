//! A fake Slack Web API on loopback: `POST /api/<method>` with the bot token as a bearer header,
//! scripted answers per method (status, `Retry-After`, body), one-shot answers for the first call
//! whose body matches, recorded calls with their times, and the external upload flow
//! (`files.getUploadURLExternal` hands out `/upload/<file id>` on this same server).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::time::Instant;

/// What the fake answers with: a whole JSON body.
type Body = http_body_util::Full<bytes::Bytes>;

pub const TOKEN: &str = "xoxb-1111-2222-FakeSlackBotTokenForTests";
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A scripted answer: HTTP status, `Retry-After` seconds, JSON body.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Value,
}

pub struct ConditionalAnswer {
    pub method: String,
    pub matches: Box<dyn Fn(&Value) -> bool>,
    pub answer: Answer,
}

#[derive(Default)]
pub struct FakeSlack {
    /// Every call: (method, body). Form bodies are recorded as an object of their fields;
    /// uploads as `{"bytes": <text>}` under the method `upload`.
    pub requests: Vec<(String, Value)>,
    pub requested_at: Vec<Instant>,
    pub scripted: HashMap<String, VecDeque<Answer>>,
    pub scripted_if: Vec<ConditionalAnswer>,
    pub base_url: String,
    next_ts: u64,
}

impl FakeSlack {
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.requests.iter().filter(|(m, _)| m == method).map(|(_, b)| b.clone()).collect()
    }

    pub fn call_times(&self, method: &str) -> Vec<Instant> {
        self.requests.iter().zip(&self.requested_at).filter(|((m, _), _)| m == method).map(|(_, at)| *at).collect()
    }

    /// The next call of `method` answers `status` with `{"ok": false, "error": error}`.
    pub fn error(&mut self, method: &str, status: u16, error: &str, retry_after: Option<u64>) {
        let answer = Answer { status, retry_after, body: json!({"ok": false, "error": error}) };
        self.scripted.entry(method.to_owned()).or_default().push_back(answer);
    }

    /// The first call of `method` whose body `matches` fails once.
    pub fn error_once_if(
        &mut self,
        method: &str,
        matches: impl Fn(&Value) -> bool + 'static,
        status: u16,
        error: &str,
        retry_after: Option<u64>,
    ) {
        self.scripted_if.push(ConditionalAnswer {
            method: method.to_owned(),
            matches: Box::new(matches),
            answer: Answer { status, retry_after, body: json!({"ok": false, "error": error}) },
        });
    }

    /// Texts of every `chat.postMessage`.
    pub fn texts_posted(&self) -> Vec<String> {
        self.calls("chat.postMessage").iter().filter_map(|b| b["text"].as_str().map(str::to_owned)).collect()
    }
}

pub type Shared = Rc<RefCell<FakeSlack>>;

/// Starts the fake on the current `LocalSet`; returns the API base URL (`http://…/api`).
pub async fn start(slack: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    slack.borrow_mut().base_url = format!("http://{address}");
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let slack = Rc::clone(&slack);
            let service = hyper::service::service_fn(move |request| {
                let slack = Rc::clone(&slack);
                async move { Ok::<_, std::convert::Infallible>(answer(slack, request).await) }
            });
            tokio::task::spawn_local(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    format!("http://{address}/api")
}

fn reply(answer: &Answer) -> http::Response<Body> {
    let mut response = super::json_response(answer.status, &answer.body);
    if let Some(seconds) = answer.retry_after {
        response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

fn ok(body: Value) -> http::Response<Body> {
    let mut body = body;
    body["ok"] = Value::Bool(true);
    reply(&Answer { status: 200, retry_after: None, body })
}

async fn answer(slack: Shared, request: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
    let path = request.uri().path().to_owned();
    let authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    if let Some(file_id) = path.strip_prefix("/upload/") {
        let mut state = slack.borrow_mut();
        state.requests.push((
            "upload".into(),
            json!({"file": file_id, "bytes": String::from_utf8_lossy(&bytes), "authorization": authorization}),
        ));
        state.requested_at.push(Instant::now());
        return reply(&Answer { status: 200, retry_after: None, body: json!({}) });
    }
    let Some(method) = path.strip_prefix("/api/").map(str::to_owned) else {
        return reply(&Answer {
            status: 404,
            retry_after: None,
            body: json!({"ok": false, "error": "unknown_method"}),
        });
    };
    if authorization != format!("Bearer {TOKEN}") {
        return reply(&Answer { status: 200, retry_after: None, body: json!({"ok": false, "error": "invalid_auth"}) });
    }
    let body: Value = if content_type.starts_with("application/x-www-form-urlencoded") {
        Value::Object(
            form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), Value::from(v.into_owned()))).collect(),
        )
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    {
        let mut state = slack.borrow_mut();
        state.requests.push((method.clone(), body.clone()));
        state.requested_at.push(Instant::now());
    }
    let conditional = {
        let mut state = slack.borrow_mut();
        let index = state.scripted_if.iter().position(|c| c.method == method && (c.matches)(&body));
        index.map(|i| state.scripted_if.remove(i))
    };
    if let Some(conditional) = conditional {
        return reply(&conditional.answer);
    }
    let scripted = slack.borrow_mut().scripted.get_mut(&method).and_then(VecDeque::pop_front);
    if let Some(answer) = scripted {
        return reply(&answer);
    }
    match method.as_str() {
        "auth.test" => ok(
            json!({"url": "https://acme.slack.com/", "team": "Acme", "user": "gateway", "team_id": "T0ACME", "user_id": "U0BOT"}),
        ),
        "chat.postMessage" => {
            let mut state = slack.borrow_mut();
            state.next_ts += 1;
            let ts = format!("1700000000.{:06}", state.next_ts);
            ok(json!({"channel": body["channel"], "ts": ts, "message": {"text": body["text"], "ts": ts}}))
        }
        "chat.update" => ok(json!({"channel": body["channel"], "ts": body["ts"], "text": body["text"]})),
        "files.getUploadURLExternal" => {
            let base = slack.borrow().base_url.clone();
            ok(json!({"upload_url": format!("{base}/upload/F0FILE1"), "file_id": "F0FILE1"}))
        }
        "files.completeUploadExternal" => {
            let channel = body["channel_id"].clone();
            let mut shares = json!({});
            shares[channel.as_str().unwrap_or("C0")] = json!([{"ts": "1700000099.000001"}]);
            ok(json!({"files": [{"id": "F0FILE1", "title": body["files"][0]["title"], "shares": {"public": shares}}]}))
        }
        _ => ok(json!({})),
    }
}

/// Waits `delay` on the tokio clock (handy for paused-clock tests).
pub async fn pause(delay: Duration) {
    tokio::time::sleep(delay).await;
}
