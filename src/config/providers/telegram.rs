//! Telegram's settings, checked and typed once while the configuration loads,
//! so the provider is built from values that are known to be good and never reads JSON again.
//!
//! The checks are upstream's, in its order, plus the port's own: the webhook secret must
//! be one Telegram accepts as `secret_token`, `webhookPath` must be a path, the Bot API base URL must
//! be HTTPS or loopback, and neither URL may carry credentials or a port outside 1–65535. They run
//! for disabled entries too, as every upstream provider rule does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{credential, provider_error, setting_text};
use crate::config::secret::Secret;
use crate::config::urls::{is_loopback_host, normalize_public_https_url, parse_http_url, PublicUrlProblem, UrlProblem};
use crate::config::ConfigError;

/// Telegram's public Bot API, used unless `settings.apiBaseUrl` names another server.
pub const DEFAULT_API_BASE_URL: &str = "https://api.telegram.org";

/// One Telegram bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramSettings {
    /// `credentials.botToken`: part of every Bot API URL, so it must never be logged.
    pub bot_token: Secret,
    /// `settings.apiBaseUrl`, without a trailing `/`. Upstream has no such setting; it exists for
    /// a self-hosted Bot API server and for the fake Bot API of the integration tests.
    pub api_base_url: String,
    /// `None` is long polling (`settings.mode` `polling`, the default); `Some` is webhook mode.
    pub webhook: Option<TelegramWebhookSettings>,
    /// `settings.respondInGroups`.
    pub respond_in_groups: GroupPolicy,
    /// `settings.observeUnmentionedGroupMessages`: pass every group message to Cloud, even those
    /// the bot would not answer. Only a JSON `true` enables it (upstream reads it that strictly).
    pub observe_unmentioned_group_messages: bool,
}

/// What webhook mode needs: where Telegram posts updates and the secret it must send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramWebhookSettings {
    /// `settings.publicBaseUrl`, else `OPEN_COWORK_GATEWAY_PUBLIC_URL`: public, HTTPS, no trailing `/`.
    pub public_base_url: String,
    /// `settings.webhookPath`, default `/webhooks/<percent-encoded id>` (the gateway's own route);
    /// another path only makes sense behind a proxy that rewrites it to that route.
    pub path: String,
    /// `credentials.webhookSecret`: the `secret_token` given to `setWebhook`, and the value the
    /// `X-Telegram-Bot-Api-Secret-Token` header of every update must carry.
    pub secret: Secret,
}

impl TelegramWebhookSettings {
    /// The URL given to `setWebhook`.
    pub fn url(&self) -> String {
        format!("{}{}", self.public_base_url, self.path)
    }
}

/// `settings.respondInGroups`: which group messages the bot answers (private chats always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupPolicy {
    /// Only `/commands` (the default).
    #[default]
    CommandsOnly,
    /// Commands, messages that mention the bot, and replies to the bot.
    MentionsAndReplies,
    /// Every message.
    All,
}

impl GroupPolicy {
    /// Exactly `mentions_and_replies` or `all`; any other value means `commands_only`, as
    /// upstream reads it. The quietest policy is the safe fallback.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("mentions_and_replies") => Self::MentionsAndReplies,
            Some("all") => Self::All,
            _ => Self::CommandsOnly,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommandsOnly => "commands_only",
            Self::MentionsAndReplies => "mentions_and_replies",
            Self::All => "all",
        }
    }
}

impl TelegramSettings {
    /// Checks a normalised telegram entry and types it. `mode` and `publicBaseUrl` are written back
    /// in their normalised form, because `/diagnostics` shows `settings`.
    pub fn parse(
        id: &str,
        credentials: &BTreeMap<String, Secret>,
        settings: &mut Map<String, Value>,
    ) -> Result<Self, ConfigError> {
        let bot_token = credential(credentials, "botToken")
            .ok_or_else(|| provider_error(id, "requires credential botToken."))?
            .clone();
        let mode = setting_text(settings, "mode").unwrap_or_else(|| "polling".to_owned());
        let webhook = match mode.as_str() {
            "polling" => None,
            "webhook" => Some(webhook_settings(id, credentials, settings)?),
            other => {
                return Err(provider_error(
                    id,
                    format!("has unsupported Telegram mode {other}. Use polling or webhook."),
                ))
            }
        };
        if let Some(webhook) = &webhook {
            settings.insert("publicBaseUrl".into(), webhook.public_base_url.clone().into());
        }
        settings.insert("mode".into(), mode.into());
        let api_base_url = match setting_text(settings, "apiBaseUrl") {
            Some(base) => {
                api_base_url(id, &base)?;
                base.trim_end_matches('/').to_owned()
            }
            None => DEFAULT_API_BASE_URL.to_owned(),
        };
        Ok(Self {
            bot_token,
            api_base_url,
            webhook,
            respond_in_groups: GroupPolicy::parse(setting_text(settings, "respondInGroups").as_deref()),
            observe_unmentioned_group_messages: settings.get("observeUnmentionedGroupMessages")
                == Some(&Value::Bool(true)),
        })
    }
}

/// Webhook mode's three inputs, in upstream's order: secret, public URL, then the URL's shape.
fn webhook_settings(
    id: &str,
    credentials: &BTreeMap<String, Secret>,
    settings: &Map<String, Value>,
) -> Result<TelegramWebhookSettings, ConfigError> {
    let secret = credential(credentials, "webhookSecret").ok_or_else(|| {
        provider_error(id, "requires credential webhookSecret when Telegram webhook mode is enabled.")
    })?;
    // Telegram refuses other secret_token values at setWebhook time, which would leave the provider
    // failed after a "successful" start; refuse them here instead.
    let text = secret.expose();
    if text.len() > 256 || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(provider_error(
            id,
            "credential webhookSecret must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's secret_token rule).",
        ));
    }
    let url = setting_text(settings, "publicBaseUrl").ok_or_else(|| {
        provider_error(
            id,
            "requires setting publicBaseUrl or OPEN_COWORK_GATEWAY_PUBLIC_URL when Telegram webhook mode is enabled.",
        )
    })?;
    // Named before upstream's checks, which would call such a URL invalid without saying why.
    // Telegram is given this URL by setWebhook, so a password in it would leave the machine.
    match parse_http_url(&url) {
        Err(UrlProblem::Credentials) => {
            return Err(provider_error(
                id,
                "Telegram publicBaseUrl must not contain credentials (user:password@); Telegram authenticates with credential webhookSecret.",
            ))
        }
        Err(UrlProblem::BadPort) => {
            return Err(provider_error(id, "Telegram publicBaseUrl must have a port from 1 to 65535 (or none)."))
        }
        _ => {}
    }
    let public_base_url = normalize_public_https_url(&url).map_err(|problem| {
        let detail = match problem {
            PublicUrlProblem::Invalid => "be a valid HTTPS URL.",
            PublicUrlProblem::NotHttps => "use HTTPS.",
            PublicUrlProblem::Loopback => "be publicly reachable, not loopback.",
        };
        provider_error(id, format!("Telegram publicBaseUrl must {detail}"))
    })?;
    let path = match setting_text(settings, "webhookPath") {
        Some(path) => {
            // Joined to the base URL as text: anything but a plain absolute path would change the
            // host, the query or the fragment of the URL Telegram is given.
            let plain = path.starts_with('/')
                && !path.starts_with("//")
                && path.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'\\'));
            if !plain {
                return Err(provider_error(
                    id,
                    format!(
                        "setting webhookPath must be an absolute URL path such as /webhooks/{id}, without spaces, ? or #."
                    ),
                ));
            }
            path
        }
        None => format!("/webhooks/{}", crate::util::percent::encode_component(id)),
    };
    Ok(TelegramWebhookSettings { public_base_url, path, secret: secret.clone() })
}

/// `settings.apiBaseUrl`: the bot token travels in the URL path, so only TLS or a server on this
/// machine. Credentials are refused rather than redacted: the HTTP client never sends userinfo as
/// basic auth (a Bot API server behind basic auth would reject every call anyway), and it logs the
/// URL's authority, userinfo included, at debug level, where no redaction of ours can reach.
/// A self-hosted Bot API behind basic auth belongs behind a loopback proxy that adds the header.
fn api_base_url(id: &str, base: &str) -> Result<(), ConfigError> {
    let problem = match parse_http_url(base) {
        Ok(url) if url.https || is_loopback_host(&url.host) => return Ok(()),
        Ok(_) | Err(UrlProblem::Unparseable | UrlProblem::NotHttp) => "must be an HTTPS URL, or HTTP on loopback.",
        Err(UrlProblem::Credentials) => {
            "must not contain credentials (user:password@): they are never sent, only logged; \
             a self-hosted Bot API that needs basic auth belongs behind a loopback proxy that adds it."
        }
        Err(UrlProblem::BadPort) => "must have a port from 1 to 65535 (or none).",
    };
    Err(provider_error(id, format!("setting apiBaseUrl (OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL) {problem}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(credentials: &[(&str, &str)], settings: Value) -> Result<(TelegramSettings, Value), String> {
        let credentials = credentials.iter().map(|(k, v)| ((*k).to_owned(), Secret::new(*v))).collect();
        let Value::Object(mut settings) = settings else { panic!("settings must be an object") };
        let parsed = TelegramSettings::parse("telegram-x", &credentials, &mut settings).map_err(|e| e.to_string())?;
        Ok((parsed, Value::Object(settings)))
    }

    #[test]
    fn polling_is_the_default_and_the_public_api_is_used() {
        let (settings, written) = parse(&[("botToken", "1:abc")], json!({})).unwrap();
        assert_eq!(settings.bot_token.expose(), "1:abc");
        assert_eq!(settings.api_base_url, DEFAULT_API_BASE_URL);
        assert_eq!(settings.webhook, None);
        assert_eq!(settings.respond_in_groups, GroupPolicy::CommandsOnly);
        assert!(!settings.observe_unmentioned_group_messages);
        assert_eq!(written, json!({"mode": "polling"}));
    }

    #[test]
    fn webhook_mode_builds_the_url_from_the_base_and_the_encoded_id() {
        let credentials = [("botToken", "1:abc"), ("webhookSecret", "s3cr3t_-X")];
        let settings = json!({"mode": " webhook ", "publicBaseUrl": "https://bot.example.com/base/", "respondInGroups": "all", "observeUnmentionedGroupMessages": true, "apiBaseUrl": "http://127.0.0.1:9/"});
        let (settings, written) = parse(&credentials, settings).unwrap();
        let webhook = settings.webhook.clone().unwrap();
        assert_eq!(webhook.url(), "https://bot.example.com/base/webhooks/telegram-x");
        assert_eq!(webhook.secret.expose(), "s3cr3t_-X");
        assert_eq!(written["publicBaseUrl"], "https://bot.example.com/base");
        assert_eq!(written["mode"], "webhook");
        assert_eq!(settings.api_base_url, "http://127.0.0.1:9");
        assert_eq!(settings.respond_in_groups, GroupPolicy::All);
        assert!(settings.observe_unmentioned_group_messages);

        let credentials = [("botToken", "1:abc"), ("webhookSecret", "s")];
        let custom = json!({"mode": "webhook", "publicBaseUrl": "https://bot.example.com", "webhookPath": "/tg/in"});
        assert_eq!(parse(&credentials, custom).unwrap().0.webhook.unwrap().url(), "https://bot.example.com/tg/in");
    }

    #[test]
    fn every_check_names_the_setting() {
        let token = ("botToken", "1:abc");
        let cases = [
            (vec![], json!({}), "requires credential botToken."),
            (vec![("botToken", "  ")], json!({}), "requires credential botToken."),
            (vec![token], json!({"mode": "Webhook"}), "has unsupported Telegram mode Webhook. Use polling or webhook."),
            (vec![token], json!({"mode": "webhook"}), "requires credential webhookSecret when Telegram"),
            (vec![token, ("webhookSecret", "a b")], json!({"mode": "webhook"}), "credential webhookSecret must be"),
            (vec![token, ("webhookSecret", "ab")], json!({"mode": "webhook"}), "requires setting publicBaseUrl or"),
            (
                vec![token, ("webhookSecret", "ab")],
                json!({"mode": "webhook", "publicBaseUrl": "https://localhost"}),
                "Telegram publicBaseUrl must be publicly reachable, not loopback.",
            ),
            (
                vec![token, ("webhookSecret", "ab")],
                json!({"mode": "webhook", "publicBaseUrl": "https://x.example.com", "webhookPath": "//evil.example/x"}),
                "setting webhookPath must be an absolute URL path",
            ),
            (
                vec![token, ("webhookSecret", "ab")],
                json!({"mode": "webhook", "publicBaseUrl": "https://x.example.com", "webhookPath": "/a?b"}),
                "setting webhookPath must be an absolute URL path",
            ),
            (vec![token], json!({"apiBaseUrl": "http://api.example.com"}), "setting apiBaseUrl"),
            (
                vec![token],
                json!({"apiBaseUrl": "https://bot:PLANTED@botapi.example.com"}),
                "setting apiBaseUrl (OPEN_COWORK_GATEWAY_TELEGRAM_API_BASE_URL) must not contain credentials",
            ),
            (vec![token], json!({"apiBaseUrl": "http://127.0.0.1:99999"}), "must have a port from 1 to 65535"),
            (
                vec![token, ("webhookSecret", "ab")],
                json!({"mode": "webhook", "publicBaseUrl": "https://u:PLANTED@x.example.com"}),
                "Telegram publicBaseUrl must not contain credentials",
            ),
            (
                vec![token, ("webhookSecret", "ab")],
                json!({"mode": "webhook", "publicBaseUrl": "https://x.example.com:0"}),
                "Telegram publicBaseUrl must have a port from 1 to 65535",
            ),
        ];
        for (credentials, settings, expected) in cases {
            let error = parse(&credentials, settings.clone()).unwrap_err();
            assert!(error.starts_with("Gateway provider telegram-x "), "{error}");
            assert!(error.contains(expected), "{settings}: {error}");
            assert!(!error.contains("PLANTED"), "the value is never quoted: {error}");
        }
    }

    #[test]
    fn group_policy_is_exact_and_falls_back_to_commands_only() {
        assert_eq!(GroupPolicy::parse(Some("mentions_and_replies")), GroupPolicy::MentionsAndReplies);
        assert_eq!(GroupPolicy::parse(Some("ALL")), GroupPolicy::CommandsOnly);
        assert_eq!(GroupPolicy::parse(None).as_str(), "commands_only");
    }
}
