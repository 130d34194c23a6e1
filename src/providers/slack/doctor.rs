//! `doctor` for a Slack app: `auth.test` accepts the bot token, and the token belongs to the
//! workspace the configuration names (`teamId`). The signing secret cannot be checked from the
//! gateway's side: only a signed request from Slack proves it.

use serde_json::{json, Value};

use super::api::WebApi;
use crate::channel::DoctorCheck;
use crate::config::providers::slack::SlackSettings;
use crate::config::redact::redact_text;
use crate::net::https::HttpsClient;

const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// The check of one slack entry.
pub async fn check(id: &str, settings: &SlackSettings, http: HttpsClient) -> Vec<DoctorCheck> {
    let api = WebApi::new(http, &settings.api_base_url, settings.bot_token.clone(), CALL_TIMEOUT);
    let name = format!("{id}: bot token and team (auth.test)");
    let me = match api.call("auth.test", &json!({})).await {
        Ok(me) => me,
        Err(error) if error.is_auth() => {
            return vec![DoctorCheck::fail(
                name,
                "Slack rejects the bot token: copy the Bot User OAuth Token (xoxb-) into OPEN_COWORK_GATEWAY_SLACK_BOT_TOKEN.",
            )]
        }
        Err(error) => {
            return vec![DoctorCheck::fail(name, format!("Slack refused auth.test ({}).", redact_text(&error.to_string())))]
        }
    };
    let team = me.get("team_id").and_then(Value::as_str).unwrap_or_default();
    vec![match settings.team_id.as_deref() {
        Some(wanted) if wanted != team => DoctorCheck::fail(
            name,
            format!("the token belongs to team {team}, the configuration names {wanted}: use the token of the app installed in {wanted}, or fix teamId."),
        ),
        _ => DoctorCheck::pass(name, format!("accepted for team {team}")),
    }]
}
