//! Provider list resolution: env shortcuts or `OPEN_COWORK_GATEWAY_PROVIDERS`, merged with the
//! JSON `providers` list, then normalised entry by entry.
//!
//! Every kind is described once, in its own folder under `providers/` and its entry in the one
//! table of kinds, which the caller hands in ([`Kinds`] of [`KindSpec`]). Normalisation applies the rules every entry shares,
//! then the kind's own check, which types its settings ([`ChannelSettings`]): a provider is built
//! from typed values and a bad entry fails `check-config` (exit 78) instead of the start. An
//! enabled entry of a kind this binary cannot run fails the load the same way.

pub mod cli;
pub mod email;
pub mod fake;
pub mod kind;
pub mod slack;
pub mod telegram;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use smol_str::SmolStr;

use super::env::{non_blank, parse_integer, Env};
use super::secret::Secret;
use super::ConfigError;
pub use kind::{EntryCheck, Exposure, KindSettings, KindSpec, Kinds, Shortcuts};

/// Upper bound of `settings.maxAttachmentBytes` (and of the server body cap).
pub const MAX_ATTACHMENT_BYTES: i64 = 64 * 1024 * 1024;

/// A channel kind a provider entry may name: one line of a table of kinds. It keeps the table it
/// was read from, so what is resolved later (the kind a stand-in reports, a telemetry label) is
/// looked up in the same table without reaching for one.
#[derive(Clone, Copy)]
pub struct ProviderKind {
    spec: &'static KindSpec,
    table: Kinds,
}

impl ProviderKind {
    /// Every kind of `table`, compiled in or not, in the table's order.
    pub fn all(table: Kinds) -> impl Iterator<Item = ProviderKind> {
        table.iter().map(move |spec| ProviderKind { spec, table })
    }

    /// The kind of `table` named `text`.
    pub fn parse(table: Kinds, text: &str) -> Option<Self> {
        Self::all(table).find(|k| k.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        self.spec.name
    }

    /// The cargo feature that compiles this kind in.
    pub fn cargo_feature(self) -> &'static str {
        self.spec.cargo_feature
    }

    /// Whether this binary was built with the kind's feature.
    pub fn compiled_in(self) -> bool {
        self.spec.compiled_in()
    }

    /// Everything the kind says about itself.
    pub fn spec(self) -> &'static KindSpec {
        self.spec
    }

    /// The table this kind was read from.
    pub fn table(self) -> Kinds {
        self.table
    }
}

impl PartialEq for ProviderKind {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ProviderKind {}

impl std::hash::Hash for ProviderKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for ProviderKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ProviderKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ProviderKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The typed settings of one entry, for the kinds this binary can run.
#[derive(Debug, Clone)]
pub enum ChannelSettings {
    /// Checked and typed by the kind; its constructor downcasts them with [`ChannelSettings::get`].
    Typed(Arc<dyn KindSettings>),
    /// A disabled entry of a kind this binary cannot run (its cargo feature is off), or one whose
    /// kind checks only what it needs to run when it is enabled. It stays in the list so the
    /// placeholder check and `/diagnostics` still see it, but it is never started: an *enabled*
    /// entry of a kind not compiled in fails the load.
    NotInThisBuild,
}

impl PartialEq for ChannelSettings {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Typed(a), Self::Typed(b)) => Arc::ptr_eq(a, b),
            (Self::NotInThisBuild, Self::NotInThisBuild) => true,
            _ => false,
        }
    }
}

impl Eq for ChannelSettings {}

impl ChannelSettings {
    /// What an operator should know this entry risks (shown in `/diagnostics`).
    pub fn risks(&self, id: &str) -> Vec<String> {
        match self {
            Self::Typed(settings) => settings.risks(id),
            Self::NotInThisBuild => Vec::new(),
        }
    }

    /// The settings as the kind's own type, if they are of that type.
    pub fn get<T: KindSettings>(&self) -> Option<&T> {
        match self {
            Self::Typed(settings) => settings.as_any().downcast_ref::<T>(),
            Self::NotInThisBuild => None,
        }
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
    /// The kinds an entry may name.
    pub kinds: Kinds,
    pub gateway_public_url: Option<&'a str>,
    pub max_request_body_bytes: usize,
    /// The environment and the JSON layers, for a kind's settings that have a global default.
    pub env: &'a Env,
    pub raw: &'a Value,
}

/// Builds the final provider list from env and JSON, normalises it and applies the list rules.
pub fn resolve_providers(context: &ProviderContext) -> Result<Vec<ProviderConfig>, ConfigError> {
    let env = context.env;
    // Every kind's shortcuts are read whichever way the list is given, so a malformed switch
    // fails even when it is unused.
    let shortcuts = providers_from_shortcuts(context)?;
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
        None => shortcuts,
    };
    let json_list = match context.raw.get("providers") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    let mut merged = merge_provider_overrides(json_list, env_list);
    if merged.is_empty() {
        for added in ProviderKind::all(context.kinds).filter_map(|kind| kind.spec().parts.when_none_configured) {
            merged.extend(added(env)?);
        }
    }
    let mut providers = Vec::with_capacity(merged.len());
    for (index, entry) in merged.iter().enumerate() {
        providers.push(normalize_provider(entry, index, context)?);
    }
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

/// `readProvidersFromEnv`: one entry per kind whose trigger variable is set, in the table's order.
fn providers_from_shortcuts(context: &ProviderContext) -> Result<Vec<Value>, ConfigError> {
    let (env, gateway_public_url) = (context.env, context.gateway_public_url);
    let mut list = Vec::new();
    for spec in context.kinds {
        let shortcuts = Shortcuts { kind: spec.name, stand_in_trigger: spec.stand_in_trigger, env, gateway_public_url };
        list.extend((spec.parts.shortcut)(&shortcuts)?);
    }
    Ok(list)
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

/// A "required credential": present and not blank once trimmed.
fn credential<'a>(credentials: &'a BTreeMap<String, Secret>, key: &str) -> Option<&'a Secret> {
    credentials.get(key).filter(|secret| non_blank(secret.expose()).is_some())
}

/// A "setting string": a string, trimmed, not empty.
fn setting_text(settings: &Map<String, Value>, key: &str) -> Option<String> {
    settings.get(key).and_then(Value::as_str).and_then(non_blank).map(str::to_owned)
}

/// Why this binary cannot run an enabled entry of `kind`, if it cannot.
fn unrunnable_kind(id: &str, kind: ProviderKind, compiled_in: bool) -> Option<ConfigError> {
    (!compiled_in).then(|| {
        provider_error(
            id,
            format!(
                "(kind {}) is not compiled into this build of open-cowork-gateway (cargo feature \"{}\"); \
                 rebuild with that feature, or remove it or disable it (\"enabled\": false).",
                kind.as_str(),
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

/// `settings.maxAttachmentBytes` for a kind whose inbound arrives as a request body: an integer
/// from 1 to [`MAX_ATTACHMENT_BYTES`], at most the body cap `limit`, which is the default.
fn attachment_cap(id: &str, settings: &Map<String, Value>, limit: usize) -> Result<i64, ConfigError> {
    let limit = limit as i64;
    let Some(value) = settings.get("maxAttachmentBytes") else {
        return Ok(limit);
    };
    let parsed = match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => parse_integer(s),
        _ => None,
    };
    match parsed {
        Some(n) if (1..=MAX_ATTACHMENT_BYTES).contains(&n) && n > limit => {
            Err(provider_error(id, format!("maxAttachmentBytes cannot exceed server.maxRequestBodyBytes ({limit}).")))
        }
        Some(n) if (1..=MAX_ATTACHMENT_BYTES).contains(&n) => Ok(n),
        _ => Err(provider_error(id, "maxAttachmentBytes must be an integer between 1 and 67108864.")),
    }
}

/// The kind an entry names, its id and its channel binding (the first rules, whatever the kind).
fn entry_identity(entry: &Value, index: usize, kinds: Kinds) -> Result<(ProviderKind, String, String), ConfigError> {
    let kind_text = match entry.get("kind") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(other) => other.to_string(),
        None => "undefined".to_owned(),
    };
    let kind = ProviderKind::parse(kinds, &kind_text)
        .ok_or_else(|| ConfigError::new(format!("Unsupported gateway provider kind: {kind_text}")))?;
    let id = str_field(entry, "id").map(str::to_owned).unwrap_or_else(|| format!("{}-{}", kind.as_str(), index + 1));
    if kind.spec().parts.stands_in_for.is_none() && !is_valid_provider_id(&id, kind) {
        return Err(ConfigError::new(format!(
            "Channel provider id {id} must equal {kind} or start with {kind}-.",
            kind = kind.as_str()
        )));
    }
    let channel_binding_id = str_field(entry, "channelBindingId")
        .ok_or_else(|| ConfigError::new(format!("Gateway provider {id} requires channelBindingId.")))?;
    Ok((kind, id, channel_binding_id.to_owned()))
}

/// Credentials keep only strings; settings drop nulls and empty strings.
fn entry_values(entry: &Value) -> (BTreeMap<String, Secret>, Map<String, Value>) {
    let credentials = match entry.get("credentials") {
        Some(Value::Object(map)) => {
            crate::util::maps::sorted(map.iter().filter_map(|(k, v)| Some((k.clone(), Secret::new(v.as_str()?)))))
        }
        _ => BTreeMap::new(),
    };
    let settings = match entry.get("settings") {
        Some(Value::Object(map)) => crate::util::maps::object(
            map.iter().filter(|(_, v)| !v.is_null() && v.as_str() != Some("")).map(|(k, v)| (k.clone(), v.clone())),
        ),
        _ => Map::new(),
    };
    (credentials, settings)
}

/// `normalizeProvider`: the rules every entry shares, then the kind's own check. One project
/// addition: after the identity rules, an enabled entry must name a kind this binary can run, so
/// an operator learns that first instead of fixing its secrets for nothing. Disabled entries never
/// run, so they load whatever their kind.
fn normalize_provider(entry: &Value, index: usize, context: &ProviderContext) -> Result<ProviderConfig, ConfigError> {
    let (kind, id, channel_binding_id) = entry_identity(entry, index, context.kinds)?;
    let enabled = entry.get("enabled") != Some(&Value::Bool(false));
    if enabled {
        if let Some(error) = unrunnable_kind(&id, kind, kind.compiled_in()) {
            return Err(error);
        }
    }
    let (credentials, mut settings) = entry_values(entry);
    let mut check = EntryCheck { id: &id, kind, enabled, credentials: &credentials, settings: &mut settings, context };
    let channel = match (kind.spec().parts.check)(&mut check)? {
        Some(typed) => ChannelSettings::Typed(typed),
        None => ChannelSettings::NotInThisBuild,
    };
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

    static NO_ENV: std::sync::LazyLock<Env> =
        std::sync::LazyLock::new(|| Env::from_pairs(Vec::<(String, String)>::new()));
    static NO_JSON: Value = Value::Null;

    fn context() -> ProviderContext<'static> {
        ProviderContext {
            kinds: crate::providers::KINDS,
            gateway_public_url: None,
            max_request_body_bytes: 1024 * 1024,
            env: &NO_ENV,
            raw: &NO_JSON,
        }
    }

    fn kind(name: &str) -> ProviderKind {
        ProviderKind::parse(crate::providers::KINDS, name).unwrap()
    }

    #[cfg(any(feature = "telegram", feature = "email"))]
    fn resolve_providers(
        env: &Env,
        raw: &Value,
        context: &ProviderContext,
    ) -> Result<Vec<ProviderConfig>, ConfigError> {
        super::resolve_providers(&ProviderContext { env, raw, ..*context })
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
        let merged = merge_provider_overrides(
            json_list,
            providers_from_shortcuts(&ProviderContext { env: &env, ..context() }).unwrap(),
        );
        let ids: Vec<_> = merged.iter().filter_map(|entry| str_field(entry, "id")).collect();
        assert_eq!(ids, ["slack-x", "telegram", "webhook", "cli"]);
    }

    #[cfg(feature = "webhook")]
    #[test]
    fn attachment_cap_defaults_to_the_body_cap_and_cannot_exceed_it() {
        // Disabled: the kind's rules run for an entry that is never built.
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
        assert!(is_valid_provider_id("telegram", kind("telegram")));
        assert!(is_valid_provider_id("telegram-acme_2", kind("telegram")));
        assert!(!is_valid_provider_id("telegramx", kind("telegram")));
        assert!(!is_valid_provider_id("slack-acme", kind("telegram")));
        assert!(!is_valid_provider_id("telegram-Acme", kind("telegram")));
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
        let email_off = json!({"id": "email", "kind": "email", "enabled": false, "channelBindingId": "e", "credentials": {"inboundSecret": "x"}, "settings": {"from": "a@example.com", "smtpHost": "smtp.example.com"}});
        let provider = normalize_provider(&email_off, 0, &context()).unwrap();
        assert_eq!(provider.channel, ChannelSettings::NotInThisBuild, "a disabled entry loads, typed as never run");
        if cfg!(feature = "email") {
            let email_off_broken = json!({"id": "email", "kind": "email", "enabled": false, "channelBindingId": "e"});
            assert_eq!(
                normalize_provider(&email_off_broken, 0, &context()).unwrap_err().to_string(),
                "Gateway provider email requires credential inboundSecret.",
                "a disabled entry is still checked by its kind"
            );
        }
        if cfg!(feature = "slack") {
            let slack_off_broken = json!({"id": "slack", "kind": "slack", "enabled": false, "channelBindingId": "s"});
            assert_eq!(
                normalize_provider(&slack_off_broken, 0, &context()).unwrap_err().to_string(),
                "Gateway provider slack requires credential botToken.",
                "a disabled slack entry is checked too"
            );
        }
        assert_eq!(
            unrunnable_kind("telegram-a", kind("telegram"), false).unwrap().to_string(),
            "Gateway provider telegram-a (kind telegram) is not compiled into this build of open-cowork-gateway \
             (cargo feature \"telegram\"); rebuild with that feature, or remove it or disable it (\"enabled\": false)."
        );
        assert_eq!(unrunnable_kind("telegram-a", kind("telegram"), true), None);
        let stand_in: &'static KindSpec =
            Box::leak(Box::new(KindSpec::not_compiled_in("matrix", "matrix", "MATRIX_ENABLED")));
        let table: Kinds = Box::leak(Box::new([stand_in]));
        assert_eq!(
            unrunnable_kind("matrix", ProviderKind::parse(table, "matrix").unwrap(), stand_in.compiled_in())
                .unwrap()
                .to_string(),
            "Gateway provider matrix (kind matrix) is not compiled into this build of open-cowork-gateway \
             (cargo feature \"matrix\"); rebuild with that feature, or remove it or disable it (\"enabled\": false).",
            "a stand-in of the table names its feature"
        );
        assert_eq!(stand_in.seeded_binding(), None, "the dev Cloud seeds no binding for a kind not compiled in");
        let shortcut = |value: &str| {
            let env = Env::from_pairs([("OPEN_COWORK_GATEWAY_MATRIX_ENABLED", value)]);
            let trigger = stand_in.stand_in_trigger;
            (stand_in.parts.shortcut)(&Shortcuts {
                kind: "matrix",
                stand_in_trigger: trigger,
                env: &env,
                gateway_public_url: None,
            })
            .unwrap()
        };
        assert_eq!(
            shortcut("true").unwrap()["kind"],
            "matrix",
            "its variables add an entry, which then fails the load"
        );
        assert_eq!(shortcut("false"), None);
    }

    #[test]
    /// The built-in kinds' minimal entries are typed; any kind left out of this build fails. A kind
    /// added later proves its own settings in its folder's tests and the conformance battery.
    fn built_in_kinds_get_typed_settings_and_a_kind_left_out_fails() {
        let minimal = |kind: ProviderKind| match kind.as_str() {
            "telegram" => json!({"kind": "telegram", "channelBindingId": "t", "credentials": {"botToken": "1:a"}}),
            "slack" => {
                json!({"kind": "slack", "channelBindingId": "s", "credentials": {"botToken": "xoxb-1", "signingSecret": "x"}})
            }
            "email" => json!({
                "kind": "email", "channelBindingId": "e", "credentials": {"inboundSecret": "relay-secret"},
                "settings": {"from": "Agent <agent@example.com>", "smtpHost": "smtp.example.com"}
            }),
            "webhook" | "discord" | "whatsapp" | "signal" => json!({
                "kind": kind.as_str(), "channelBindingId": "w", "credentials": {"sharedSecret": "s3cret"},
                "settings": {"deliveryUrl": "https://relay.example.com/in"}
            }),
            other => json!({"kind": other, "channelBindingId": "b"}),
        };
        let built_in = ["telegram", "slack", "email", "webhook", "discord", "whatsapp", "signal", "cli", "fake"];
        for kind in ProviderKind::all(crate::providers::KINDS) {
            let result = normalize_provider(&minimal(kind), 0, &context());
            if kind.compiled_in() && built_in.contains(&kind.as_str()) {
                let channel = result.unwrap().channel;
                assert_ne!(channel, ChannelSettings::NotInThisBuild, "{kind:?} is compiled in: its check must type it");
            } else if !kind.compiled_in() {
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
        let settings = providers[0].channel.get::<email::EmailSettings>().expect("email settings");
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
        let settings = providers[0].channel.get::<email::EmailSettings>().expect("email settings");
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
        let settings = providers[0].channel.get::<telegram::TelegramSettings>().expect("telegram settings");
        assert_eq!(settings.bot_token.expose(), "123456:abcdefghijklmnopqrstuvwxyz");
        assert_eq!(settings.api_base_url, telegram::DEFAULT_API_BASE_URL);
        assert_eq!(settings.respond_in_groups, telegram::GroupPolicy::MentionsAndReplies);
        let webhook = settings.webhook.as_ref().unwrap();
        assert_eq!(webhook.url(), "https://gw.example.com/webhooks/telegram");
        assert_eq!(webhook.secret.expose(), "hook-secret");
        assert_eq!(providers[0].setting_str("publicBaseUrl"), Some("https://gw.example.com"));
    }
}
