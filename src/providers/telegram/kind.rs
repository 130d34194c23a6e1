//! The telegram kind, described once: see [`crate::config::providers::kind::KindParts`].

use super::TelegramProvider;
use crate::channel::DoctorCheck;
use crate::config::providers::kind::{AddedEntry, EntryCheck, KindParts, SetupFlag, SetupInput, SetupOutput, Shortcuts, Typed};
use crate::config::providers::telegram::TelegramSettings;
use crate::config::{ConfigError, KindSettings, ProviderConfig};
use crate::providers::kinds::LocalFuture;
use crate::providers::kinds::{https_client, no_https_client, settings_of, Built, ChannelKind};
use crate::providers::ProviderFactory;

pub const KIND: KindParts = KindParts::new(shortcut, check, &ChannelKind { build, doctor }).setup(FLAGS, setup);

impl KindSettings for TelegramSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn shortcut(env: &Shortcuts) -> AddedEntry {
    let Some(token) = env.var("TELEGRAM_BOT_TOKEN") else { return Ok(None) };
    let public_url = env.var("TELEGRAM_PUBLIC_URL").or_else(|| env.gateway_public_url.map(str::to_owned));
    Ok(Some(env.entry(
        None,
        vec![("botToken", Some(token)), ("webhookSecret", env.var("TELEGRAM_WEBHOOK_SECRET"))],
        vec![
            ("mode", env.var("TELEGRAM_MODE")),
            ("publicBaseUrl", public_url),
            ("respondInGroups", env.var("TELEGRAM_RESPOND_IN_GROUPS")),
            ("apiBaseUrl", env.var("TELEGRAM_API_BASE_URL")),
        ],
    )))
}

/// The gateway's public URL is the default public base URL of a webhook-mode bot.
fn check(entry: &mut EntryCheck) -> Result<Typed, ConfigError> {
    if entry.setting_text("publicBaseUrl").is_none() {
        if let Some(url) = entry.context.gateway_public_url {
            entry.settings.insert("publicBaseUrl".into(), url.into());
        }
    }
    Ok(EntryCheck::typed(TelegramSettings::parse(entry.id, entry.credentials, entry.settings)?))
}

const FLAGS: &[SetupFlag] = &[
    SetupFlag { name: "--telegram-mode", value: Some("polling|webhook"), help: "default polling" },
    SetupFlag { name: "--telegram-bot-token", value: Some("TOKEN"), help: "from BotFather (required for telegram)" },
    SetupFlag {
        name: "--telegram-webhook-secret",
        value: Some("S"),
        help: "generated when webhook mode needs one and none is given",
    },
];

fn setup(input: &SetupInput) -> Result<SetupOutput, String> {
    let webhook = match input.value("--telegram-mode") {
        None | Some("polling") => false,
        Some("webhook") => true,
        Some(_) => return Err("--telegram-mode must be one of: polling, webhook".into()),
    };
    let token =
        input.value("--telegram-bot-token").ok_or("--telegram-bot-token is required for the Telegram provider.")?;
    let secret = match (input.value("--telegram-webhook-secret"), webhook) {
        (Some(secret), _) => secret.to_owned(),
        (None, true) => (input.generate_secret)()?,
        (None, false) => String::new(),
    };
    let mut out =
        SetupOutput { public_url_needed_for: webhook.then_some("Telegram webhook mode"), ..SetupOutput::default() };
    out.set("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", token);
    out.set("OPEN_COWORK_GATEWAY_TELEGRAM_CHANNEL_BINDING_ID", "telegram");
    out.set("OPEN_COWORK_GATEWAY_TELEGRAM_MODE", if webhook { "webhook" } else { "polling" });
    out.set("OPEN_COWORK_GATEWAY_TELEGRAM_PUBLIC_URL", input.public_url.unwrap_or(""));
    out.set("OPEN_COWORK_GATEWAY_TELEGRAM_WEBHOOK_SECRET", secret);
    Ok(out)
}

fn build(factory: &ProviderFactory, config: &ProviderConfig) -> Built {
    let settings = settings_of::<TelegramSettings>(config)?;
    let http = https_client(factory, config)?;
    Ok(std::rc::Rc::new(TelegramProvider::new(config.id.clone(), settings, http, factory.context.state_dir.as_deref())))
}

fn doctor<'a>(factory: &'a ProviderFactory, config: &'a ProviderConfig) -> LocalFuture<'a, Vec<DoctorCheck>> {
    Box::pin(async move {
        match (settings_of::<TelegramSettings>(config), factory.context.http.clone()) {
            (Ok(settings), Some(http)) => super::doctor::check(&config.id, settings, http).await,
            (Err(problem), _) => vec![DoctorCheck::fail(config.id.as_str(), problem)],
            (_, None) => no_https_client(&config.id),
        }
    })
}
