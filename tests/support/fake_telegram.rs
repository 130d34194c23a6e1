//! A fake Telegram Bot API on loopback: `POST /bot<token>/<method>`, scriptable answers per
//! method, recorded requests, and `getUpdates` that serves queued updates and confirms them by
//! offset the way Telegram does. Failures can also be scripted by time (until a paused-clock
//! instant), by request (the next call whose body matches) and answers can be slowed down.

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

pub const TOKEN: &str = "123456789:FakeTelegramBotTokenForTests00000";

#[derive(Default)]
pub struct FakeBot {
    /// Every call: (method, body).
    pub requests: Vec<(String, Value)>,
    /// When each of `requests` arrived, on the tokio clock (paused in tests about timing).
    pub requested_at: Vec<Instant>,
    /// Updates not yet confirmed by an offset.
    pub updates: VecDeque<Value>,
    /// Scripted answers per method, used before the defaults: (HTTP status, body).
    pub scripted: HashMap<String, VecDeque<(u16, Value)>>,
    /// Answers per method that apply while the tokio clock is before the instant, after
    /// `scripted` and before the defaults: (until, HTTP status, body).
    pub failing_until: HashMap<String, (Instant, u16, Value)>,
    /// One-shot answers for the first call of a method whose body matches, checked first.
    pub scripted_if: Vec<ConditionalAnswer>,
    /// How long the fake waits before answering a method (on the tokio clock).
    pub delays: HashMap<String, Duration>,
    pub webhook_url: String,
    next_message_id: i64,
    /// When set, Telegram's per-chat flood control: a `sendMessage` to a chat less than this
    /// after the last one it accepted for that chat is answered 429 (`retry_after: 1`).
    pub per_chat_limit: Option<Duration>,
    last_sent_to: HashMap<String, Instant>,
    /// The 429s that flood control answered.
    pub flood_refusals: u64,
}

/// A scripted answer for the first call of `method` whose body `matches`.
pub struct ConditionalAnswer {
    pub method: String,
    pub matches: Box<dyn Fn(&Value) -> bool>,
    pub status: u16,
    pub body: Value,
}

fn error_body(code: u16, description: &str, parameters: Option<Value>) -> Value {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(parameters) = parameters {
        body["parameters"] = parameters;
    }
    body
}

impl FakeBot {
    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.requests.iter().filter(|(m, _)| m == method).map(|(_, b)| b.clone()).collect()
    }

    /// When each call of `method` arrived, oldest first.
    pub fn call_times(&self, method: &str) -> Vec<Instant> {
        self.requests.iter().zip(&self.requested_at).filter(|((m, _), _)| m == method).map(|(_, at)| *at).collect()
    }

    pub fn script(&mut self, method: &str, status: u16, body: Value) {
        self.scripted.entry(method.to_owned()).or_default().push_back((status, body));
    }

    pub fn error(&mut self, method: &str, code: u16, description: &str, parameters: Option<Value>) {
        self.script(method, code, error_body(code, description, parameters));
    }

    /// Every call of `method` fails with `code` until the tokio clock reaches `until`.
    pub fn error_until(&mut self, method: &str, until: Instant, code: u16, description: &str) {
        self.failing_until.insert(method.to_owned(), (until, code, error_body(code, description, None)));
    }

    /// The first call of `method` whose body `matches` fails once with `code`.
    pub fn error_once_if(
        &mut self,
        method: &str,
        matches: impl Fn(&Value) -> bool + 'static,
        code: u16,
        description: &str,
        parameters: Option<Value>,
    ) {
        self.scripted_if.push(ConditionalAnswer {
            method: method.to_owned(),
            matches: Box::new(matches),
            status: code,
            body: error_body(code, description, parameters),
        });
    }

    /// Calls of `method` are answered `delay` after they arrive.
    pub fn delay(&mut self, method: &str, delay: Duration) {
        self.delays.insert(method.to_owned(), delay);
    }

    pub fn push_update(&mut self, update: Value) {
        self.updates.push_back(update);
    }

    pub fn texts_sent(&self) -> Vec<String> {
        self.calls("sendMessage").iter().filter_map(|b| b["text"].as_str().map(str::to_owned)).collect()
    }
}

pub type Shared = Rc<RefCell<FakeBot>>;

/// Starts the fake on the current `LocalSet`; returns its base URL.
///
/// Plain hyper with no idle timeout, like Telegram's long keep-alive: the gateway's own server
/// closes a connection idle for 10 s, and on a paused clock that close would land on the very
/// tick a 10 s `retry_after` ends, failing the retried call on a connection closed under it.
pub async fn start(bot: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let bot = Rc::clone(&bot);
            let service = hyper::service::service_fn(move |request| {
                let bot = Rc::clone(&bot);
                async move { Ok::<_, std::convert::Infallible>(answer(bot, request).await) }
            });
            tokio::task::spawn_local(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    format!("http://{address}")
}

fn reply(status: u16, body: &Value) -> http::Response<Body> {
    super::json_response(status, body)
}

async fn answer(bot: Shared, request: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
    let path = request.uri().path().to_owned();
    let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    // Multipart uploads are recorded as their content type and raw text.
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"contentType": content_type, "raw": String::from_utf8_lossy(&bytes)}));
    let Some(method) = path.strip_prefix(&format!("/bot{TOKEN}/")).map(str::to_owned) else {
        return reply(401, &json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
    };
    {
        let mut state = bot.borrow_mut();
        state.requests.push((method.clone(), body.clone()));
        state.requested_at.push(Instant::now());
    }
    let delay = bot.borrow().delays.get(&method).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let conditional = {
        let mut state = bot.borrow_mut();
        let index = state.scripted_if.iter().position(|c| c.method == method && (c.matches)(&body));
        index.map(|i| state.scripted_if.remove(i))
    };
    if let Some(answer) = conditional {
        return reply(answer.status, &answer.body);
    }
    let scripted = bot.borrow_mut().scripted.get_mut(&method).and_then(VecDeque::pop_front);
    if let Some((status, answer)) = scripted {
        return reply(status, &answer);
    }
    let failing = bot.borrow().failing_until.get(&method).filter(|(until, ..)| Instant::now() < *until).cloned();
    if let Some((_, status, answer)) = failing {
        return reply(status, &answer);
    }
    let ok = |result: Value| reply(200, &json!({"ok": true, "result": result}));
    match method.as_str() {
        "getMe" => ok(json!({"id": 42, "is_bot": true, "first_name": "Gateway", "username": "GatewayBot"})),
        "getWebhookInfo" => ok(json!({"url": bot.borrow().webhook_url, "pending_update_count": 0})),
        "deleteWebhook" => {
            bot.borrow_mut().webhook_url.clear();
            ok(json!(true))
        }
        "setWebhook" => {
            bot.borrow_mut().webhook_url = body["url"].as_str().unwrap_or("").to_owned();
            ok(json!(true))
        }
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            // An offset confirms every update below it.
            bot.borrow_mut().updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            let limit = body["limit"].as_u64().unwrap_or(100) as usize;
            let mut batch: Vec<Value> = bot.borrow().updates.iter().take(limit).cloned().collect();
            if batch.is_empty() && body["timeout"].as_u64().unwrap_or(0) > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                batch = bot.borrow().updates.iter().take(limit).cloned().collect();
            }
            ok(Value::from(batch))
        }
        "sendMessage" => {
            let mut state = bot.borrow_mut();
            if let Some(limit) = state.per_chat_limit {
                let chat = body["chat_id"].to_string();
                let now = Instant::now();
                if state.last_sent_to.get(&chat).is_some_and(|last| now < *last + limit) {
                    state.flood_refusals += 1;
                    let refusal = error_body(429, "Too Many Requests: retry after 1", Some(json!({"retry_after": 1})));
                    return reply(429, &refusal);
                }
                state.last_sent_to.insert(chat, now);
            }
            state.next_message_id += 1;
            ok(json!({"message_id": state.next_message_id, "chat": {"id": body["chat_id"]}, "text": body["text"]}))
        }
        "editMessageText" => ok(json!({"message_id": body["message_id"], "text": body["text"]})),
        _ => ok(json!(true)),
    }
}

/// A private text message update.
pub fn text_update(update_id: i64, chat: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {"message_id": update_id * 10, "date": 1_700_000_000, "text": text,
        "chat": {"id": chat, "type": "private"}, "from": {"id": chat, "is_bot": false, "first_name": "Ada"}}})
}

/// A button press on message `message_id`.
pub fn callback_update(update_id: i64, chat: i64, message_id: i64, data: &str) -> Value {
    json!({"update_id": update_id, "callback_query": {"id": format!("cbq-{update_id}"), "data": data, "from": {"id": chat, "is_bot": false},
        "message": {"message_id": message_id, "chat": {"id": chat, "type": "private"}}}})
}
