//! The slack kind, described once: see [`crate::config::providers::kind::KindParts`].

use super::SlackProvider;
use crate::channel::DoctorCheck;
use crate::config::providers::kind::{AddedEntry, EntryCheck, KindParts, SetupFlag, SetupInput, SetupOutput, Shortcuts, Typed};
use crate::config::providers::slack::SlackSettings;
use crate::config::{ConfigError, KindSettings, ProviderConfig};
use crate::providers::kinds::LocalFuture;
use crate::providers::kinds::{https_client, no_https_client, settings_of, Built, ChannelKind};
use crate::providers::ProviderFactory;

pub const KIND: KindParts = KindParts::new(shortcut, check, &ChannelKind { build, doctor })
    .secret_prefixes(&["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-"])
    .setup(FLAGS, setup);

impl KindSettings for SlackSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn shortcut(env: &Shortcuts) -> AddedEntry {
    let Some(token) = env.var("SLACK_BOT_TOKEN") else { return Ok(None) };
    let team = env.var("SLACK_TEAM_ID");
    Ok(Some(env.entry(
        team.clone(),
        vec![("botToken", Some(token)), ("signingSecret", env.var("SLACK_SIGNING_SECRET"))],
        vec![
            ("teamId", team),
            ("defaultChannelId", env.var("SLACK_DEFAULT_CHANNEL_ID")),
            ("apiBaseUrl", env.var("SLACK_API_BASE_URL")),
        ],
    )))
}

/// Both credentials are required, for disabled entries too.
fn check(entry: &mut EntryCheck) -> Result<Typed, ConfigError> {
    entry.require_credentials(&["botToken", "signingSecret"])?;
    Ok(EntryCheck::typed(SlackSettings::parse(entry.id, entry.credentials, entry.settings)?))
}

const FLAGS: &[SetupFlag] = &[
    SetupFlag {
        name: "--slack-bot-token",
        value: Some("TOKEN"),
        help: "the app's bot token, xoxb-… (required for slack)",
    },
    SetupFlag {
        name: "--slack-signing-secret",
        value: Some("S"),
        help: "the app's signing secret (required for slack)",
    },
];

/// Slack posts events to this gateway: it must be reachable at a public URL.
fn setup(input: &SetupInput) -> Result<SetupOutput, String> {
    let token = input
        .value("--slack-bot-token")
        .ok_or("--slack-bot-token is required for the Slack provider (OAuth & Permissions → Bot User OAuth Token).")?;
    let secret = input
        .value("--slack-signing-secret")
        .ok_or("--slack-signing-secret is required for the Slack provider (Basic Information → Signing Secret).")?;
    let mut out = SetupOutput {
        public_url_needed_for: Some("Slack: its Request URLs are <public-url>/webhooks/slack"),
        ..SetupOutput::default()
    };
    out.set("OPEN_COWORK_GATEWAY_SLACK_BOT_TOKEN", token);
    out.set("OPEN_COWORK_GATEWAY_SLACK_SIGNING_SECRET", secret);
    out.set("OPEN_COWORK_GATEWAY_SLACK_CHANNEL_BINDING_ID", "slack");
    Ok(out)
}

fn build(factory: &ProviderFactory, config: &ProviderConfig) -> Built {
    let settings = settings_of::<SlackSettings>(config)?;
    Ok(std::rc::Rc::new(SlackProvider::new(config.id.clone(), settings, https_client(factory, config)?)))
}

fn doctor<'a>(factory: &'a ProviderFactory, config: &'a ProviderConfig) -> LocalFuture<'a, Vec<DoctorCheck>> {
    Box::pin(async move {
        match (settings_of::<SlackSettings>(config), factory.context.http.clone()) {
            (Ok(settings), Some(http)) => super::doctor::check(&config.id, settings, http).await,
            (Err(problem), _) => vec![DoctorCheck::fail(config.id.as_str(), problem)],
            (_, None) => no_https_client(&config.id),
        }
    })
}
