//! The fail-closed startup rules that are not part of value resolution, in upstream's order:
//! product mode, the Cloud URL policy, the public URL, then deployment safety (upstream's
//! `assertGatewayConfigSafe`, in its exact order). Messages are upstream's, except our refusals of
//! credentials and out-of-range ports in URLs, which upstream accepts or only calls invalid.

use super::providers::Exposure;
use super::urls::{is_loopback_host, normalize_public_https_url, parse_http_url, PublicUrlProblem, UrlProblem};
use super::{Config, ConfigError, DeploymentMode};

pub fn product_mode(value: &str) -> Result<(), ConfigError> {
    match value {
        "cloud_channel" => Ok(()),
        "standalone" => Err(ConfigError::new(
            "Gateway productMode standalone is the Open Cowork standalone gateway, a different program; this binary \
             is the Cloud channel gateway. Run the standalone gateway for that mode, or set \
             OPEN_COWORK_GATEWAY_PRODUCT_MODE=cloud_channel (or unset it).",
        )),
        "hybrid" => Err(ConfigError::new(
            "Gateway productMode hybrid is reserved for a future design and cannot start. Set OPEN_COWORK_GATEWAY_PRODUCT_MODE=cloud_channel.",
        )),
        other => Err(ConfigError::new(format!(
            "Unsupported gateway productMode {other}. Set OPEN_COWORK_GATEWAY_PRODUCT_MODE=cloud_channel (or unset it); standalone and hybrid are other products' modes."
        ))),
    }
}

/// Rule 1: required, HTTP(S), no credentials, a valid port, and HTTPS unless loopback or
/// explicitly insecure. Returns the trimmed value without trailing `/`.
///
/// The messages never quote the value: it is the one setting a password could hide in.
pub fn cloud_base_url(value: Option<&str>, allow_insecure_http: bool) -> Result<String, ConfigError> {
    let value = value.ok_or_else(|| ConfigError::new("OPEN_COWORK_CLOUD_BASE_URL is required."))?;
    let trimmed = value.trim().trim_end_matches('/');
    let url = parse_http_url(trimmed).map_err(|problem| match problem {
        UrlProblem::NotHttp => ConfigError::new("Cloud base URL must be HTTP or HTTPS."),
        UrlProblem::Unparseable => {
            ConfigError::new("OPEN_COWORK_CLOUD_BASE_URL must be a valid URL, for example https://cloud.example.com.")
        }
        // `/health` and `/ready` show the Cloud URL without authentication, so a password in it
        // would be public; and Cloud never reads it (the service token is the credential).
        UrlProblem::Credentials => ConfigError::new(
            "OPEN_COWORK_CLOUD_BASE_URL must not contain credentials (user:password@); the gateway authenticates with OPEN_COWORK_GATEWAY_SERVICE_TOKEN.",
        ),
        UrlProblem::BadPort => ConfigError::new(
            "OPEN_COWORK_CLOUD_BASE_URL has an invalid port; use a port from 1 to 65535 (or none), for example https://cloud.example.com:8443.",
        ),
    })?;
    // A query or fragment would be dropped from every call (they are made below the URL's path),
    // and `/health` would show it to anyone: a token pasted there must not load.
    if trimmed.contains(['?', '#']) {
        return Err(ConfigError::new(
            "OPEN_COWORK_CLOUD_BASE_URL must not have a query (?…) or fragment (#…); give the scheme, host, port and path only, for example https://cloud.example.com/api.",
        ));
    }
    if !url.https && !is_loopback_host(&url.host) && !allow_insecure_http {
        return Err(ConfigError::new("Cloud base URL must use HTTPS unless it is loopback or OPEN_COWORK_GATEWAY_ALLOW_INSECURE_HTTP is enabled."));
    }
    Ok(trimmed.to_owned())
}

/// Rule 2. The messages name the env var even when the value came from JSON, as upstream.
/// Credentials and a bad port are named before upstream's checks, which would only call the URL
/// invalid; like the Cloud URL, the value is never quoted.
pub fn public_url(value: &str) -> Result<String, ConfigError> {
    match parse_http_url(value) {
        Err(UrlProblem::Credentials) => {
            return Err(ConfigError::new(
                "OPEN_COWORK_GATEWAY_PUBLIC_URL must not contain credentials (user:password@); webhook callers authenticate with each provider's webhook secret.",
            ))
        }
        Err(UrlProblem::BadPort) => {
            return Err(ConfigError::new(
                "OPEN_COWORK_GATEWAY_PUBLIC_URL has an invalid port; use a port from 1 to 65535 (or none).",
            ))
        }
        _ => {}
    }
    normalize_public_https_url(value).map_err(|problem| {
        ConfigError::new(match problem {
            PublicUrlProblem::Invalid => "OPEN_COWORK_GATEWAY_PUBLIC_URL must be a valid HTTPS URL.",
            PublicUrlProblem::NotHttps => "OPEN_COWORK_GATEWAY_PUBLIC_URL must use HTTPS.",
            PublicUrlProblem::Loopback => "OPEN_COWORK_GATEWAY_PUBLIC_URL must be publicly reachable, not loopback.",
        })
    })
}

/// The listen address must be an IP address or a host name: a typo such as `127.0.0.1x` would
/// otherwise count as a public bind and fail later with a message about exposure.
pub fn listen_host(host: &str) -> Result<(), ConfigError> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() || is_host_name(host) {
        return Ok(());
    }
    let shown: String = host.chars().take(64).collect();
    Err(ConfigError::new(format!(
        "OPEN_COWORK_GATEWAY_HOST {shown:?} is not an IP address or host name. Use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."
    )))
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, each 1–63
/// characters; the last label does not start with a digit (so a mistyped IPv4 address is not one).
fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    host.len() <= 253
        && labels.iter().all(label_ok)
        && labels.last().and_then(|last| last.bytes().next()).is_some_and(|first| !first.is_ascii_digit())
}

/// The admin token travels in an HTTP header, which carries visible ASCII only: a token with other
/// characters would load and never authenticate.
pub fn admin_token(token: &str) -> Result<(), ConfigError> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(ConfigError::new(
        "OPEN_COWORK_GATEWAY_ADMIN_TOKEN must be printable ASCII without spaces (letters, digits, punctuation): an HTTP header cannot carry other characters. Generate one with: openssl rand -hex 32",
    ))
}

/// A value an operator copied from an example and never replaced.
fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    ["change-me", "replace-with", "example-", "demo-"].iter().any(|prefix| lower.starts_with(prefix))
}

/// Credential keys that must not hold a placeholder.
fn is_secret_credential_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    ["token", "secret", "password", "credential"].iter().any(|word| lower.contains(word))
        || ["api", "private", "access"]
            .iter()
            .any(|prefix| ["key", "_key", "-key"].iter().any(|suffix| lower.contains(&format!("{prefix}{suffix}"))))
}

/// Rule 4 (`assertGatewayConfigSafe`), steps 1–9 in order. Steps 5 and 6 cannot fail after step 3
/// but are kept so the order stays upstream's if step 3 ever changes.
pub fn deployment_safety(config: &Config) -> Result<(), ConfigError> {
    let server = &config.server;
    let bypass_allowed =
        is_loopback_host(&server.host) && config.mode == DeploymentMode::SelfHost && server.public_base_url.is_none();
    if server.allow_loopback_operator_bypass && !bypass_allowed {
        return Err(ConfigError::new(
            "OPEN_COWORK_GATEWAY_ALLOW_LOOPBACK_OPERATOR_BYPASS is only allowed for self-host gateways bound to loopback without a public Gateway URL.",
        ));
    }
    if is_placeholder(config.cloud.service_token.expose()) {
        return Err(ConfigError::new(
            "Gateway cloud service token is still a placeholder. Set OPEN_COWORK_GATEWAY_SERVICE_TOKEN to a generated gateway-scoped token before startup.",
        ));
    }
    let admin_token = server.admin_token.as_ref();
    if admin_token.is_none() && !server.allow_loopback_operator_bypass {
        return Err(ConfigError::new(
            "Gateway operator endpoints require OPEN_COWORK_GATEWAY_ADMIN_TOKEN. For local loopback development only, \
             set OPEN_COWORK_GATEWAY_ALLOW_LOOPBACK_OPERATOR_BYPASS=true explicitly.",
        ));
    }
    if admin_token.is_some_and(|token| is_placeholder(token.expose())) {
        return Err(ConfigError::new(
            "Gateway operator admin token is still a placeholder. Set OPEN_COWORK_GATEWAY_ADMIN_TOKEN to a generated secret before startup.",
        ));
    }
    let exposed = config.is_publicly_exposed();
    if exposed && admin_token.is_none() {
        return Err(ConfigError::new(
            "Gateway public deployments require OPEN_COWORK_GATEWAY_ADMIN_TOKEN for metrics, diagnostics, and delivery operations.",
        ));
    }
    if super::urls::is_public_bind_host(&server.host)
        && (config.metrics_enabled || config.diagnostics_enabled)
        && admin_token.is_none()
    {
        return Err(ConfigError::new(
            "Gateway metrics or diagnostics on a public bind require OPEN_COWORK_GATEWAY_ADMIN_TOKEN.",
        ));
    }
    if exposed {
        exposure(config)?;
    }
    for provider in &config.providers {
        for (key, value) in &provider.credentials {
            if is_secret_credential_key(key) && is_placeholder(value.expose()) {
                return Err(ConfigError::new(format!(
                    "Gateway provider {} credential {key} is still a placeholder.",
                    provider.id
                )));
            }
        }
    }
    Ok(())
}

/// A publicly exposed gateway runs no kind that is local-only, and a demo-only kind only in a
/// self-host demo that allows it explicitly (demo-only kinds are reported first).
fn exposure(config: &Config) -> Result<(), ConfigError> {
    let exposures = || config.enabled_providers().map(|p| p.kind.spec().parts.exposure);
    let demo_allowed = config.allow_public_fake_provider && config.mode == DeploymentMode::SelfHost;
    if let Some(message) = exposures().find_map(|e| match e {
        Exposure::DemoOnly(message) if !demo_allowed => Some(message),
        _ => None,
    }) {
        return Err(ConfigError::new(message));
    }
    match exposures().find_map(|e| match e {
        Exposure::LocalOnly(message) => Some(message),
        _ => None,
    }) {
        Some(message) => Err(ConfigError::new(message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        for value in ["change-me", " Replace-With-token", "example-abc", "DEMO-1"] {
            assert!(is_placeholder(value), "{value}");
        }
        assert!(!is_placeholder("occ_abc_def"));
    }

    #[test]
    fn secret_credential_keys() {
        for key in [
            "botToken",
            "signingSecret",
            "smtpPassword",
            "apiKey",
            "api_key",
            "PRIVATE-KEY",
            "accessKey",
            "credentialRef",
        ] {
            assert!(is_secret_credential_key(key), "{key}");
        }
        assert!(!is_secret_credential_key("username"));
    }

    #[test]
    fn cloud_url_policy() {
        assert_eq!(
            cloud_base_url(Some(" https://c.example.com/prefix// "), false).unwrap(),
            "https://c.example.com/prefix"
        );
        assert_eq!(cloud_base_url(Some("http://127.0.0.1:8787"), false).unwrap(), "http://127.0.0.1:8787");
        assert_eq!(cloud_base_url(Some("http://cloud.internal"), true).unwrap(), "http://cloud.internal");
        assert!(cloud_base_url(Some("http://cloud.internal"), false)
            .unwrap_err()
            .to_string()
            .starts_with("Cloud base URL must use HTTPS"));
        assert_eq!(
            cloud_base_url(Some("ftp://x"), false).unwrap_err().to_string(),
            "Cloud base URL must be HTTP or HTTPS."
        );
        assert_eq!(cloud_base_url(None, false).unwrap_err().to_string(), "OPEN_COWORK_CLOUD_BASE_URL is required.");
    }

    #[test]
    fn cloud_url_credentials_and_ports_are_named_without_the_value() {
        for (url, expected) in [
            ("https://gw:PLANTED-pw@cloud.example.com", "must not contain credentials"),
            ("http://gw:PLANTED-pw@127.0.0.1:8787", "must not contain credentials"),
            ("https://PLANTED-pw@cloud.example.com:99999", "must not contain credentials"),
            ("https://cloud.example.com:99999", "has an invalid port"),
            ("https://cloud.example.com:0", "has an invalid port"),
            ("https://cloud.example.com:https", "has an invalid port"),
        ] {
            let error = cloud_base_url(Some(url), true).unwrap_err().to_string();
            assert!(error.starts_with("OPEN_COWORK_CLOUD_BASE_URL "), "{url}: {error}");
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("PLANTED") && !error.contains(url), "{url}: {error}");
        }
    }

    #[test]
    fn public_url_credentials_and_ports() {
        assert!(public_url("https://u:PLANTED@gw.example.com")
            .unwrap_err()
            .to_string()
            .starts_with("OPEN_COWORK_GATEWAY_PUBLIC_URL must not contain credentials"));
        assert!(public_url("http://u:PLANTED@gw.example.com").unwrap_err().to_string().contains("credentials"));
        assert!(public_url("https://gw.example.com:70000").unwrap_err().to_string().contains("invalid port"));
        assert_eq!(public_url("https://gw.example.com:8443/").unwrap(), "https://gw.example.com:8443");
    }
}
