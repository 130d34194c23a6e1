//! The Bot API client on the shared HTTPS client. The bot token is part of
//! every URL, so URLs are never logged or put in an error: errors name only the method.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Map, Value};

use crate::channel::pacing::SendPacer;
use crate::config::Secret;
use crate::net::https::HttpsClient;

/// Bot API answers larger than this are refused (a `getUpdates` batch of 100 fits easily).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Telegram's published limits, kept before it has to answer 429: about 30 messages a second
/// per bot, one a second per chat, 20 a minute per group or channel.
const PER_BOT: Duration = Duration::from_millis(34);
const PER_CHAT: Duration = Duration::from_secs(1);
const PER_GROUP: Duration = Duration::from_secs(3);
/// Chats whose pace is remembered at once.
const PACED_CHATS: usize = 4096;

/// The chat a new message goes to, for the methods that post one (edits have their own pacer).
fn paced_chat(method: &str, chat: Option<&Value>) -> Option<(String, Duration)> {
    if !matches!(method, "sendMessage" | "sendDocument" | "sendPhoto") {
        return None;
    }
    let chat = match chat? {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    // Groups, supergroups and channels have negative ids or `@names`.
    let interval = if chat.starts_with('-') || chat.starts_with('@') { PER_GROUP } else { PER_CHAT };
    Some((chat, interval))
}

/// A failed Bot API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelegramError {
    /// Telegram answered `ok: false`.
    #[error("Call to '{method}' failed! ({code}: {description})")]
    Api {
        method: &'static str,
        code: u16,
        description: String,
        retry_after: Option<u64>,
        migrate_to_chat_id: Option<i64>,
    },
    /// Transport failure, timeout or a body that is not the Bot API's JSON.
    #[error("Network request for '{method}' failed!")]
    Network { method: &'static str },
}

impl TelegramError {
    pub fn code(&self) -> Option<u16> {
        match self {
            TelegramError::Api { code, .. } => Some(*code),
            TelegramError::Network { .. } => None,
        }
    }

    pub fn description(&self) -> &str {
        match self {
            TelegramError::Api { description, .. } => description,
            TelegramError::Network { .. } => "",
        }
    }

    /// Worth retrying: network trouble, 5xx, 429.
    pub fn is_transient(&self) -> bool {
        matches!(self, TelegramError::Network { .. }) || self.code().is_some_and(|c| c == 429 || c >= 500)
    }
}

/// One bot's API endpoint.
pub struct BotApi {
    http: HttpsClient,
    /// `https://api.telegram.org` or a self-hosted Bot API server, without a trailing `/`.
    base: String,
    token: Secret,
    /// New messages wait for their slot (per bot, per chat, per group).
    pacer: SendPacer,
}

impl BotApi {
    pub fn new(http: HttpsClient, base: &str, token: Secret) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned(), token, pacer: SendPacer::new(PER_BOT, PACED_CHATS) }
    }

    async fn pace(&self, method: &str, chat: Option<&Value>) {
        if let Some((chat, interval)) = paced_chat(method, chat) {
            self.pacer.wait(&chat, interval).await;
        }
    }

    /// `POST <base>/bot<token>/<method>` with a JSON body; `timeout` bounds the whole exchange
    /// (not the wait for a send slot).
    pub async fn call(&self, method: &'static str, body: &Value, timeout: Duration) -> Result<Value, TelegramError> {
        self.pace(method, body.get("chat_id")).await;
        let bytes = serde_json::to_vec(body).map_err(|_| TelegramError::Network { method })?;
        self.post(method, "application/json".to_owned(), Bytes::from(bytes), timeout).await
    }

    /// `multipart/form-data` with text fields and one file part (`sendDocument`).
    pub async fn call_with_file(
        &self,
        method: &'static str,
        fields: &[(&str, String)],
        file: (&str, &str, &[u8]),
        timeout: Duration,
    ) -> Result<Value, TelegramError> {
        let chat = fields.iter().find(|(name, _)| *name == "chat_id").map(|(_, value)| Value::from(value.as_str()));
        self.pace(method, chat.as_ref()).await;
        let boundary = format!("ocg{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut body = Vec::with_capacity(file.2.len() + 512);
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let (name, filename, data) = file;
        // Quotes and line breaks would end the header: keep the rest of the name.
        let filename: String = filename.chars().filter(|c| !matches!(c, '"' | '\r' | '\n' | '\\')).collect();
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.post(method, format!("multipart/form-data; boundary={boundary}"), Bytes::from(body), timeout).await
    }

    async fn post(
        &self,
        method: &'static str,
        content_type: String,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Value, TelegramError> {
        let network = || TelegramError::Network { method };
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/bot{}/{method}", self.base, self.token.expose()))
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|_| network())?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|_| network())?;
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| network())?
                .to_bytes();
            let parsed: Map<String, Value> = serde_json::from_slice(&body).map_err(|_| network())?;
            if parsed.get("ok") == Some(&Value::Bool(true)) {
                return Ok(parsed.get("result").cloned().unwrap_or(Value::Null));
            }
            let parameters = parsed.get("parameters");
            Err(TelegramError::Api {
                method,
                code: parsed.get("error_code").and_then(Value::as_u64).map_or(0, |c| c as u16),
                description: parsed.get("description").and_then(Value::as_str).unwrap_or("").to_owned(),
                retry_after: parameters.and_then(|p| p.get("retry_after")).and_then(Value::as_u64),
                migrate_to_chat_id: parameters.and_then(|p| p.get("migrate_to_chat_id")).and_then(Value::as_i64),
            })
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or_else(|_| Err(network()))
    }
}

/// `chat_id` as Telegram wants it: a number for decimal ids, else the string (`@channel`).
pub fn chat_id(chat: &str) -> Value {
    let digits = chat.strip_prefix('-').unwrap_or(chat);
    match chat.parse::<i64>() {
        Ok(number)
            if !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && number.unsigned_abs() < (1 << 53) =>
        {
            Value::from(number)
        }
        _ => Value::from(chat),
    }
}

/// `message_thread_id` for a target: only a real topic id, never the chat id itself
/// (Telegram refuses a thread id that is not a topic; upstream sent the chat id).
pub fn thread_id(chat: &str, thread: Option<&str>) -> Option<i64> {
    let thread = thread?.trim();
    if thread.is_empty() || thread == chat {
        return None;
    }
    thread.parse::<i64>().ok().filter(|t| *t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_convert_like_the_bot_api_expects() {
        assert_eq!(chat_id("123"), Value::from(123));
        assert_eq!(chat_id("-100111222333"), Value::from(-100_111_222_333i64));
        assert_eq!(chat_id("@channel"), Value::from("@channel"));
        assert_eq!(chat_id(" 12 "), Value::from(" 12 "));
        assert_eq!(thread_id("123", Some("123")), None, "D6: the chat id is not a topic");
        assert_eq!(thread_id("-100", Some("456")), Some(456));
        assert_eq!(thread_id("1", Some("abc")), None);
        assert_eq!(thread_id("1", None), None);
    }

    #[test]
    fn error_messages_name_only_the_method() {
        let error = TelegramError::Api {
            method: "getMe",
            code: 401,
            description: "Unauthorized".into(),
            retry_after: None,
            migrate_to_chat_id: None,
        };
        assert_eq!(error.to_string(), "Call to 'getMe' failed! (401: Unauthorized)");
        assert_eq!(
            TelegramError::Network { method: "getUpdates" }.to_string(),
            "Network request for 'getUpdates' failed!"
        );
        assert!(TelegramError::Network { method: "x" }.is_transient());
        assert!(!error.is_transient());
    }
}
