//! E-mail's settings, checked and typed once while the configuration loads,
//! and the address grammar, which both the `from` check here and the inbound mapping
//! (`providers/email/inbound.rs`) use.
//!
//! Upstream's rules (attachment cap, `inboundSecret`, `from`, `smtpHost`) run in
//! `normalize_provider` in its order; this module adds what the provider's construction checked
//! upstream (a `from` with a valid address) and the project's own rules: the port is a number
//! from 1 to 65535, a plain-text SMTP connection (no TLS at all, not even STARTTLS) is allowed
//! only to a loopback host or with `settings.smtpAllowPlaintext`, and a private CA for the SMTP
//! server (`settings.smtpCaFile`, else `OPEN_COWORK_GATEWAY_CA_FILE`) must be a readable PEM file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::{credential, provider_error, setting_text};
use crate::config::env::{parse_bool, parse_integer};
use crate::config::secret::Secret;
use crate::config::urls::is_loopback_host;
use crate::config::ConfigError;

/// `settings.subject` when unset or blank.
const DEFAULT_SUBJECT: &str = "Open Cowork update";
/// Upstream's `maxFileBytes` ceiling for inbound attachments (`min(15728640, maxAttachmentBytes)`).
pub const MAX_FILE_BYTES: usize = 15 * 1024 * 1024;
/// `timeouts.smtpMs` default; the real value is filled in by `resolve_providers`.
const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One mailbox the gateway receives for (through a relay) and answers from (over SMTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    /// `credentials.inboundSecret`: the relay presents it in a header on every POST.
    pub inbound_secret: Secret,
    /// `credentials.smtpPassword` (AUTH PLAIN, only ever over TLS).
    pub smtp_password: Option<Secret>,
    /// `settings.from` as configured: the `From:` header (`Agent <agent@example.com>` allowed).
    pub from: String,
    /// The address inside `from`: the envelope sender (`MAIL FROM`).
    pub from_address: String,
    pub smtp_host: String,
    /// `settings.smtpPort`, else 465 with implicit TLS, else 25.
    pub smtp_port: u16,
    /// `settings.smtpSecure`: implicit TLS from the first byte; otherwise STARTTLS.
    pub smtp_secure: bool,
    /// `settings.smtpUsername`: enables AUTH PLAIN.
    pub smtp_username: Option<String>,
    /// Whether the connection may stay plain text when the server offers no STARTTLS: only to a
    /// loopback host, or with `settings.smtpAllowPlaintext` (the provider warns at start).
    pub allow_plaintext: bool,
    /// `settings.subject` trimmed, or `DEFAULT_SUBJECT`.
    pub subject: String,
    /// Inbound attachments larger than this are refused (`min(15 MiB, maxAttachmentBytes)`).
    pub max_file_bytes: usize,
    /// `timeouts.smtpMs` (`OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS`).
    pub smtp_timeout: Duration,
    /// PEM certificates trusted for the SMTP server besides the public roots.
    pub ca_file: Option<PathBuf>,
}

impl EmailSettings {
    /// The two global settings e-mail channels share: `timeouts.smtpMs` and the private CA of
    /// `OPEN_COWORK_GATEWAY_CA_FILE` (checked with the Cloud settings), resolved exactly as
    /// `Config::timeouts` resolves them; an entry's own `smtpCaFile` wins.
    pub fn apply_globals(&mut self, env: &crate::config::Env, raw: &Value) -> Result<(), ConfigError> {
        let timeout = crate::config::resolve_bounded(
            env,
            "OPEN_COWORK_GATEWAY_SMTP_TIMEOUT_MS",
            raw,
            Some("/timeouts/smtpMs"),
            30_000,
            (100, 120_000),
        )? as u64;
        self.smtp_timeout = Duration::from_millis(timeout);
        if self.ca_file.is_none() {
            self.ca_file = crate::config::ca_file_setting(env).map(|(_, path)| PathBuf::from(path));
        }
        Ok(())
    }

    /// Checks a normalised email entry (whose generic rules already passed) and types it.
    pub fn parse(
        id: &str,
        credentials: &BTreeMap<String, Secret>,
        settings: &Map<String, Value>,
    ) -> Result<Self, ConfigError> {
        let inbound_secret = credential(credentials, "inboundSecret")
            .ok_or_else(|| provider_error(id, "requires credential inboundSecret."))?
            .clone();
        let from = setting_text(settings, "from").ok_or_else(|| provider_error(id, "requires setting from."))?;
        let smtp_host =
            setting_text(settings, "smtpHost").ok_or_else(|| provider_error(id, "requires setting smtpHost."))?;
        if from.contains(['\r', '\n']) {
            return Err(provider_error(id, "setting from (OPEN_COWORK_GATEWAY_EMAIL_FROM) must be one line."));
        }
        // Values that end up in a mail header or an SMTP command line: a CR or LF there would
        // start a header or a command of its own, so it is refused here, not repaired at send.
        for (key, variable) in [
            ("subject", "OPEN_COWORK_GATEWAY_EMAIL_SUBJECT"),
            ("smtpUsername", "OPEN_COWORK_GATEWAY_EMAIL_SMTP_USERNAME"),
        ] {
            if setting_text(settings, key).is_some_and(|value| value.contains(|c: char| c.is_control())) {
                return Err(provider_error(id, format!("setting {key} ({variable}) must be one line.")));
            }
        }
        let from_address = parse_address(&from).ok_or_else(|| {
            provider_error(
                id,
                "requires a valid from address (OPEN_COWORK_GATEWAY_EMAIL_FROM), e.g. agent@example.com or \
                 \"Agent <agent@example.com>\".",
            )
        })?;
        if smtp_host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
            return Err(provider_error(
                id,
                "setting smtpHost (OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST) must be a host name.",
            ));
        }
        let smtp_secure = bool_setting(settings, "smtpSecure").unwrap_or(false);
        let smtp_port = match number_setting(settings, "smtpPort") {
            None => {
                if smtp_secure {
                    465
                } else {
                    25
                }
            }
            Some(port) => u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
                provider_error(id, "setting smtpPort (OPEN_COWORK_GATEWAY_EMAIL_SMTP_PORT) must be from 1 to 65535.")
            })?,
        };
        let allow_plaintext =
            is_loopback_host(&smtp_host) || bool_setting(settings, "smtpAllowPlaintext").unwrap_or(false);
        let ca_file = match setting_text(settings, "smtpCaFile") {
            Some(path) => Some(check_ca_file(id, Path::new(&path))?),
            None => None,
        };
        let attachment_cap = settings
            .get("maxAttachmentBytes")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(MAX_FILE_BYTES);
        Ok(Self {
            inbound_secret,
            smtp_password: credential(credentials, "smtpPassword").cloned(),
            from,
            from_address,
            smtp_host,
            smtp_port,
            smtp_secure,
            smtp_username: setting_text(settings, "smtpUsername"),
            allow_plaintext,
            subject: setting_text(settings, "subject").unwrap_or_else(|| DEFAULT_SUBJECT.to_owned()),
            max_file_bytes: attachment_cap.min(MAX_FILE_BYTES),
            smtp_timeout: DEFAULT_SMTP_TIMEOUT,
            ca_file,
        })
    }
}

fn check_ca_file(id: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    crate::net::https::load_ca_certificates(path).map_err(|e| {
        provider_error(id, format!("setting smtpCaFile: {e}. Point it at a PEM file of CA certificates."))
    })?;
    Ok(path.to_path_buf())
}

/// A boolean setting: JSON boolean or `true`/`1`/`yes`/`false`/`0`/`no`.
fn bool_setting(settings: &Map<String, Value>, key: &str) -> Option<bool> {
    match settings.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

/// A number setting, here an integer; 0 counts as unset (as upstream's `value || default` reads it).
fn number_setting(settings: &Map<String, Value>, key: &str) -> Option<i64> {
    let n = match settings.get(key)? {
        Value::Number(n) => n.as_i64().unwrap_or(-1),
        Value::String(s) => parse_integer(s).unwrap_or(-1),
        _ => return None,
    };
    (n != 0).then_some(n)
}

/// The address in `text` (`Name <addr>`, `mailto:addr`, a list), lower-cased, or `None`.
/// Deterministic and bounded: only the first 1024 characters are looked at.
pub fn parse_address(text: &str) -> Option<String> {
    let head: String = text.chars().take(1024).collect();
    let head = head.trim();
    if let Some(start) = head.rfind('<') {
        let rest = &head[start + 1..];
        let inside = rest.split('>').next().unwrap_or(rest);
        if let Some(address) = clean_address(inside) {
            return Some(address);
        }
    }
    head.split(|c: char| c == ',' || c == ';' || (c as u32) <= 32).find_map(clean_address)
}

/// The display name of a `Name <addr>` string, `None` when empty.
pub fn display_name(text: &str) -> Option<String> {
    let index = text.find('<').filter(|i| *i > 0)?;
    let name = text[..index].trim();
    let name = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(name).trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn clean_address(token: &str) -> Option<String> {
    let mut text = token.trim();
    // `get`, not a slice: the seventh byte of outside text may fall inside a multi-byte character.
    if text.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("mailto:")) {
        text = text[7..].trim();
    }
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        text = inner.trim();
    }
    while let Some(rest) = text.strip_prefix('<') {
        text = rest.trim();
    }
    while let Some(rest) = text.strip_suffix(['>', ',', ';']) {
        text = rest.trim();
    }
    valid_address(text).then(|| text.to_ascii_lowercase())
}

fn valid_address(text: &str) -> bool {
    let mut parts = text.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    const LOCAL_EXTRA: &str = "!#$%&'*+-./=?^_`{|}~";
    let edges_ok = |s: &str| !s.is_empty() && !s.starts_with('.') && !s.ends_with('.');
    if !edges_ok(local) || !edges_ok(domain) {
        return false;
    }
    if !local.chars().all(|c| c.is_ascii_alphanumeric() || LOCAL_EXTRA.contains(c)) {
        return false;
    }
    if !domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && labels.last().is_some_and(|l| l.len() >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(credentials: &[(&str, &str)], settings: Value) -> Result<EmailSettings, String> {
        let credentials = credentials.iter().map(|(k, v)| ((*k).to_owned(), Secret::new(*v))).collect();
        let Value::Object(settings) = settings else { panic!("settings must be an object") };
        EmailSettings::parse("email-x", &credentials, &settings).map_err(|e| e.to_string())
    }

    const SECRET: [(&str, &str); 1] = [("inboundSecret", "relay-secret")];

    #[test]
    fn defaults_and_the_envelope_address_of_a_display_name_from() {
        let s = parse(&SECRET, json!({"from": "Agent <Agent@Example.com>", "smtpHost": "smtp.example.com"})).unwrap();
        assert_eq!((s.smtp_port, s.smtp_secure, s.allow_plaintext), (25, false, false));
        assert_eq!(s.from, "Agent <Agent@Example.com>");
        assert_eq!(s.from_address, "agent@example.com");
        assert_eq!(s.subject, DEFAULT_SUBJECT);
        assert_eq!(s.max_file_bytes, MAX_FILE_BYTES);
        let secure = parse(
            &SECRET,
            json!({"from": "a@example.com", "smtpHost": "127.0.0.1", "smtpSecure": "yes", "subject": "  Hi ", "maxAttachmentBytes": 2048}),
        )
        .unwrap();
        assert_eq!((secure.smtp_port, secure.smtp_secure, secure.allow_plaintext), (465, true, true));
        assert_eq!((secure.subject.as_str(), secure.max_file_bytes), ("Hi", 2048));
        let explicit = parse(
            &SECRET,
            json!({"from": "a@example.com", "smtpHost": "mx.example.com", "smtpPort": "2525", "smtpAllowPlaintext": true}),
        )
        .unwrap();
        assert_eq!((explicit.smtp_port, explicit.allow_plaintext), (2525, true));
    }

    #[test]
    fn every_check_names_the_setting() {
        let cases = [
            (json!({"from": "not an address", "smtpHost": "h.example.com"}), "requires a valid from address"),
            (json!({"from": "a@example.com\r\nBcc: x@example.com", "smtpHost": "h.example.com"}), "must be one line"),
            (json!({"from": "a@example.com", "smtpHost": "h.example.com", "smtpPort": 70000}), "smtpPort"),
            (
                json!({"from": "a@example.com", "smtpHost": "h.example.com", "smtpCaFile": "/nonexistent/ca.pem"}),
                "smtpCaFile",
            ),
            (json!({"from": "a@example.com", "smtpHost": "h example"}), "smtpHost"),
            (
                json!({"from": "a@example.com", "smtpHost": "h.example.com", "subject": "Hi\r\nBcc: x@example.com"}),
                "setting subject (OPEN_COWORK_GATEWAY_EMAIL_SUBJECT) must be one line.",
            ),
            (
                json!({"from": "a@example.com", "smtpHost": "h.example.com", "smtpUsername": "agent\r\nRSET"}),
                "setting smtpUsername (OPEN_COWORK_GATEWAY_EMAIL_SMTP_USERNAME) must be one line.",
            ),
        ];
        for (settings, expected) in cases {
            let error = parse(&SECRET, settings.clone()).unwrap_err();
            assert!(error.starts_with("Gateway provider email-x "), "{error}");
            assert!(error.contains(expected), "{settings}: {error}");
        }
    }

    #[test]
    fn addresses_parse_as_the_spec_says() {
        let long = format!("\"Alice Example\" <ALICE+ops@example.test> {}", "%".repeat(2048));
        assert_eq!(parse_address(&long).as_deref(), Some("alice+ops@example.test"));
        assert_eq!(display_name(&long).as_deref(), Some("Alice Example"));
        assert_eq!(parse_address("mailto:Bob@Example.org").as_deref(), Some("bob@example.org"));
        assert_eq!(parse_address("junk, carol@example.net;").as_deref(), Some("carol@example.net"));
        assert_eq!(parse_address("<x@y>"), None, "one-label domain");
        assert_eq!(parse_address("a@b.c"), None, "last label too short");
        assert_eq!(parse_address("a@@b.com"), None);
        assert_eq!(parse_address(".a@b.com"), None);
        assert_eq!(parse_address("a@-b.com"), None);
        assert_eq!(parse_address("a\r\nBcc: b@example.com"), Some("b@example.com".into()), "tokens split at controls");
        assert_eq!(display_name("<a@example.com>"), None);
    }

    /// An input the `email_inbound` fuzz target once crashed on: a relay's `from` whose seventh
    /// byte falls inside a multi-byte character panicked in the `mailto:` check (a byte slice at
    /// index 7), aborting the daemon on one request.
    #[test]
    fn an_address_with_a_multibyte_character_at_byte_seven_is_refused_not_a_panic() {
        // "aaaaaa" is six bytes, so 'é' spans bytes 6 and 7; the second is the token the fuzzer found.
        assert_eq!(parse_address("aaaaaaé"), None);
        assert_eq!(parse_address("ZA=:=\"\u{241}]}"), None);
        assert_eq!(parse_address("mailto:ada@example.com"), Some("ada@example.com".to_owned()));
        assert_eq!(parse_address("MAILTO: <Ada@Example.com>"), Some("ada@example.com".to_owned()));
    }
}
