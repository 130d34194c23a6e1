//! Provider list resolution: env shortcuts or `OPEN_COWORK_GATEWAY_PROVIDERS`,
//! merged with the JSON `providers` list, then normalised entry by entry in upstream's order.
//!
//! Each kind this crate implements has a module here with one typed settings struct
//! ([`ChannelSettings`]), parsed and checked once while the configuration loads, so a provider is
//! built from typed values and a bad entry fails `check-config` (exit 78) instead of the start.
//! An enabled entry of a kind this binary cannot run fails the load the same way.

pub mod cli;
pub mod email;
pub mod fake;
pub mod slack;
pub mod telegram;
pub mod webhook;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use smol_str::SmolStr;

use super::env::{non_blank, parse_integer, Env};
use super::secret::Secret;
use super::ConfigError;

/// Upper bound of `settings.maxAttachmentBytes` (and of the server body cap).
pub const MAX_ATTACHMENT_BYTES: i64 = 64 * 1024 * 1024;

/// The channel kinds a provider entry may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Telegram,
    Slack,
    Email,
    Webhook,
    Discord,
    Whatsapp,
    Signal,
    Cli,
    Fake,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 9] = [
        Self::Telegram,
        Self::Slack,
        Self::Email,
        Self::Webhook,
        Self::Discord,
        Self::Whatsapp,
        Self::Signal,
        Self::Cli,
        Self::Fake,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telegram => "telegram",
            Self::Slack => "slack",
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Discord => "discord",
            Self::Whatsapp => "whatsapp",
            Self::Signal => "signal",
            Self::Cli => "cli",
            Self::Fake => "fake",
        }
    }

    /// The cargo feature that compiles this kind in.
    pub fn cargo_feature(self) -> &'static str {
        match self {
            Self::Discord | Self::Whatsapp | Self::Signal => "bridges",
            Self::Fake => "devcloud",
            other => other.as_str(),
        }
    }

    /// Whether this binary was built with the kind's feature.
    pub fn compiled_in(self) -> bool {
        match self {
            Self::Telegram => cfg!(feature = "telegram"),
            Self::Slack => cfg!(feature = "slack"),
            Self::Email => cfg!(feature = "email"),
            Self::Webhook => cfg!(feature = "webhook"),
            Self::Discord | Self::Whatsapp | Self::Signal => cfg!(feature = "bridges"),
            Self::Cli => cfg!(feature = "cli"),
            Self::Fake => cfg!(feature = "devcloud"),
        }
    }

    /// Whether this crate has a provider for the kind (whatever the cargo features): exactly the
    /// kinds with a settings module here and an arm in [`ChannelSettings`]. Upstream's other kinds
    /// are still resolved and checked as upstream does, but only a disabled entry of them loads.
    pub fn is_implemented(self) -> bool {
        matches!(
            self,
            Self::Telegram
                | Self::Slack
                | Self::Email
                | Self::Webhook
                | Self::Discord
                | Self::Whatsapp
                | Self::Signal
                | Self::Cli
                | Self::Fake
        )
    }

    /// Kinds whose inbound arrives as a request body, so attachments are bounded by the body cap.
    fn is_request_body_backed(self) -> bool {
        matches!(self, Self::Webhook | Self::Discord | Self::Whatsapp | Self::Signal | Self::Email)
    }

    fn is_bridge(self) -> bool {
        matches!(self, Self::Discord | Self::Whatsapp | Self::Signal)
    }
}

/// The typed settings of one entry, for the kinds this binary can run. Each arm exists only when
/// its kind is compiled in, so a provider never has to handle settings of a kind it was built without.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSettings {
    #[cfg(feature = "telegram")]
    Telegram(telegram::TelegramSettings),
    #[cfg(feature = "slack")]
    Slack(slack::SlackSettings),
    /// Boxed: in an e-mail-only build it would be the one large variant.
    #[cfg(feature = "email")]
    Email(Box<email::EmailSettings>),
    /// The generic webhook and the three bridges: one implementation, the kind inside.
    #[cfg(any(feature = "webhook", feature = "bridges"))]
    Webhook(webhook::WebhookSettings),
    #[cfg(feature = "cli")]
    Cli(cli::CliSettings),
    #[cfg(feature = "devcloud")]
    Fake(fake::FakeSettings),
    /// A disabled entry of a kind this binary cannot run (not implemented, or its cargo feature is
    /// off). It stays in the list so the placeholder check and `/diagnostics` still see it, but it
    /// is never started: an *enabled* entry of such a kind fails the load.
    NotInThisBuild,
}

impl ChannelSettings {
    /// What an operator should know this entry risks (shown in `/diagnostics`).
    pub fn risks(&self, id: &str) -> Vec<String> {
        match self {
            #[cfg(any(feature = "webhook", feature = "bridges"))]
            Self::Webhook(settings) if settings.policy.allow_private => vec![format!(
                "Provider {id} may deliver to private, loopback and link-local addresses (allowPrivateDelivery): \
                 a compromised Cloud or relay URL can reach this machine's network."
            )],
            _ => {
                let _ = id;
                Vec::new()
            }
        }
    }

    /// Checks and types the settings of a normalised entry. Telegram's checks run whatever the
    /// build, because every entry is checked, disabled or not (as upstream).
    #[cfg_attr(not(feature = "devcloud"), allow(unused_variables))] // `context` feeds only the fake provider
    fn parse(
        kind: ProviderKind,
        id: &str,
        enabled: bool,
        credentials: &BTreeMap<String, Secret>,
        settings: &mut Map<String, Value>,
        context: &ProviderContext,
    ) -> Result<Self, ConfigError> {
        Ok(match kind {
            #[cfg(feature = "telegram")]
            ProviderKind::Telegram => Self::Telegram(telegram::TelegramSettings::parse(id, credentials, settings)?),
            #[cfg(not(feature = "telegram"))]
            ProviderKind::Telegram => {
                telegram::TelegramSettings::parse(id, credentials, settings)?;
                Self::NotInThisBuild
            }
            #[cfg(feature = "slack")]
            ProviderKind::Slack => Self::Slack(slack::SlackSettings::parse(id, credentials, settings)?),
            #[cfg(not(feature = "slack"))]
            ProviderKind::Slack => {
                slack::SlackSettings::parse(id, credentials, settings)?;
                Self::NotInThisBuild
            }
            // Only an enabled entry is built, so only it needs what construction checks (a `from`
            // with an address, a readable CA file); the generic rules ran for every entry before.
            ProviderKind::Email if enabled => {
                let parsed = email::EmailSettings::parse(id, credentials, settings)?;
                #[cfg(feature = "email")]
                return Ok(Self::Email(Box::new(parsed)));
                #[cfg(not(feature = "email"))]
                {
                    drop(parsed);
                    Self::NotInThisBuild
                }
            }
            // The delivery URL is checked when the provider is built (by the factory, not
            // the config rules), so only an enabled entry, which is built, must carry a good one.
            ProviderKind::Webhook | ProviderKind::Discord | ProviderKind::Whatsapp | ProviderKind::Signal
                if enabled =>
            {
                let parsed = webhook::WebhookSettings::parse(kind, id, credentials, settings)?;
                #[cfg(any(feature = "webhook", feature = "bridges"))]
                if kind.compiled_in() {
                    return Ok(Self::Webhook(parsed));
                }
                drop(parsed);
                Self::NotInThisBuild
            }
            #[cfg(feature = "cli")]
            ProviderKind::Cli => Self::Cli(cli::CliSettings {}),
            #[cfg(feature = "devcloud")]
            ProviderKind::Fake => Self::Fake(fake::FakeSettings { max_file_bytes: context.max_request_body_bytes }),
            _ => Self::NotInThisBuild,
        })
    }
}

/// One normalised provider entry.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: SmolStr,
    pub kind: ProviderKind,
    pub enabled: bool,
    pub channel_binding_id: SmolStr,
    pub external_workspace_id: Option<String>,
    pub default_agent: Option<String>,
    /// Every credential is a secret, whatever its key.
    pub credentials: BTreeMap<String, Secret>,
    /// The normalised JSON settings, kept for `/diagnostics` and redaction; providers read
    /// [`ProviderConfig::channel`] instead.
    pub settings: Map<String, Value>,
    /// The same entry, checked and typed for the provider that runs it.
    pub channel: ChannelSettings,
}

impl ProviderConfig {
    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str).and_then(non_blank)
    }
}

/// Inputs of normalisation that come from the rest of the configuration.
pub struct ProviderContext<'a> {
    pub gateway_public_url: Option<&'a str>,
    pub max_request_body_bytes: usize,
}

/// Builds the final provider list from env and JSON, normalises it and applies the list rules.
pub fn resolve_providers(
    env: &Env,
    raw: &Value,
    context: &ProviderContext,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    // Checked whichever way the list is given, so a typo fails even when the switch is unused.
    super::env_flag(env, "OPEN_COWORK_GATEWAY_CLI_ENABLED")?;
    let env_list = match env.string("OPEN_COWORK_GATEWAY_PROVIDERS") {
        Some(text) => {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                ConfigError::new(format!("Invalid gateway config JSON from OPEN_COWORK_GATEWAY_PROVIDERS: {e}"))
            })?;
            match value {
                Value::Array(items) => items,
                _ => Vec::new(),
            }
        }
        None => providers_from_shortcuts(env, context.gateway_public_url),
    };
    let json_list = match raw.get("providers") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    let mut merged = merge_provider_overrides(json_list, env_list);
    if merged.is_empty() && super::env_flag(env, "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER")? {
        let binding = env.string("OPEN_COWORK_GATEWAY_FAKE_CHANNEL_BINDING_ID").unwrap_or("fake-binding");
        let mut fake = serde_json::json!({"id": "fake", "kind": "fake", "enabled": true, "channelBindingId": binding});
        if let Some(workspace) = env.string("OPEN_COWORK_GATEWAY_FAKE_WORKSPACE_ID") {
            fake["externalWorkspaceId"] = Value::from(workspace);
        }
        merged.push(fake);
    }
    let mut providers = Vec::with_capacity(merged.len());
    for (index, entry) in merged.iter().enumerate() {
        providers.push(normalize_provider(entry, index, context)?);
    }
    apply_smtp_globals(env, raw, &mut providers)?;
    for (index, provider) in providers.iter().enumerate() {
        if providers[..index].iter().any(|p| p.id == provider.id) {
            return Err(ConfigError::new(format!("Duplicate gateway provider id {}.", provider.id)));
        }
    }
    if !providers.iter().any(|p| p.enabled) {
        return Err(ConfigError::new(
            "At least one gateway provider must be enabled. Set OPEN_COWORK_GATEWAY_PROVIDERS, configure Telegram/webhook credentials, \
             or explicitly enable the local fake provider with OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER=true.",
        ));
    }
    Ok(providers)
}

/// The two global settings e-mail channels share: `timeouts.smtpMs` and the
/// private CA of `OPEN_COWORK_GATEWAY_CA_FILE` (checked with the Cloud settings, before this runs),
/// resolved exactly as `Config::timeouts` resolves them; a provider's own `smtpCaFile` wins.
#[cfg_attr(not(feature = "email"), allow(unused_variables))]
fn apply_smtp_globals(env: &Env, raw: &Value, providers: &mut [ProviderConfig]) -> Result<(), ConfigError> {
    #[cfg(feature = "email")]
    {
        let timeout = super::resolve_bounded(
            env,
            "OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS",
            raw,
            Some("/timeouts/smtpMs"),
            30_000,
            (100, 120_000),
        )? as u64;
        let ca_file = super::ca_file_setting(env).map(|(_, path)| std::path::PathBuf::from(path));
        for provider in providers.iter_mut() {
            if let ChannelSettings::Email(settings) = &mut provider.channel {
                settings.smtp_timeout = std::time::Duration::from_millis(timeout);
                if settings.ca_file.is_none() {
                    settings.ca_file.clone_from(&ca_file);
                }
            }
        }
    }
    Ok(())
}

/// `readProvidersFromEnv`: one entry per set trigger variable, in upstream's order.
fn providers_from_shortcuts(env: &Env, gateway_public_url: Option<&str>) -> Vec<Value> {
    let var = |suffix: &str| env.string(&format!("OPEN_COWORK_GATEWAY_{suffix}")).map(str::to_owned);
    let mut list = Vec::new();
    let mut push = |kind: &str,
                    binding_suffix: &str,
                    workspace: Option<String>,
                    credentials: Vec<(&str, Option<String>)>,
                    settings: Vec<(&str, Option<String>)>| {
        let mut entry = Map::new();
        entry.insert("id".into(), kind.into());
        entry.insert("kind".into(), kind.into());
        entry.insert("channelBindingId".into(), var(binding_suffix).unwrap_or_else(|| kind.to_owned()).into());
        if let Some(workspace) = workspace {
            entry.insert("externalWorkspaceId".into(), workspace.into());
        }
        let collect = |pairs: Vec<(&str, Option<String>)>| -> Map<String, Value> {
            crate::util::maps::object(pairs.into_iter().filter_map(|(k, v)| Some((k, v?))))
        };
        entry.insert("credentials".into(), Value::Object(collect(credentials)));
        entry.insert("settings".into(), Value::Object(collect(settings)));
        list.push(Value::Object(entry));
    };
    if let Some(token) = var("TELEGRAM_BOT_TOKEN") {
        let public_url = var("TELEGRAM_PUBLIC_URL").or_else(|| gateway_public_url.map(str::to_owned));
        push(
            "telegram",
            "TELEGRAM_CHANNEL_BINDING_ID",
            None,
            vec![("botToken", Some(token)), ("webhookSecret", var("TELEGRAM_WEBHOOK_SECRET"))],
            vec![
                ("mode", var("TELEGRAM_MODE")),
                ("publicBaseUrl", public_url),
                ("respondInGroups", var("TELEGRAM_RESPOND_IN_GROUPS")),
                ("apiBaseUrl", var("TELEGRAM_API_BASE_URL")),
            ],
        );
    }
    if let Some(token) = var("SLACK_BOT_TOKEN") {
        let team = var("SLACK_TEAM_ID");
        push(
            "slack",
            "SLACK_CHANNEL_BINDING_ID",
            team.clone(),
            vec![("botToken", Some(token)), ("signingSecret", var("SLACK_SIGNING_SECRET"))],
            vec![
                ("teamId", team),
                ("defaultChannelId", var("SLACK_DEFAULT_CHANNEL_ID")),
                ("apiBaseUrl", var("SLACK_API_BASE_URL")),
            ],
        );
    }
    if let Some(secret) = var("EMAIL_INBOUND_SECRET") {
        push(
            "email",
            "EMAIL_CHANNEL_BINDING_ID",
            var("EMAIL_DOMAIN"),
            vec![("inboundSecret", Some(secret)), ("smtpPassword", var("EMAIL_SMTP_PASSWORD"))],
            vec![
                ("from", var("EMAIL_FROM")),
                ("inboundAddress", var("EMAIL_ADDRESS")),
                ("smtpHost", var("EMAIL_SMTP_HOST")),
                ("smtpPort", var("EMAIL_SMTP_PORT")),
                ("smtpSecure", var("EMAIL_SMTP_SECURE")),
                ("smtpUsername", var("EMAIL_SMTP_USERNAME")),
                ("maxAttachmentBytes", var("EMAIL_MAX_ATTACHMENT_BYTES")),
                ("smtpAllowPlaintext", var("EMAIL_SMTP_ALLOW_PLAINTEXT")),
                ("smtpCaFile", var("EMAIL_SMTP_CA_FILE")),
                ("subject", var("EMAIL_SUBJECT")),
            ],
        );
    }
    for (kind, prefix) in
        [("webhook", "WEBHOOK"), ("discord", "DISCORD"), ("whatsapp", "WHATSAPP"), ("signal", "SIGNAL")]
    {
        let Some(url) = var(&format!("{prefix}_DELIVERY_URL")) else { continue };
        let workspace = if kind == "webhook" { None } else { var(&format!("{prefix}_WORKSPACE_ID")) };
        push(
            kind,
            &format!("{prefix}_CHANNEL_BINDING_ID"),
            workspace,
            vec![("sharedSecret", var(&format!("{prefix}_SHARED_SECRET")))],
            vec![
                ("deliveryUrl", Some(url)),
                ("deliveryUrlAllowedHosts", var(&format!("{prefix}_DELIVERY_ALLOWED_HOSTS"))),
                ("allowPrivateDelivery", var(&format!("{prefix}_ALLOW_PRIVATE_DELIVERY"))),
                ("maxAttachmentBytes", var(&format!("{prefix}_MAX_ATTACHMENT_BYTES"))),
            ],
        );
    }
    if var("CLI_ENABLED").as_deref().and_then(super::env::parse_bool) == Some(true) {
        push("cli", "CLI_CHANNEL_BINDING_ID", var("CLI_WORKSPACE_ID"), vec![], vec![]);
    }
    list
}

fn str_field<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    entry.get(key).and_then(Value::as_str).and_then(non_blank)
}

/// `mergeProviderOverrides`: each JSON entry takes the first unused env entry that matches by id,
/// then by kind + channel binding, then by kind alone; leftovers are appended.
fn merge_provider_overrides(json_list: Vec<Value>, env_list: Vec<Value>) -> Vec<Value> {
    if json_list.is_empty() {
        return env_list;
    }
    let mut used = vec![false; env_list.len()];
    let mut merged = Vec::with_capacity(json_list.len() + env_list.len());
    for json_entry in json_list {
        let matches: [&dyn Fn(&Value) -> bool; 3] = [
            &|env_entry| {
                str_field(env_entry, "id").is_some() && str_field(env_entry, "id") == str_field(&json_entry, "id")
            },
            &|env_entry| {
                str_field(env_entry, "kind") == str_field(&json_entry, "kind")
                    && str_field(env_entry, "channelBindingId").is_some()
                    && str_field(env_entry, "channelBindingId") == str_field(&json_entry, "channelBindingId")
            },
            &|env_entry| {
                str_field(env_entry, "kind").is_some() && str_field(env_entry, "kind") == str_field(&json_entry, "kind")
            },
        ];
        let found = matches.iter().find_map(|rule| (0..env_list.len()).find(|&i| !used[i] && rule(&env_list[i])));
        match found {
            Some(i) => {
                used[i] = true;
                merged.push(merge_pair(json_entry, &env_list[i]));
            }
            None => merged.push(json_entry),
        }
    }
    merged.extend(env_list.into_iter().zip(used).filter(|(_, used)| !used).map(|(entry, _)| entry));
    merged
}

fn merge_pair(json_entry: Value, env_entry: &Value) -> Value {
    let json_id = str_field(&json_entry, "id").map(str::to_owned);
    let json_binding = str_field(&json_entry, "channelBindingId").map(str::to_owned);
    let Value::Object(mut out) = json_entry else {
        return env_entry.clone();
    };
    if let Value::Object(env_map) = env_entry {
        for (key, value) in env_map {
            match key.as_str() {
                "credentials" | "settings" => {
                    let target = out.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if !target.is_object() {
                        *target = Value::Object(Map::new());
                    }
                    if let (Value::Object(target), Value::Object(source)) = (target, value) {
                        target.extend(source.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
    }
    if let Some(id) = json_id {
        out.insert("id".into(), id.into());
    }
    if let Some(binding) = json_binding {
        out.insert("channelBindingId".into(), binding.into());
    }
    Value::Object(out)
}

fn provider_error(id: &str, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(format!("Gateway provider {id} {detail}"))
}

/// A required credential: present and not blank once trimmed.
fn credential<'a>(credentials: &'a BTreeMap<String, Secret>, key: &str) -> Option<&'a Secret> {
    credentials.get(key).filter(|secret| non_blank(secret.expose()).is_some())
}

/// A setting string: a string, trimmed, not empty.
fn setting_text(settings: &Map<String, Value>, key: &str) -> Option<String> {
    settings.get(key).and_then(Value::as_str).and_then(non_blank).map(str::to_owned)
}

/// Why this binary cannot run an enabled entry of `kind`, if it cannot. A kind with no provider
/// at all is named as such first: rebuilding with its feature would not help.
fn unrunnable_kind(id: &str, kind: ProviderKind, compiled_in: bool) -> Option<ConfigError> {
    const FIX: &str = "remove it or disable it (\"enabled\": false).";
    let kind_name = kind.as_str();
    if !kind.is_implemented() {
        return Some(provider_error(
            id,
            format!("(kind {kind_name}) is not implemented in this build of open-cowork-gateway; {FIX}"),
        ));
    }
    (!compiled_in).then(|| {
        provider_error(
            id,
            format!(
                "(kind {kind_name}) is not compiled into this build of open-cowork-gateway (cargo feature \"{}\"); \
                 rebuild with that feature, or {FIX}",
                kind.cargo_feature()
            ),
        )
    })
}

fn is_valid_provider_id(id: &str, kind: ProviderKind) -> bool {
    if id == kind.as_str() {
        return true;
    }
    let bytes = id.as_bytes();
    let well_formed = (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    well_formed && id.starts_with(&format!("{}-", kind.as_str()))
}

/// `normalizeProvider`, rules 1–10 in order, with two project additions: after rule 3, an enabled
/// entry must name a kind this binary can run; and rule 8 (telegram) runs last, as the parse of
/// [`ChannelSettings`].
fn normalize_provider(entry: &Value, index: usize, context: &ProviderContext) -> Result<ProviderConfig, ConfigError> {
    let kind_text = match entry.get("kind") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(other) => other.to_string(),
        None => "undefined".to_owned(),
    };
    let kind = ProviderKind::parse(&kind_text)
        .ok_or_else(|| ConfigError::new(format!("Unsupported gateway provider kind: {kind_text}")))?;
    let id = str_field(entry, "id").map(str::to_owned).unwrap_or_else(|| format!("{}-{}", kind.as_str(), index + 1));
    if kind != ProviderKind::Fake && !is_valid_provider_id(&id, kind) {
        return Err(ConfigError::new(format!(
            "Channel provider id {id} must equal {kind} or start with {kind}-.",
            kind = kind.as_str()
        )));
    }
    let channel_binding_id = str_field(entry, "channelBindingId")
        .ok_or_else(|| ConfigError::new(format!("Gateway provider {id} requires channelBindingId.")))?;
    // Before any kind-specific rule: an operator should learn first that the kind cannot run here,
    // not fix its secrets for nothing. Disabled entries never run, so they load whatever their kind.
    let enabled = entry.get("enabled") != Some(&Value::Bool(false));
    if enabled {
        if let Some(error) = unrunnable_kind(&id, kind, kind.compiled_in()) {
            return Err(error);
        }
    }
    let credentials: BTreeMap<String, Secret> = match entry.get("credentials") {
        Some(Value::Object(map)) => {
            crate::util::maps::sorted(map.iter().filter_map(|(k, v)| Some((k.clone(), Secret::new(v.as_str()?)))))
        }
        _ => BTreeMap::new(),
    };
    let mut settings: Map<String, Value> = match entry.get("settings") {
        Some(Value::Object(map)) => crate::util::maps::object(
            map.iter().filter(|(_, v)| !v.is_null() && v.as_str() != Some("")).map(|(k, v)| (k.clone(), v.clone())),
        ),
        _ => Map::new(),
    };
    let has_credential = |key: &str| credential(&credentials, key).is_some();

    if kind == ProviderKind::Telegram && setting_text(&settings, "publicBaseUrl").is_none() {
        if let Some(url) = context.gateway_public_url {
            settings.insert("publicBaseUrl".into(), url.into());
        }
    }
    if kind == ProviderKind::Webhook && !has_credential("sharedSecret") {
        return Err(provider_error(&id, "requires credential sharedSecret for authenticated webhook ingress."));
    }
    if kind.is_request_body_backed() {
        let limit = context.max_request_body_bytes as i64;
        let bytes = match settings.get("maxAttachmentBytes") {
            None => limit,
            Some(value) => {
                let parsed = match value {
                    Value::Number(n) => {
                        n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    }
                    Value::String(s) => parse_integer(s),
                    _ => None,
                };
                match parsed {
                    Some(n) if (1..=MAX_ATTACHMENT_BYTES).contains(&n) => n,
                    _ => {
                        return Err(provider_error(
                            &id,
                            "maxAttachmentBytes must be an integer between 1 and 67108864.",
                        ))
                    }
                }
            }
        };
        if bytes > limit {
            return Err(provider_error(
                &id,
                format!("maxAttachmentBytes cannot exceed server.maxRequestBodyBytes ({limit})."),
            ));
        }
        settings.insert("maxAttachmentBytes".into(), bytes.into());
    }
    if kind.is_bridge() {
        if !has_credential("sharedSecret") {
            return Err(provider_error(
                &id,
                format!("requires credential sharedSecret for authenticated {} bridge ingress.", kind.as_str()),
            ));
        }
        if setting_text(&settings, "deliveryUrl").is_none() {
            return Err(provider_error(
                &id,
                format!("requires setting deliveryUrl for {} bridge delivery.", kind.as_str()),
            ));
        }
    }
    if kind == ProviderKind::Slack {
        for key in ["botToken", "signingSecret"] {
            if !has_credential(key) {
                return Err(provider_error(&id, format!("requires credential {key}.")));
            }
        }
    }
    if kind == ProviderKind::Email {
        if !has_credential("inboundSecret") {
            return Err(provider_error(&id, "requires credential inboundSecret."));
        }
        for key in ["from", "smtpHost"] {
            if setting_text(&settings, key).is_none() {
                return Err(provider_error(&id, format!("requires setting {key}.")));
            }
        }
    }
    // Rule 8 (telegram) runs here, in the kind's own module; it shares no setting with rules 5-7,
    // 9 and 10, so running it after them changes no outcome.
    let channel = ChannelSettings::parse(kind, &id, enabled, &credentials, &mut settings, context)?;
    Ok(ProviderConfig {
        id: id.into(),
        kind,
        enabled,
        channel_binding_id: channel_binding_id.into(),
        external_workspace_id: str_field(entry, "externalWorkspaceId").map(str::to_owned),
        default_agent: str_field(entry, "defaultAgent").map(str::to_owned),
        credentials,
        settings,
        channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> ProviderContext<'static> {
        ProviderContext { gateway_public_url: None, max_request_body_bytes: 1024 * 1024 }
    }

    #[cfg(feature = "telegram")]
    #[test]
    fn json_provider_takes_the_env_token_by_kind() {
        let env = Env::from_pairs([("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", "123456:abcdefghijklmnopqrstuvwxyz")]);
        let raw = json!({"providers": [{"id": "telegram-acme", "kind": "telegram", "channelBindingId": "acme"}]});
        let providers = resolve_providers(&env, &raw, &context()).unwrap();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].id, "telegram-acme");
        assert_eq!(providers[0].channel_binding_id, "acme");
        assert_eq!(providers[0].credentials["botToken"].expose(), "123456:abcdefghijklmnopqrstuvwxyz");
        assert_eq!(providers[0].setting_str("mode"), Some("polling"));
    }

    #[test]
    fn shortcuts_keep_the_spec_order_and_unmatched_env_entries_are_appended() {
        let env = Env::from_pairs([
            ("OPEN_COWORK_GATEWAY_CLI_ENABLED", "true"),
            ("OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_URL", "https://hooks.example.com/in"),
            ("OPEN_COWORK_GATEWAY_WEBHOOK_SHARED_SECRET", "s3cr3t-value-for-tests"),
            ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", "123456:abcdefghijklmnopqrstuvwxyz"),
        ]);
        // The merge alone (no entry is normalised here): the order is upstream's.
        let json_list = vec![json!({"id": "slack-x", "kind": "slack", "channelBindingId": "s"})];
        let merged = merge_provider_overrides(json_list, providers_from_shortcuts(&env, None));
        let ids: Vec<_> = merged.iter().filter_map(|entry| str_field(entry, "id")).collect();
        assert_eq!(ids, ["slack-x", "telegram", "webhook", "cli"]);
    }

    #[test]
    fn attachment_cap_defaults_to_the_body_cap_and_cannot_exceed_it() {
        // Disabled, so the rule is checked although this build cannot run a webhook entry.
        let entry =
            json!({"kind": "webhook", "enabled": false, "channelBindingId": "w", "credentials": {"sharedSecret": "x"}});
        let provider = normalize_provider(&entry, 0, &context()).unwrap();
        assert_eq!(provider.id, "webhook-1");
        assert_eq!(provider.settings["maxAttachmentBytes"], json!(1048576));
        let entry = json!({"kind": "webhook", "enabled": false, "channelBindingId": "w", "credentials": {"sharedSecret": "x"}, "settings": {"maxAttachmentBytes": "2048"}});
        assert_eq!(normalize_provider(&entry, 0, &context()).unwrap().settings["maxAttachmentBytes"], json!(2048));
        let entry = json!({"kind": "webhook", "enabled": false, "channelBindingId": "w", "credentials": {"sharedSecret": "x"}, "settings": {"maxAttachmentBytes": 2097152}});
        let err = normalize_provider(&entry, 0, &context()).unwrap_err().to_string();
        assert_eq!(
            err,
            "Gateway provider webhook-1 maxAttachmentBytes cannot exceed server.maxRequestBodyBytes (1048576)."
        );
    }

    #[test]
    fn provider_ids_follow_the_kind_prefix_rule() {
        assert!(is_valid_provider_id("telegram", ProviderKind::Telegram));
        assert!(is_valid_provider_id("telegram-acme_2", ProviderKind::Telegram));
        assert!(!is_valid_provider_id("telegramx", ProviderKind::Telegram));
        assert!(!is_valid_provider_id("slack-acme", ProviderKind::Telegram));
        assert!(!is_valid_provider_id("telegram-Acme", ProviderKind::Telegram));
    }

    #[test]
    fn settings_drop_nulls_and_empty_strings_and_credentials_drop_non_strings() {
        let entry = json!({"kind": "cli", "enabled": false, "channelBindingId": "c", "credentials": {"a": 1, "b": "x"}, "settings": {"n": null, "e": "", "k": "v", "z": 0}});
        let provider = normalize_provider(&entry, 0, &context()).unwrap();
        assert_eq!(provider.credentials.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(Value::Object(provider.settings), json!({"k": "v", "z": 0}));
    }

    #[test]
    #[cfg(feature = "webhook")]
    fn allowing_private_delivery_is_reported_as_a_risk() {
        let providers = |allow: &str| {
            format!(
                r#"[{{"id":"webhook","kind":"webhook","channelBindingId":"w","credentials":{{"sharedSecret":"s3cret"}},"settings":{{"deliveryUrl":"https://10.0.0.1/in","allowPrivateDelivery":{allow}}}}}]"#
            )
        };
        let with = crate::config::test_config(&[("OPEN_COWORK_GATEWAY_PROVIDERS", &providers("true"))]);
        let risks = with.risks();
        assert_eq!(risks.len(), 1, "{risks:?}");
        assert!(risks[0].starts_with("Provider webhook may deliver to private"), "{risks:?}");
        let public = r#"[{"id":"webhook","kind":"webhook","channelBindingId":"w","credentials":{"sharedSecret":"s3cret"},"settings":{"deliveryUrl":"https://relay.example.com/in"}}]"#;
        let without = crate::config::test_config(&[("OPEN_COWORK_GATEWAY_PROVIDERS", public)]);
        assert!(without.risks().is_empty());
    }

    #[test]
    fn an_enabled_entry_of_a_kind_this_build_cannot_run_fails_with_one_line_naming_it() {
        // Every upstream kind has a provider now (e-mail was the last), so the "not implemented"
        // rule can no longer be reached from a config; its message is still pinned here for the
        // next kind upstream adds, and the rule that remains reachable — a kind whose cargo
        // feature is off — is pinned below through `unrunnable_kind`.
        assert!(ProviderKind::ALL.iter().all(|kind| kind.is_implemented()), "a kind lost its provider");
        assert!(unrunnable_kind("email-main", ProviderKind::Email, true).is_none());
        let email_off = json!({"id": "email", "kind": "email", "enabled": false, "channelBindingId": "e", "credentials": {"inboundSecret": "x"}, "settings": {"from": "a@example.com", "smtpHost": "smtp.example.com"}});
        let provider = normalize_provider(&email_off, 0, &context()).unwrap();
        assert_eq!(provider.channel, ChannelSettings::NotInThisBuild, "a disabled entry loads, typed as never run");
        let email_off_broken = json!({"id": "email", "kind": "email", "enabled": false, "channelBindingId": "e"});
        assert_eq!(
            normalize_provider(&email_off_broken, 0, &context()).unwrap_err().to_string(),
            "Gateway provider email requires credential inboundSecret.",
            "a disabled entry is still checked by the spec's rules"
        );
        let slack_off_broken = json!({"id": "slack", "kind": "slack", "enabled": false, "channelBindingId": "s"});
        assert_eq!(
            normalize_provider(&slack_off_broken, 0, &context()).unwrap_err().to_string(),
            "Gateway provider slack requires credential botToken.",
            "a disabled slack entry is checked too"
        );
        assert_eq!(
            unrunnable_kind("telegram-a", ProviderKind::Telegram, false).unwrap().to_string(),
            "Gateway provider telegram-a (kind telegram) is not compiled into this build of open-cowork-gateway \
             (cargo feature \"telegram\"); rebuild with that feature, or remove it or disable it (\"enabled\": false)."
        );
        assert_eq!(unrunnable_kind("telegram-a", ProviderKind::Telegram, true), None);
    }

    #[test]
    fn every_kind_this_build_runs_gets_its_typed_settings() {
        let minimal = |kind: ProviderKind| match kind {
            ProviderKind::Telegram => {
                json!({"kind": "telegram", "channelBindingId": "t", "credentials": {"botToken": "1:a"}})
            }
            ProviderKind::Slack => {
                json!({"kind": "slack", "channelBindingId": "s", "credentials": {"botToken": "xoxb-1", "signingSecret": "x"}})
            }
            ProviderKind::Email => json!({
                "kind": "email", "channelBindingId": "e", "credentials": {"inboundSecret": "relay-secret"},
                "settings": {"from": "Agent <agent@example.com>", "smtpHost": "smtp.example.com"}
            }),
            ProviderKind::Webhook | ProviderKind::Discord | ProviderKind::Whatsapp | ProviderKind::Signal => json!({
                "kind": kind.as_str(), "channelBindingId": "w", "credentials": {"sharedSecret": "s3cret"},
                "settings": {"deliveryUrl": "https://relay.example.com/in"}
            }),
            other => json!({"kind": other.as_str(), "channelBindingId": "b"}),
        };
        for kind in ProviderKind::ALL {
            let result = normalize_provider(&minimal(kind), 0, &context());
            if kind.is_implemented() && kind.compiled_in() {
                let channel = result.unwrap().channel;
                assert_ne!(channel, ChannelSettings::NotInThisBuild, "{kind:?} is implemented: give it an arm");
            } else {
                assert!(result.is_err(), "{kind:?} cannot run in this build, so an enabled entry must fail");
            }
        }
    }

    #[cfg(feature = "email")]
    #[test]
    fn email_shortcuts_get_the_global_smtp_timeout_and_ca_file() {
        let env = Env::from_pairs([
            ("OPEN_COWORK_GATEWAY_EMAIL_INBOUND_SECRET", "relay-secret"),
            ("OPEN_COWORK_GATEWAY_EMAIL_FROM", "Agent <agent@example.com>"),
            ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST", "smtp.example.com"),
            ("OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS", "50"),
            ("OPEN_COWORK_GATEWAY_CA_FILE", "/etc/ca.pem"),
        ]);
        let providers = resolve_providers(&env, &json!({}), &context()).unwrap();
        let ChannelSettings::Email(settings) = &providers[0].channel else {
            panic!("email settings expected, got {:?}", providers[0].channel)
        };
        assert_eq!(settings.smtp_timeout, std::time::Duration::from_millis(100), "clamped like timeouts.smtpMs");
        assert_eq!(settings.ca_file.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(settings.from_address, "agent@example.com");
        let json = json!({"timeouts": {"smtpMs": 7000}});
        let env = Env::from_pairs([
            ("OPEN_COWORK_GATEWAY_EMAIL_INBOUND_SECRET", "relay-secret"),
            ("OPEN_COWORK_GATEWAY_EMAIL_FROM", "agent@example.com"),
            ("OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST", "smtp.example.com"),
        ]);
        let providers = resolve_providers(&env, &json, &context()).unwrap();
        let ChannelSettings::Email(settings) = &providers[0].channel else { panic!("email settings expected") };
        assert_eq!((settings.smtp_timeout.as_millis(), settings.ca_file.is_none()), (7000, true));
    }

    #[cfg(feature = "telegram")]
    #[test]
    fn telegram_shortcuts_become_typed_settings_with_the_gateway_public_url() {
        let env = Env::from_pairs([
            ("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN", "123456:abcdefghijklmnopqrstuvwxyz"),
            ("OPEN_COWORK_GATEWAY_TELEGRAM_MODE", "webhook"),
            ("OPEN_COWORK_GATEWAY_TELEGRAM_WEBHOOK_SECRET", "hook-secret"),
            ("OPEN_COWORK_GATEWAY_TELEGRAM_RESPOND_IN_GROUPS", "mentions_and_replies"),
        ]);
        let context = ProviderContext { gateway_public_url: Some("https://gw.example.com"), ..context() };
        let providers = resolve_providers(&env, &json!({}), &context).unwrap();
        let ChannelSettings::Telegram(settings) = &providers[0].channel else {
            panic!("telegram settings expected, got {:?}", providers[0].channel)
        };
        assert_eq!(settings.bot_token.expose(), "123456:abcdefghijklmnopqrstuvwxyz");
        assert_eq!(settings.api_base_url, telegram::DEFAULT_API_BASE_URL);
        assert_eq!(settings.respond_in_groups, telegram::GroupPolicy::MentionsAndReplies);
        let webhook = settings.webhook.as_ref().unwrap();
        assert_eq!(webhook.url(), "https://gw.example.com/webhooks/telegram");
        assert_eq!(webhook.secret.expose(), "hook-secret");
        assert_eq!(providers[0].setting_str("publicBaseUrl"), Some("https://gw.example.com"));
    }
}
