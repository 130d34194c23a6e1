//! Configuration: defaults → JSON layers → environment → command-line flags,
//! parsed into a typed [`Config`], then checked by the fail-closed rules in upstream's order.
//!
//! [`load`] is the one entry point; `run` and `check-config` both go through it, and it never
//! opens a socket.

pub(crate) mod branding;
pub(crate) mod check;
fuzzed_mod!(env);
fuzzed_mod!(file);
pub mod providers;
pub mod redact;
pub(crate) mod secret;
pub mod urls;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use smol_str::SmolStr;

pub use branding::Branding;
pub use env::Env;
pub use providers::{ChannelSettings, KindSettings, KindSpec, Kinds, ProviderConfig, ProviderKind};
pub use secret::Secret;

/// A configuration error. The message names the setting and, where there is one, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// `OPEN_COWORK_GATEWAY_MODE`: the deployment posture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeploymentMode {
    #[serde(rename = "self-host")]
    SelfHost,
    #[serde(rename = "managed")]
    Managed,
}

impl DeploymentMode {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "self-host" => Some(Self::SelfHost),
            "managed" => Some(Self::Managed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfHost => "self-host",
            Self::Managed => "managed",
        }
    }
}

/// `logging.level`; `silent` turns logging off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Silent,
}

impl LogLevel {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" => Some(Self::Warn),
            "error" => Some(Self::Error),
            "silent" => Some(Self::Silent),
            _ => None,
        }
    }
}

/// Cloud connection settings; env only.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudConfig {
    /// Trimmed, trailing `/` removed, path prefix preserved.
    pub base_url: String,
    pub service_token: Secret,
    pub allow_insecure_http: bool,
    pub request_timeout_ms: u64,
    /// `OPEN_COWORK_GATEWAY_CA_FILE` (else `SSL_CERT_FILE`): PEM certificates of a private CA,
    /// trusted besides the public roots, for Cloud, relays and SMTP. Checked at load.
    pub ca_file: Option<PathBuf>,
}

/// The operator HTTP server.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub public_base_url: Option<String>,
    pub admin_token: Option<Secret>,
    pub allow_loopback_operator_bypass: bool,
    pub max_request_body_bytes: usize,
    /// What all request bodies being read may hold together (at least one maximal body): the
    /// memory an unauthenticated client can make the gateway buffer.
    pub max_buffered_body_bytes: usize,
    pub trust_proxy_headers: bool,
    /// Not validated at load: a bad entry simply never matches (as upstream).
    pub trusted_proxy_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutConfig {
    pub webhook_delivery_ms: u64,
    pub smtp_ms: u64,
    pub shutdown_drain_ms: u64,
    /// `OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS`: how long a session stream stays open
    /// after its session went idle (nothing pending) before it closes and frees its Cloud slot.
    pub session_stream_idle_close_ms: u64,
}

/// Delivery dispatcher limits; env only.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryConfig {
    pub max_concurrency: usize,
    pub max_queue_depth: usize,
}

/// The resolved, checked configuration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// Always `cloud_channel`: the other product modes fail the checks.
    pub product_mode: &'static str,
    pub mode: DeploymentMode,
    pub instance_id: SmolStr,
    pub cloud: CloudConfig,
    pub server: ServerConfig,
    pub log_level: LogLevel,
    pub metrics_enabled: bool,
    pub diagnostics_enabled: bool,
    pub timeouts: TimeoutConfig,
    pub delivery: DeliveryConfig,
    /// `OPEN_COWORK_GATEWAY_MAX_SESSION_STREAMS`: session streams open at once, kept below
    /// Cloud's per-organisation SSE cap (200) so the delivery stream always has its slot.
    pub max_session_streams: usize,
    pub allow_public_fake_provider: bool,
    #[serde(serialize_with = "redact::serialize_providers")]
    pub providers: Vec<ProviderConfig>,
    pub branding: Branding,
    /// `OPEN_COWORK_GATEWAY_STATE_DIR`, else systemd's `$STATE_DIRECTORY`: where the list
    /// of open session streams is kept across restarts. `None` keeps nothing (upstream behaviour).
    pub state_dir: Option<PathBuf>,
}

impl Config {
    /// `claimedBy` for provider-event claims and the delivery subscription.
    pub fn claimed_by(&self) -> String {
        format!("gateway:{}", self.instance_id)
    }

    pub fn enabled_providers(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.iter().filter(|p| p.enabled)
    }

    /// Unique channel binding ids of enabled providers, in config order.
    pub fn channel_binding_ids(&self) -> Vec<SmolStr> {
        let mut ids: Vec<SmolStr> = Vec::new();
        for provider in self.enabled_providers() {
            if !ids.contains(&provider.channel_binding_id) {
                ids.push(provider.channel_binding_id.clone());
            }
        }
        ids
    }

    /// A public bind or a configured public URL.
    pub fn is_publicly_exposed(&self) -> bool {
        urls::is_public_bind_host(&self.server.host) || self.server.public_base_url.is_some()
    }
}

/// Command-line overrides that take part in resolution.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config PATH`: the gateway-only JSON(C) file, instead of `OPEN_COWORK_GATEWAY_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<LogLevel>,
}

/// Loads the JSON layers and resolves them against `env` and the table of `kinds` (the working
/// directory is where central files are looked up).
pub fn load(env: &Env, cwd: &Path, overrides: &Overrides, kinds: Kinds) -> Result<Config, ConfigError> {
    let raw = file::load_raw_gateway(env, cwd, overrides.config_file.as_deref())?;
    let mut config = resolve(&raw, env, kinds)?;
    if let Some(level) = overrides.log_level {
        config.log_level = level;
    }
    Ok(config)
}

/// Reads a JSON value at a `/`-separated path of the gateway object.
fn json_at<'a>(raw: &'a Value, pointer: &str) -> Option<&'a Value> {
    raw.pointer(pointer).filter(|v| !v.is_null())
}

fn json_text<'a>(raw: &'a Value, pointer: &str) -> Option<&'a str> {
    json_at(raw, pointer).and_then(Value::as_str).and_then(env::non_blank)
}

/// Spec "Boolean", strictly: a set env value must parse (`true|1|yes` / `false|0|no`), else the
/// JSON value (boolean or boolean-like string), else the default. Upstream falls through to the
/// next layer on a value it cannot read; we refuse it, naming the setting, so a typo never turns a
/// feature silently on or off.
fn resolve_bool(env: &Env, var: &str, raw: &Value, pointer: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    if let Some(text) = env.string(var) {
        return env::parse_bool(text).ok_or_else(|| invalid_value(var, text, "true or false (or 1/0, yes/no)"));
    }
    match pointer.and_then(|p| json_at(raw, p).map(|value| (p, value))) {
        None => Ok(default),
        Some((_, Value::Bool(b))) => Ok(*b),
        Some((_, Value::String(s))) if env::non_blank(s).is_none() => Ok(default),
        Some((p, Value::String(s))) => {
            env::parse_bool(s).ok_or_else(|| invalid_value(&json_key(p), s, "true or false"))
        }
        Some((p, other)) => Err(invalid_value(&json_key(p), &other.to_string(), "true or false")),
    }
}

/// An env-only on/off switch: unset or blank is off; anything but a boolean fails the load.
pub(crate) fn env_flag(env: &Env, var: &str) -> Result<bool, ConfigError> {
    resolve_bool(env, var, &Value::Null, None, false)
}

/// `gateway config key metrics.enabled` for the pointer `/metrics/enabled`.
fn json_key(pointer: &str) -> String {
    format!("gateway config key {}", pointer.trim_start_matches('/').replace('/', "."))
}

/// "VAR must be …; got "value"." The value is shown (these settings are never secrets), cut short
/// so a pasted blob cannot flood the message.
fn invalid_value(setting: &str, value: &str, expected: &str) -> ConfigError {
    let shown: String = value.trim().chars().take(40).collect();
    ConfigError::new(format!("{setting} must be {expected}; got {shown:?}. Fix or unset it."))
}

fn json_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.is_finite()).map(|f| f as i64))
        }
        Value::String(s) => env::parse_integer(s),
        _ => None,
    }
}

/// `server.maxBufferedBodyBytes` by default: 8 MiB, a fraction of the systemd unit's 64 MiB
/// `MemoryMax` even after JSON parsing multiplies it.
const DEFAULT_BUFFERED_BODY_BYTES: i64 = 8 * 1024 * 1024;

/// Spec "Bounded integer": a set env value wins, then JSON; integers are clamped into range (as
/// upstream). Unlike upstream, a value that is not an integer fails the load, naming the setting.
fn resolve_bounded(
    env: &Env,
    var: &str,
    raw: &Value,
    pointer: Option<&str>,
    default: i64,
    (min, max): (i64, i64),
) -> Result<i64, ConfigError> {
    let expected = || format!("an integer from {min} to {max}");
    let parsed = match env.string(var) {
        Some(text) => Some(env::parse_integer(text).ok_or_else(|| invalid_value(var, text, &expected()))?),
        None => match pointer.and_then(|p| json_at(raw, p).map(|value| (p, value))) {
            Some((_, Value::String(s))) if s.trim().is_empty() => None,
            Some((p, value)) => Some(json_integer(value).ok_or_else(|| {
                invalid_value(&json_key(p), value.as_str().map_or(&value.to_string(), |s| s), &expected())
            })?),
            None => None,
        },
    };
    Ok(parsed.map_or(default, |n| n.clamp(min, max)))
}

/// The listen port: 0 to 65535 (0 asks the OS for a free port); anything else fails the load
/// (upstream silently listens on 8790 instead).
fn resolve_port(env: &Env, raw: &Value) -> Result<u16, ConfigError> {
    const EXPECTED: &str = "a port number from 0 to 65535";
    match env.string("OPEN_COWORK_GATEWAY_PORT") {
        Some(text) => env::parse_integer(text)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| invalid_value("OPEN_COWORK_GATEWAY_PORT", text, EXPECTED)),
        None => match json_at(raw, "/server/port") {
            None => Ok(8790),
            Some(value) => json_integer(value)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| invalid_value("gateway config key server.port", &value.to_string(), EXPECTED)),
        },
    }
}

/// The log level from the environment, else the JSON file, else `info`; an unknown name fails.
fn resolve_log_level(env: &Env, raw: &Value) -> Result<LogLevel, ConfigError> {
    const EXPECTED: &str = "one of debug, info, warn, error, silent";
    if let Some(text) = env.string("OPEN_COWORK_GATEWAY_LOG_LEVEL") {
        return LogLevel::parse(text).ok_or_else(|| invalid_value("OPEN_COWORK_GATEWAY_LOG_LEVEL", text, EXPECTED));
    }
    match json_text(raw, "/logging/level") {
        Some(text) => {
            LogLevel::parse(text).ok_or_else(|| invalid_value("gateway config key logging.level", text, EXPECTED))
        }
        None => Ok(LogLevel::Info),
    }
}

fn resolve_text(env: &Env, var: &str, raw: &Value, pointer: &str) -> Option<String> {
    env.string(var).or_else(|| json_text(raw, pointer)).map(str::to_owned)
}

/// `readGatewayInstanceId`: lower-case, keep `[a-z0-9_.:-]`, collapse other runs into one `-`
/// (never leading), at most 96 characters, no trailing `-`, `local` when empty.
fn normalize_instance_id(value: &str) -> String {
    let mut out = String::new();
    let mut pending_dash = false;
    for c in value.to_lowercase().chars() {
        if out.len() >= 96 {
            break;
        }
        if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-') {
            if pending_dash && !out.is_empty() {
                out.push('-');
                if out.len() >= 96 {
                    break;
                }
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "local".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The resolver: every value, then the fail-closed rules in order: product mode and deployment
/// mode, the Cloud connection, the public URL, the providers, then deployment safety.
///
/// `kinds` is the table of channel kinds a provider entry may name (this layer sits below the
/// providers, so the caller hands the table in); redaction learns their secret prefixes from it.
pub fn resolve(raw: &Value, env: &Env, kinds: Kinds) -> Result<Config, ConfigError> {
    redact::learn_kind_prefixes(kinds);
    let branding = branding::resolve(raw, env)?;

    // Rule 0: product mode, before anything about the Cloud; then the deployment mode.
    let product_mode = resolve_text(env, "OPEN_COWORK_GATEWAY_PRODUCT_MODE", raw, "/productMode")
        .unwrap_or_else(|| "cloud_channel".into());
    check::product_mode(&product_mode)?;
    let mode = resolve_mode(env, raw)?;

    // Rule 1: Cloud connection, env only. Rule 2: the public URL, inside the server settings.
    let cloud = resolve_cloud(env, raw)?;
    let server = resolve_server(env, raw)?;

    // Rule 3: providers.
    let context = providers::ProviderContext {
        kinds,
        gateway_public_url: server.public_base_url.as_deref(),
        max_request_body_bytes: server.max_request_body_bytes,
        env,
        raw,
    };
    let provider_list = providers::resolve_providers(&context)?;

    let instance_source = resolve_text(env, "OPEN_COWORK_GATEWAY_INSTANCE_ID", raw, "/instanceId")
        .or_else(|| env.string("HOSTNAME").map(str::to_owned));
    let config = Config {
        product_mode: "cloud_channel",
        mode,
        instance_id: normalize_instance_id(instance_source.as_deref().unwrap_or("")).into(),
        cloud,
        log_level: resolve_log_level(env, raw)?,
        metrics_enabled: resolve_bool(env, "OPEN_COWORK_GATEWAY_METRICS_ENABLED", raw, Some("/metrics/enabled"), true)?,
        diagnostics_enabled: resolve_bool(
            env,
            "OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED",
            raw,
            Some("/diagnostics/enabled"),
            mode == DeploymentMode::SelfHost,
        )?,
        timeouts: resolve_timeouts(env, raw)?,
        max_session_streams: resolve_bounded(env, "OPEN_COWORK_GATEWAY_MAX_SESSION_STREAMS", raw, None, 190, (1, 2000))?
            as usize,
        delivery: DeliveryConfig {
            max_concurrency: resolve_bounded(
                env,
                "OPEN_COWORK_GATEWAY_MAX_DELIVERY_CONCURRENCY",
                raw,
                None,
                8,
                (1, 256),
            )? as usize,
            max_queue_depth: resolve_bounded(
                env,
                "OPEN_COWORK_GATEWAY_MAX_DELIVERY_QUEUE_DEPTH",
                raw,
                None,
                512,
                (16, 100_000),
            )? as usize,
        },
        allow_public_fake_provider: resolve_bool(
            env,
            "OPEN_COWORK_GATEWAY_ALLOW_PUBLIC_FAKE_PROVIDER",
            raw,
            None,
            false,
        )?,
        server,
        providers: provider_list,
        branding,
        state_dir: resolve_state_dir(env)?,
    };

    // Rule 4: deployment safety.
    check::deployment_safety(&config)?;
    Ok(config)
}

/// The Cloud connection: env only (a file must not redirect the gateway's credentials).
fn resolve_cloud(env: &Env, raw: &Value) -> Result<CloudConfig, ConfigError> {
    let allow_insecure_http = resolve_bool(env, "OPEN_COWORK_GATEWAY_ALLOW_INSECURE_HTTP", raw, None, false)?;
    let base_url = check::cloud_base_url(env.string("OPEN_COWORK_CLOUD_BASE_URL"), allow_insecure_http)?;
    let service_token = env
        .string("OPEN_COWORK_GATEWAY_SERVICE_TOKEN")
        .map(Secret::new)
        .ok_or_else(|| ConfigError::new("OPEN_COWORK_GATEWAY_SERVICE_TOKEN is required."))?;
    let ca_file = match ca_file_setting(env) {
        Some((name, path)) => {
            crate::net::https::load_ca_certificates(Path::new(path))
                .map_err(|e| ConfigError::new(format!("{name}: {e}. Point it at a PEM file of CA certificates.")))?;
            Some(PathBuf::from(path))
        }
        None => None,
    };
    Ok(CloudConfig {
        base_url,
        service_token,
        allow_insecure_http,
        request_timeout_ms: resolve_bounded(
            env,
            "OPEN_COWORK_GATEWAY_CLOUD_REQUEST_TIMEOUT_MS",
            raw,
            None,
            30_000,
            (100, 120_000),
        )? as u64,
        ca_file,
    })
}

/// The private CA file and the variable that named it: `OPEN_COWORK_GATEWAY_CA_FILE`, else the
/// conventional `SSL_CERT_FILE` (a host that points every TLS client at its CA bundle that way
/// gets it for Cloud, relays and SMTP too). Its certificates are trusted besides the public roots.
pub(crate) fn ca_file_setting(env: &Env) -> Option<(&'static str, &str)> {
    env.string("OPEN_COWORK_GATEWAY_CA_FILE")
        .map(|path| ("OPEN_COWORK_GATEWAY_CA_FILE", path))
        .or_else(|| env.string("SSL_CERT_FILE").map(|path| ("SSL_CERT_FILE", path)))
}

/// The listener, the public URL (rule 2), operator access and body limits.
fn resolve_server(env: &Env, raw: &Value) -> Result<ServerConfig, ConfigError> {
    let public_base_url = match resolve_text(env, "OPEN_COWORK_GATEWAY_PUBLIC_URL", raw, "/server/publicBaseUrl") {
        Some(text) => Some(check::public_url(&text)?),
        None => None,
    };
    let trusted_proxy_cidrs = match env.raw("OPEN_COWORK_GATEWAY_TRUSTED_PROXY_CIDRS").and_then(env::non_blank) {
        Some(list) => list.split(',').filter_map(env::non_blank).map(str::to_owned).collect(),
        None => match json_at(raw, "/server/trustedProxyCidrs") {
            Some(Value::Array(items)) => {
                items.iter().filter_map(Value::as_str).filter_map(env::non_blank).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        },
    };
    let host = resolve_text(env, "OPEN_COWORK_GATEWAY_HOST", raw, "/server/host").unwrap_or_else(|| "127.0.0.1".into());
    check::listen_host(&host)?;
    let admin_token = resolve_text(env, "OPEN_COWORK_GATEWAY_ADMIN_TOKEN", raw, "/server/adminToken").map(Secret::new);
    if let Some(token) = &admin_token {
        check::admin_token(token.expose())?;
    }
    let max_request_body_bytes = resolve_bounded(
        env,
        "OPEN_COWORK_GATEWAY_MAX_REQUEST_BODY_BYTES",
        raw,
        Some("/server/maxRequestBodyBytes"),
        1_048_576,
        (1024, providers::MAX_ATTACHMENT_BYTES),
    )?;
    // Bounded by the largest single body below and a quarter of the unit's 64 MiB MemoryMax above.
    let max_buffered_body_bytes = resolve_bounded(
        env,
        "OPEN_COWORK_GATEWAY_MAX_BUFFERED_BODY_BYTES",
        raw,
        Some("/server/maxBufferedBodyBytes"),
        DEFAULT_BUFFERED_BODY_BYTES,
        (max_request_body_bytes, providers::MAX_ATTACHMENT_BYTES * 4),
    )?
    .max(max_request_body_bytes);
    Ok(ServerConfig {
        host,
        port: resolve_port(env, raw)?,
        public_base_url,
        admin_token,
        allow_loopback_operator_bypass: resolve_bool(
            env,
            "OPEN_COWORK_GATEWAY_ALLOW_LOOPBACK_OPERATOR_BYPASS",
            raw,
            Some("/server/allowLoopbackOperatorBypass"),
            false,
        )?,
        max_request_body_bytes: max_request_body_bytes as usize,
        max_buffered_body_bytes: max_buffered_body_bytes as usize,
        trust_proxy_headers: resolve_bool(
            env,
            "OPEN_COWORK_GATEWAY_TRUST_PROXY_HEADERS",
            raw,
            Some("/server/trustProxyHeaders"),
            false,
        )?,
        trusted_proxy_cidrs,
    })
}

fn resolve_timeouts(env: &Env, raw: &Value) -> Result<TimeoutConfig, ConfigError> {
    let timeout = |var: &str, pointer: &str, default: i64| {
        resolve_bounded(env, var, raw, Some(pointer), default, (100, 120_000)).map(|ms| ms as u64)
    };
    Ok(TimeoutConfig {
        webhook_delivery_ms: timeout(
            "OPEN_COWORK_GATEWAY_WEBHOOK_DELIVERY_TIMEOUT_MS",
            "/timeouts/webhookDeliveryMs",
            15_000,
        )?,
        smtp_ms: timeout("OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS", "/timeouts/smtpMs", 30_000)?,
        shutdown_drain_ms: timeout(
            "OPEN_COWORK_GATEWAY_SHUTDOWN_DRAIN_TIMEOUT_MS",
            "/timeouts/shutdownDrainMs",
            10_000,
        )?,
        session_stream_idle_close_ms: resolve_bounded(
            env,
            "OPEN_COWORK_GATEWAY_SESSION_STREAM_IDLE_CLOSE_MS",
            raw,
            Some("/timeouts/sessionStreamIdleCloseMs"),
            30_000,
            (100, 30 * 60_000),
        )? as u64,
    })
}

/// The state directory must exist when named; systemd may list several, the first is ours.
fn resolve_state_dir(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    let (source, value) = match env.string("OPEN_COWORK_GATEWAY_STATE_DIR") {
        Some(value) => ("OPEN_COWORK_GATEWAY_STATE_DIR", value),
        None => match env.string("STATE_DIRECTORY") {
            Some(value) => ("STATE_DIRECTORY", value.split(':').next().unwrap_or(value)),
            None => return Ok(None),
        },
    };
    let path = PathBuf::from(value);
    if !path.is_dir() {
        return Err(ConfigError::new(format!(
            "{source} {} is not a directory. Create it, or unset {source} to keep no state.",
            path.display()
        )));
    }
    Ok(Some(path))
}

/// The mode (`self-host` or `managed`) is validated wherever it comes from; unlike upstream, a bad
/// value fails.
fn resolve_mode(env: &Env, raw: &Value) -> Result<DeploymentMode, ConfigError> {
    let (source, text) = match env.string("OPEN_COWORK_GATEWAY_MODE") {
        Some(text) => ("OPEN_COWORK_GATEWAY_MODE", text),
        None => match json_at(raw, "/mode") {
            Some(Value::String(text)) if env::non_blank(text).is_some() => ("gateway config key mode", text.trim()),
            Some(other) if !other.is_string() => {
                return Err(ConfigError::new(format!(
                    "Unsupported gateway mode {other} in gateway config key mode. Valid values: self-host, managed."
                )));
            }
            _ => return Ok(DeploymentMode::SelfHost),
        },
    };
    DeploymentMode::parse(text).ok_or_else(|| {
        ConfigError::new(format!("Unsupported gateway mode {text} in {source}. Valid values: self-host, managed."))
    })
}

/// A valid loopback configuration for unit tests (it lives in the tests, which may read the
/// table of kinds from the layer above).
#[cfg(test)]
pub(crate) use tests::{test_config, test_kinds};

impl Config {
    /// Settings an operator chose that weaken a protection, one sentence each, for `/diagnostics`.
    pub fn risks(&self) -> Vec<String> {
        self.enabled_providers().flat_map(|provider| provider.channel.risks(&provider.id)).collect()
    }
}

impl ProviderConfig {
    /// The provider id the runtime reports for this entry: the config id, except for a kind that
    /// stands in for another (the fake provider for the CLI channel), which reports that kind.
    pub fn runtime_id(&self) -> SmolStr {
        match self.kind.spec().parts.stands_in_for {
            Some(kind) => SmolStr::new_static(kind),
            None => self.id.clone(),
        }
    }

    /// The channel kind the runtime reports (the stood-in kind for a stand-in).
    pub fn runtime_kind(&self) -> &'static str {
        self.kind.spec().parts.stands_in_for.unwrap_or(self.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The resolver with the unit tests' table of kinds.
    fn resolve(raw: &Value, env: &Env) -> Result<Config, ConfigError> {
        super::resolve(raw, env, test_kinds())
    }

    /// This build's table of kinds, with the fake and CLI kinds compiled in whatever the cargo
    /// features: their code is in every build (only the table leaves them out without `devcloud`
    /// or `cli`), and the unit tests need channels that run in every build shape, including the
    /// ones with no channel at all.
    pub(crate) fn test_kinds() -> Kinds {
        static FAKE: KindSpec = KindSpec::compiled("fake", "devcloud", crate::providers::fake::kind::KIND);
        static CLI: KindSpec = KindSpec::compiled("cli", "cli", crate::providers::cli::kind::KIND);
        static TABLE: std::sync::LazyLock<Vec<&'static KindSpec>> = std::sync::LazyLock::new(|| {
            let built = |kind: &'static KindSpec| [&FAKE, &CLI].into_iter().find(|built| built.name == kind.name);
            crate::providers::KINDS.iter().map(|&kind| built(kind).unwrap_or(kind)).collect()
        });
        TABLE.as_slice()
    }

    /// A valid loopback configuration for unit tests, with `extra` variables on top (the fake
    /// provider unless `extra` names providers).
    pub(crate) fn test_config(extra: &[(&str, &str)]) -> Config {
        let mut env = Env::from_pairs([
            ("OPEN_COWORK_CLOUD_BASE_URL", "http://127.0.0.1:1"),
            ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", "occ_a_b"),
            ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-token-for-tests"),
            ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
        ]);
        for (key, value) in extra {
            env.set(*key, *value);
        }
        match resolve(&Value::Object(serde_json::Map::new()), &env) {
            Ok(config) => config,
            Err(error) => panic!("test configuration: {error}"),
        }
    }

    fn base_env() -> Env {
        Env::from_pairs([
            ("OPEN_COWORK_CLOUD_BASE_URL", "https://cloud.example.com/"),
            ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", "occ_gw1_0123456789abcdef"),
            ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", "admin-0123456789abcdef"),
            ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
        ])
    }

    #[test]
    fn defaults() {
        let config = resolve(&json!({}), &base_env()).unwrap();
        assert_eq!(config.cloud.base_url, "https://cloud.example.com");
        assert_eq!(config.cloud.request_timeout_ms, 30_000);
        assert_eq!(config.server.host, "127.0.0.1");
        assert_eq!(config.server.port, 8790);
        assert_eq!(config.server.max_request_body_bytes, 1_048_576);
        assert_eq!(config.instance_id, "local");
        assert_eq!(config.mode, DeploymentMode::SelfHost);
        assert!(config.metrics_enabled && config.diagnostics_enabled);
        assert_eq!(config.timeouts.shutdown_drain_ms, 10_000);
        assert_eq!(config.delivery.max_concurrency, 8);
        assert_eq!(config.delivery.max_queue_depth, 512);
        assert_eq!(config.log_level, LogLevel::Info);
        assert_eq!(config.providers.len(), 1);
        assert_eq!(config.providers[0].channel_binding_id, "fake-binding");
        assert_eq!(config.claimed_by(), "gateway:local");
    }

    #[test]
    fn env_overrides_json_and_integers_clamp() {
        let mut env = base_env();
        env.set("OPEN_COWORK_GATEWAY_PORT", "0");
        env.set("OPEN_COWORK_GATEWAY_MAX_REQUEST_BODY_BYTES", "10");
        env.set("OPEN_COWORK_GATEWAY_SHUTDOWN_DRAIN_TIMEOUT_MS", "999999");
        env.set("OPEN_COWORK_GATEWAY_METRICS_ENABLED", "no");
        env.set("OPEN_COWORK_GATEWAY_LOG_LEVEL", "WARN");
        let raw = json!({"server": {"port": 9000, "host": "localhost"}, "metrics": {"enabled": true}, "logging": {"level": "debug"}, "timeouts": {"smtpMs": "50"}});
        let config = resolve(&raw, &env).unwrap();
        assert_eq!(config.server.port, 0);
        assert_eq!(config.server.host, "localhost");
        assert_eq!(config.server.max_request_body_bytes, 1024);
        assert_eq!(config.timeouts.shutdown_drain_ms, 120_000);
        assert_eq!(config.timeouts.smtp_ms, 100);
        assert!(!config.metrics_enabled);
        assert_eq!(config.log_level, LogLevel::Warn);
        let config = resolve(&raw, &base_env()).unwrap();
        assert_eq!((config.server.port, config.log_level), (9000, LogLevel::Debug), "JSON below the environment");
    }

    /// Upstream falls back to a default (or the next layer) on a value it cannot read; an operator
    /// then runs with a setting they never chose. Every such value fails the load, naming itself.
    #[test]
    fn a_value_that_does_not_parse_fails_naming_its_setting() {
        for (var, value, expected) in [
            (
                "OPEN_COWORK_GATEWAY_PORT",
                "70000",
                "OPEN_COWORK_GATEWAY_PORT must be a port number from 0 to 65535; got \"70000\"",
            ),
            ("OPEN_COWORK_GATEWAY_PORT", "abc", "OPEN_COWORK_GATEWAY_PORT must be a port number"),
            (
                "OPEN_COWORK_GATEWAY_METRICS_ENABLED",
                "maybe",
                "OPEN_COWORK_GATEWAY_METRICS_ENABLED must be true or false",
            ),
            (
                "OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED",
                "on-ish",
                "OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED must be true or false",
            ),
            (
                "OPEN_COWORK_GATEWAY_LOG_LEVEL",
                "loud",
                "OPEN_COWORK_GATEWAY_LOG_LEVEL must be one of debug, info, warn, error, silent",
            ),
            (
                "OPEN_COWORK_GATEWAY_MAX_DELIVERY_CONCURRENCY",
                "1.5",
                "OPEN_COWORK_GATEWAY_MAX_DELIVERY_CONCURRENCY must be an integer from 1 to 256",
            ),
            ("OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS", "soon", "OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS must be an integer"),
            (
                "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER",
                "sure",
                "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER must be true or false",
            ),
            ("OPEN_COWORK_GATEWAY_CLI_ENABLED", "y", "OPEN_COWORK_GATEWAY_CLI_ENABLED must be true or false"),
            (
                "OPEN_COWORK_GATEWAY_HOST",
                "127.0.0.1x",
                "OPEN_COWORK_GATEWAY_HOST \"127.0.0.1x\" is not an IP address or host name",
            ),
            (
                "OPEN_COWORK_GATEWAY_ADMIN_TOKEN",
                "jeton-d\u{e9}j\u{e0}-vu-0123456789",
                "OPEN_COWORK_GATEWAY_ADMIN_TOKEN must be printable ASCII",
            ),
        ] {
            let mut env = base_env();
            env.set(var, value);
            let error = resolve(&json!({}), &env).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{var}={value}: {error}");
        }
        for (raw, expected) in [
            (json!({"server": {"port": "http"}}), "gateway config key server.port must be a port number"),
            (json!({"metrics": {"enabled": "perhaps"}}), "gateway config key metrics.enabled must be true or false"),
            (json!({"metrics": {"enabled": 1}}), "gateway config key metrics.enabled must be true or false"),
            (json!({"logging": {"level": "chatty"}}), "gateway config key logging.level must be one of"),
            (json!({"timeouts": {"smtpMs": "slow"}}), "gateway config key timeouts.smtpMs must be an integer"),
        ] {
            let error = resolve(&raw, &base_env()).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{raw}: {error}");
        }
    }

    #[test]
    fn ssl_cert_file_names_the_private_ca_when_the_gateway_variable_does_not() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/email/ca.pem");
        let mut env = base_env();
        env.set("SSL_CERT_FILE", ca);
        assert_eq!(resolve(&json!({}), &env).unwrap().cloud.ca_file.as_deref(), Some(Path::new(ca)));
        env.set("SSL_CERT_FILE", "/nonexistent/ca.pem");
        let error = resolve(&json!({}), &env).unwrap_err().to_string();
        assert!(error.starts_with("SSL_CERT_FILE: "), "{error}");
        env.set("OPEN_COWORK_GATEWAY_CA_FILE", ca);
        assert_eq!(resolve(&json!({}), &env).unwrap().cloud.ca_file.as_deref(), Some(Path::new(ca)), "ours wins");
    }

    #[test]
    fn listen_hosts_are_addresses_or_host_names() {
        for host in ["127.0.0.1", "0.0.0.0", "::", "[::1]", "localhost", "gateway.lan", "pi-4.local."] {
            assert!(check::listen_host(host).is_ok(), "{host}");
        }
        for host in ["127.0.0.1x", "10.0.0.256", "bad_host", "-lead.example", "a..b"] {
            assert!(check::listen_host(host).is_err(), "{host}");
        }
    }

    #[test]
    fn a_cloud_url_with_a_query_or_fragment_never_loads() {
        for url in ["https://cloud.example.com/?password=PLANTED", "https://cloud.example.com/api#PLANTED"] {
            let mut env = base_env();
            env.set("OPEN_COWORK_CLOUD_BASE_URL", url);
            let error = resolve(&json!({}), &env).unwrap_err().to_string();
            assert!(error.starts_with("OPEN_COWORK_CLOUD_BASE_URL must not have a query"), "{error}");
            assert!(!error.contains("PLANTED"));
        }
    }

    /// `/health` and `/ready` show `cloud.base_url` without authentication, so userinfo must never
    /// reach a loaded `Config`, whatever other setting would have let the URL through.
    #[test]
    fn a_cloud_url_with_userinfo_never_loads() {
        for url in [
            "https://gw:PLANTED-pw@cloud.example.com",
            "https://PLANTED-pw@cloud.example.com/base/",
            "http://gw:PLANTED-pw@127.0.0.1:8787",
            "http://gw:PLANTED-pw@cloud.internal",
        ] {
            let mut env = base_env();
            env.set("OPEN_COWORK_CLOUD_BASE_URL", url);
            env.set("OPEN_COWORK_GATEWAY_ALLOW_INSECURE_HTTP", "true");
            let error = resolve(&json!({}), &env).unwrap_err().to_string();
            assert_eq!(
                error,
                "OPEN_COWORK_CLOUD_BASE_URL must not contain credentials (user:password@); the gateway authenticates \
                 with OPEN_COWORK_GATEWAY_SERVICE_TOKEN."
            );
        }
    }

    #[test]
    fn instance_ids_are_normalised() {
        assert_eq!(normalize_instance_id("Gateway Pod 01/Blue"), "gateway-pod-01-blue");
        assert_eq!(normalize_instance_id("  ##"), "local");
        assert_eq!(normalize_instance_id("/lead"), "lead");
        assert_eq!(normalize_instance_id("a b-"), "a-b");
        assert_eq!(normalize_instance_id(&"x".repeat(200)).len(), 96);
        let mut env = base_env();
        env.set("HOSTNAME", "Pi.Local");
        assert_eq!(resolve(&json!({}), &env).unwrap().instance_id, "pi.local");
    }

    #[test]
    fn diagnostics_default_follows_mode() {
        let mut env = base_env();
        env.set("OPEN_COWORK_GATEWAY_MODE", "managed");
        assert!(!resolve(&json!({}), &env).unwrap().diagnostics_enabled);
    }

    #[test]
    fn trusted_proxy_cidrs_from_env_list_or_json_array() {
        let mut env = base_env();
        let raw = json!({"server": {"trustedProxyCidrs": ["10.0.0.0/8", " "]}});
        assert_eq!(resolve(&raw, &env).unwrap().server.trusted_proxy_cidrs, ["10.0.0.0/8"]);
        env.set("OPEN_COWORK_GATEWAY_TRUSTED_PROXY_CIDRS", " 127.0.0.0/8 ,, ::1 ");
        assert_eq!(resolve(&raw, &env).unwrap().server.trusted_proxy_cidrs, ["127.0.0.0/8", "::1"]);
    }
}
