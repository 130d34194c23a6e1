//! `doctor` for a bot: the token (`getMe`) and who receives its updates (`getWebhookInfo`).
//! Nothing is sent and no update is consumed. A second `getUpdates` poller cannot be seen from
//! outside without taking its updates away, so it is not probed: a webhook set elsewhere is the
//! conflict that can be seen.

use std::time::Duration;

use serde_json::{json, Value};

use super::api::{BotApi, TelegramError};
use crate::channel::DoctorCheck;
use crate::config::providers::telegram::TelegramSettings;
use crate::config::redact::redact_text;
use crate::net::https::HttpsClient;

const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Only the host of a webhook URL is shown: its path may carry a secret.
fn host_of(url: &str) -> String {
    url.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_owned)).unwrap_or_else(|| "another host".into())
}

fn failure(error: &TelegramError) -> String {
    match error.code() {
        Some(401 | 404) => {
            "Telegram rejects the bot token: copy it again from @BotFather into OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN."
                .into()
        }
        Some(_) => format!("Telegram refused the call ({}).", redact_text(&error.to_string())),
        None => "Telegram's Bot API is unreachable: check DNS, the firewall and apiBaseUrl.".into(),
    }
}

/// The checks of one telegram entry.
pub async fn check(id: &str, settings: &TelegramSettings, http: HttpsClient) -> Vec<DoctorCheck> {
    let api = BotApi::new(http, &settings.api_base_url, settings.bot_token.clone());
    let name = |what: &str| format!("{id}: {what}");
    let me = match api.call("getMe", &json!({}), CALL_TIMEOUT).await {
        Ok(me) => me,
        Err(error) => return vec![DoctorCheck::fail(name("bot token (getMe)"), failure(&error))],
    };
    let username = me.get("username").and_then(Value::as_str).unwrap_or("?");
    let mut checks = vec![DoctorCheck::pass(name("bot token (getMe)"), format!("accepted for @{username}"))];
    let info = match api.call("getWebhookInfo", &json!({}), CALL_TIMEOUT).await {
        Ok(info) => info,
        Err(error) => {
            checks.push(DoctorCheck::fail(name("webhook (getWebhookInfo)"), failure(&error)));
            return checks;
        }
    };
    let current = info.get("url").and_then(Value::as_str).unwrap_or_default();
    let wanted = settings.webhook.as_ref().map(|w| w.url());
    checks.push(match (wanted, current) {
        (None, "") => DoctorCheck::pass(name("webhook (getWebhookInfo)"), "none set: polling receives the updates"),
        (None, other) => DoctorCheck::fail(
            name("webhook (getWebhookInfo)"),
            format!("a webhook to {} holds this bot, so polling gets 409 conflicts: stop the deployment that set it, or delete it (deleteWebhook), or use webhook mode.", host_of(other)),
        ),
        (Some(_), "") => DoctorCheck::pass(name("webhook (getWebhookInfo)"), "none set yet: the gateway registers it on start"),
        (Some(wanted), other) if wanted == other => DoctorCheck::pass(name("webhook (getWebhookInfo)"), "set to this gateway"),
        (Some(_), other) => DoctorCheck::fail(
            name("webhook (getWebhookInfo)"),
            format!("set to {} by another deployment: stop it first, or the two will take the bot from each other.", host_of(other)),
        ),
    });
    checks
}
