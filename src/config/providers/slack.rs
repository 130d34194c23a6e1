//! Slack's settings, checked and typed once while the configuration loads.
//!
//! Both credentials are required, for disabled entries too (as upstream).
//! `settings.apiBaseUrl` receives the bot token on every call, so it must be HTTPS, or HTTP on
//! loopback for the fake Web API of the tests; upstream does not validate it at all.
//! `teamId` and `defaultChannelId` are accepted and kept for `/diagnostics`, but unused (as upstream).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{credential, provider_error, setting_text};
use crate::config::secret::Secret;
use crate::config::urls::{is_loopback_host, parse_http_url, UrlProblem};
use crate::config::ConfigError;

/// Slack's public Web API, used unless `settings.apiBaseUrl` names another server.
pub const DEFAULT_API_BASE_URL: &str = "https://slack.com/api";

/// One Slack app installation (one bot token, one signing secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackSettings {
    /// `credentials.botToken` (`xoxb-…`): the `Authorization: Bearer` of every Web API call.
    pub bot_token: Secret,
    /// `credentials.signingSecret`: the HMAC key of the v0 signature on every inbound request.
    pub signing_secret: Secret,
    /// `settings.apiBaseUrl`, without a trailing `/`.
    pub api_base_url: String,
    /// `settings.teamId`: accepted but unused; events are not checked against it (as upstream).
    pub team_id: Option<String>,
}

impl SlackSettings {
    /// Checks a normalised slack entry and types it.
    pub fn parse(
        id: &str,
        credentials: &BTreeMap<String, Secret>,
        settings: &Map<String, Value>,
    ) -> Result<Self, ConfigError> {
        let bot_token =
            credential(credentials, "botToken").ok_or_else(|| provider_error(id, "requires credential botToken."))?;
        let signing_secret = credential(credentials, "signingSecret")
            .ok_or_else(|| provider_error(id, "requires credential signingSecret."))?;
        let api_base_url = match setting_text(settings, "apiBaseUrl") {
            Some(base) => {
                api_base_url(id, &base)?;
                base.trim_end_matches('/').to_owned()
            }
            None => DEFAULT_API_BASE_URL.to_owned(),
        };
        Ok(Self {
            bot_token: bot_token.clone(),
            signing_secret: signing_secret.clone(),
            api_base_url,
            team_id: setting_text(settings, "teamId"),
        })
    }
}

/// The bot token travels in a header to this URL: only TLS, or a server on this machine.
fn api_base_url(id: &str, base: &str) -> Result<(), ConfigError> {
    let problem = match parse_http_url(base) {
        Ok(url) if url.https || is_loopback_host(&url.host) => return Ok(()),
        Ok(_) | Err(UrlProblem::Unparseable | UrlProblem::NotHttp) => "must be an HTTPS URL, or HTTP on loopback.",
        Err(UrlProblem::Credentials) => {
            "must not contain credentials (user:password@); Slack authenticates with the bot token."
        }
        Err(UrlProblem::BadPort) => "must have a port from 1 to 65535 (or none).",
    };
    Err(provider_error(id, format!("setting apiBaseUrl (OPEN_COWORK_GATEWAY_SLACK_API_BASE_URL) {problem}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(credentials: &[(&str, &str)], settings: Value) -> Result<SlackSettings, String> {
        let credentials = credentials.iter().map(|(k, v)| ((*k).to_owned(), Secret::new(*v))).collect();
        let Value::Object(settings) = settings else { panic!("settings must be an object") };
        SlackSettings::parse("slack-x", &credentials, &settings).map_err(|e| e.to_string())
    }

    const BOTH: [(&str, &str); 2] = [("botToken", "xoxb-1"), ("signingSecret", "sign")];

    #[test]
    fn defaults_and_a_loopback_base() {
        let settings = parse(&BOTH, json!({"teamId": "T1"})).unwrap();
        assert_eq!(settings.api_base_url, DEFAULT_API_BASE_URL);
        assert_eq!(settings.team_id.as_deref(), Some("T1"));
        assert_eq!(settings.signing_secret.expose(), "sign");
        let local = parse(&BOTH, json!({"apiBaseUrl": "http://127.0.0.1:9/api/"})).unwrap();
        assert_eq!(local.api_base_url, "http://127.0.0.1:9/api");
    }

    #[test]
    fn every_check_names_the_setting() {
        let cases = [
            (vec![("signingSecret", "s")], json!({}), "requires credential botToken."),
            (vec![("botToken", "xoxb-1"), ("signingSecret", " ")], json!({}), "requires credential signingSecret."),
            (BOTH.to_vec(), json!({"apiBaseUrl": "http://slack.example.com/api"}), "must be an HTTPS URL"),
            (
                BOTH.to_vec(),
                json!({"apiBaseUrl": "https://u:PLANTED@slack.example.com"}),
                "must not contain credentials",
            ),
        ];
        for (credentials, settings, expected) in cases {
            let error = parse(&credentials, settings.clone()).unwrap_err();
            assert!(error.starts_with("Gateway provider slack-x "), "{error}");
            assert!(error.contains(expected), "{settings}: {error}");
            assert!(!error.contains("PLANTED"), "{error}");
        }
    }
}
