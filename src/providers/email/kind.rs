//! The email kind, described once: see [`crate::config::providers::kind::KindParts`].

use super::EmailProvider;
use crate::channel::DoctorCheck;
use crate::config::providers::email::{parse_address, EmailSettings};
use crate::config::providers::kind::{AddedEntry, EntryCheck, KindParts, SetupFlag, SetupInput, SetupOutput, Shortcuts, Typed};
use crate::config::{ConfigError, KindSettings, ProviderConfig};
use crate::providers::kinds::LocalFuture;
use crate::providers::kinds::{settings_of, Built, ChannelKind};
use crate::providers::ProviderFactory;

pub const KIND: KindParts = KindParts::new(shortcut, check, &ChannelKind { build, doctor }).setup(FLAGS, setup);

impl KindSettings for EmailSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn shortcut(env: &Shortcuts) -> AddedEntry {
    let Some(secret) = env.var("EMAIL_INBOUND_SECRET") else { return Ok(None) };
    Ok(Some(env.entry(
        env.var("EMAIL_DOMAIN"),
        vec![("inboundSecret", Some(secret)), ("smtpPassword", env.var("EMAIL_SMTP_PASSWORD"))],
        vec![
            ("from", env.var("EMAIL_FROM")),
            ("inboundAddress", env.var("EMAIL_ADDRESS")),
            ("smtpHost", env.var("EMAIL_SMTP_HOST")),
            ("smtpPort", env.var("EMAIL_SMTP_PORT")),
            ("smtpSecure", env.var("EMAIL_SMTP_SECURE")),
            ("smtpUsername", env.var("EMAIL_SMTP_USERNAME")),
            ("maxAttachmentBytes", env.var("EMAIL_MAX_ATTACHMENT_BYTES")),
            ("smtpAllowPlaintext", env.var("EMAIL_SMTP_ALLOW_PLAINTEXT")),
            ("smtpCaFile", env.var("EMAIL_SMTP_CA_FILE")),
            ("subject", env.var("EMAIL_SUBJECT")),
        ],
    )))
}

/// The relay posts mail as a request body, so attachments are bounded by the body cap. Only an
/// enabled entry is built, so only it needs what construction checks (a `from` with an address, a
/// readable CA file); the shared rules run for every entry.
fn check(entry: &mut EntryCheck) -> Result<Typed, ConfigError> {
    entry.bound_attachments_by_the_body_cap()?;
    entry.require_credentials(&["inboundSecret"])?;
    entry.require_settings(&["from", "smtpHost"])?;
    if !entry.enabled {
        return Ok(None);
    }
    let mut settings = EmailSettings::parse(entry.id, entry.credentials, entry.settings)?;
    settings.apply_globals(entry.context.env, entry.context.raw)?;
    Ok(EntryCheck::typed(settings))
}

const FLAGS: &[SetupFlag] = &[
    SetupFlag {
        name: "--email-from",
        value: Some("ADDRESS"),
        help: "the reply sender, agent@example.com or Agent <agent@example.com> (required for email)",
    },
    SetupFlag {
        name: "--smtp-host",
        value: Some("HOST"),
        help: "the SMTP server replies go through (required for email)",
    },
    SetupFlag {
        name: "--smtp-port",
        value: Some("PORT"),
        help: "default 465 with --smtp-secure, else 25 (STARTTLS is required unless the host is loopback)",
    },
    SetupFlag { name: "--smtp-secure", value: None, help: "implicit TLS from the first byte (port 465)" },
    SetupFlag { name: "--smtp-username", value: Some("USER"), help: "SMTP AUTH PLAIN user (sent over TLS only)" },
    SetupFlag { name: "--smtp-password", value: Some("PASSWORD"), help: "SMTP AUTH PLAIN password" },
    SetupFlag {
        name: "--inbound-secret",
        value: Some("S"),
        help: "the secret the mail relay presents; generated when not given",
    },
];

/// The flags, checked as `check-config` will check the file.
fn check_flags(input: &SetupInput) -> Result<(), String> {
    let from = input.value("--email-from").ok_or("--email-from is required for the email provider.")?;
    if parse_address(from).is_none() || from.contains(['\r', '\n']) {
        return Err(
            "--email-from must contain an address, e.g. agent@example.com or \"Agent <agent@example.com>\".".into()
        );
    }
    let host = input.value("--smtp-host").ok_or("--smtp-host is required for the email provider.")?;
    if host.trim().is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err("--smtp-host must be a host name, e.g. smtp.example.com.".into());
    }
    if let Some(port) = input.value("--smtp-port") {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err("--smtp-port must be from 1 to 65535.".into());
        }
    }
    if input.value("--smtp-password").is_some() && input.value("--smtp-username").is_none() {
        return Err("--smtp-password needs --smtp-username.".into());
    }
    Ok(())
}

/// A mail relay may run on this machine (a Postfix pipe), so the gateway listens publicly only
/// when a public URL is given.
fn setup(input: &SetupInput) -> Result<SetupOutput, String> {
    check_flags(input)?;
    let secret = input.secret_or_generated("--inbound-secret")?;
    let mut out = SetupOutput { listens_publicly: input.public_url.is_some(), ..SetupOutput::default() };
    let value = |flag: &str| input.value(flag).unwrap_or_default().to_owned();
    out.set("OPEN_COWORK_GATEWAY_EMAIL_INBOUND_SECRET", secret);
    out.set("OPEN_COWORK_GATEWAY_EMAIL_CHANNEL_BINDING_ID", "email");
    out.set("OPEN_COWORK_GATEWAY_EMAIL_FROM", value("--email-from"));
    out.set("OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST", value("--smtp-host"));
    out.set("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PORT", value("--smtp-port"));
    out.set("OPEN_COWORK_GATEWAY_EMAIL_SMTP_SECURE", if input.switch("--smtp-secure") { "true" } else { "false" });
    out.set("OPEN_COWORK_GATEWAY_EMAIL_SMTP_USERNAME", value("--smtp-username"));
    out.set("OPEN_COWORK_GATEWAY_EMAIL_SMTP_PASSWORD", value("--smtp-password"));
    Ok(out)
}

fn build(_: &ProviderFactory, config: &ProviderConfig) -> Built {
    let settings = settings_of::<EmailSettings>(config)?;
    Ok(std::rc::Rc::new(EmailProvider::new(config.id.clone(), settings)?))
}

fn doctor<'a>(_: &'a ProviderFactory, config: &'a ProviderConfig) -> LocalFuture<'a, Vec<DoctorCheck>> {
    Box::pin(async move {
        match settings_of::<EmailSettings>(config) {
            Ok(settings) => super::doctor::check(&config.id, settings).await,
            Err(problem) => vec![DoctorCheck::fail(config.id.as_str(), problem)],
        }
    })
}
