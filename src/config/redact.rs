//! Redaction for everything the gateway shows an operator: the serialised
//! configuration and free text such as provider errors.
//!
//! Secrets themselves are [`Secret`](super::Secret)s and serialise as `[redacted]`. What this
//! module adds is the defence in depth upstream applies to values that are *not* typed secrets:
//! provider `settings` whose key looks secret, and text (URLs with credentials, bearer tokens,
//! well-known token shapes, e-mail addresses, home directories).

use std::sync::OnceLock;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::Serializer;
use serde_json::Value;

use super::providers::{Kinds, ProviderConfig};

const REDACTED: &str = "[redacted]";

/// Key fragments that make a setting or query parameter secret.
const SECRET_KEY_WORDS: [&str; 9] =
    ["token", "secret", "password", "credential", "authorization", "apikey", "privatekey", "accesskey", "clientsecret"];

/// Whether a key names a secret: `token`, `password`, … anywhere in it, ignoring `_`, `-` and case.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let folded: String = key.chars().filter(|c| !matches!(c, '_' | '-')).flat_map(char::to_lowercase).collect();
    SECRET_KEY_WORDS.iter().any(|word| folded.contains(word))
}

/// Serialises providers with credentials as `[redacted]` and settings walked by [`redact_value`].
pub(crate) fn serialize_providers<S: Serializer>(
    providers: &[ProviderConfig],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = serializer.serialize_seq(Some(providers.len()))?;
    for provider in providers {
        seq.serialize_element(&ProviderView(provider))?;
    }
    seq.end()
}

struct ProviderView<'a>(&'a ProviderConfig);

impl serde::Serialize for ProviderView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &p.id)?;
        map.serialize_entry("kind", &p.kind)?;
        map.serialize_entry("enabled", &p.enabled)?;
        map.serialize_entry("channelBindingId", &p.channel_binding_id)?;
        map.serialize_entry("externalWorkspaceId", &p.external_workspace_id)?;
        map.serialize_entry("defaultAgent", &p.default_agent)?;
        map.serialize_entry("credentials", &p.credentials)?;
        map.serialize_entry("settings", &redact_value(&Value::Object(p.settings.clone()), None))?;
        map.end()
    }
}

/// Walks a JSON value: strings under a secret-looking key become `[redacted]`, other strings go
/// through [`redact_text`].
fn redact_value(value: &Value, key: Option<&str>) -> Value {
    match value {
        Value::String(text) if key.is_some_and(is_secret_key) => {
            if text.is_empty() {
                Value::String(String::new())
            } else {
                Value::String(REDACTED.into())
            }
        }
        Value::String(text) => Value::String(redact_text(text)),
        Value::Array(items) => Value::Array(items.iter().map(|item| redact_value(item, key)).collect()),
        Value::Object(map) => {
            Value::Object(crate::util::maps::object(map.iter().map(|(k, v)| (k.clone(), redact_value(v, Some(k))))))
        }
        other => other.clone(),
    }
}

/// Token prefixes that are credentials on their own (Open Cowork, OpenAI/Anthropic, GitHub,
/// Google, Hugging Face, Databricks, AWS); each channel kind adds its platform's own
/// ([`super::KindSpec::secret_prefixes`]).
const TOKEN_PREFIXES: [&str; 14] = [
    "occ_",
    "ocgw_",
    "ocw_",
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "ya29.",
    "AIza",
    "hf_",
    "GOCSPX-",
];

/// The table of kinds whose secret prefixes (Slack's `xoxb-`, …) are redacted, learnt when a
/// configuration is resolved (and by the binary as it starts): the kinds are described by the
/// providers, a layer above this one, so the table is handed down rather than read. A process has
/// one table, so the first one stays; until one is learnt only the generic shapes are redacted.
static KIND_TABLE: OnceLock<Kinds> = OnceLock::new();

/// Redacts the secret prefixes of `kinds` from now on (see `KIND_TABLE`).
pub fn learn_kind_prefixes(kinds: Kinds) {
    // Already set: to the same table, the only one a process has.
    let _ = KIND_TABLE.set(kinds);
}

fn looks_like_token(word: &str) -> bool {
    let kinds = KIND_TABLE.get().copied().unwrap_or_default();
    let kind_prefixes = kinds.iter().flat_map(|kind| kind.parts.secret_prefixes.iter());
    if TOKEN_PREFIXES
        .iter()
        .chain(kind_prefixes)
        .any(|prefix| word.starts_with(prefix) && word.len() > prefix.len() + 3)
    {
        return true;
    }
    if (word.starts_with("dapi") || word.starts_with("AKIA"))
        && word.len() >= 16
        && word[4..].bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return true;
    }
    // A JWT: three base64url parts, the first starting with `eyJ` (`{"`).
    if word.starts_with("eyJ") && word.split('.').count() == 3 {
        return true;
    }
    // A Telegram bot token: `<5+ digits>:<20+ of [A-Za-z0-9_-]>`.
    if let Some((id, rest)) = word.split_once(':') {
        return id.len() >= 5
            && id.bytes().all(|b| b.is_ascii_digit())
            && rest.len() >= 20
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    }
    false
}

fn looks_like_email(word: &str) -> bool {
    let Some((local, domain)) = word.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
}

/// A URL with its user info and secret-named query values replaced.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_key(key) || key.eq_ignore_ascii_case("key") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => redact_word_body(pair),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{}?{}{fragment}", redact_word_body(path), params.join("&"))
        }
        None => redact_word_body(tail),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Redacts a path fragment that may hold a token (Telegram puts the bot token in the path).
fn redact_word_body(text: &str) -> String {
    text.split('/')
        .map(
            |segment| if looks_like_token(segment.strip_prefix("bot").unwrap_or(segment)) { REDACTED } else { segment },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// `key=value` or `key:value` with a secret-looking key and a value of 16+ token characters.
fn redact_keyed(word: &str) -> Option<String> {
    let split = word.find(['=', ':'])?;
    let (key, value) = (&word[..split], &word[split + 1..]);
    let value_ok = value.len() >= 16 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b));
    (is_secret_key(key) && value_ok).then(|| format!("{key}={REDACTED}"))
}

/// A home-directory path loses everything from the user name on, the rest of the path and any
/// query string included: project names and tokens in file names are as private as the user.
fn redact_home(word: &str) -> Option<String> {
    for root in ["/home/", "/Users/", "C:\\Users\\"] {
        if let Some(position) = word.find(root) {
            return Some(format!("{}{root}{REDACTED}", &word[..position]));
        }
    }
    None
}

/// Shows a value's text redacted, for log fields: `error = %Redacted(&error)`.
pub struct Redacted<'a, T: std::fmt::Display>(pub &'a T);

impl<T: std::fmt::Display> std::fmt::Display for Redacted<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_text(&self.0.to_string()))
    }
}

fn redact_word(word: &str) -> String {
    if word.starts_with("http://") || word.starts_with("https://") {
        return redact_url(word);
    }
    if looks_like_email(word) {
        return "[redacted-email]".into();
    }
    if looks_like_token(word) {
        return REDACTED.into();
    }
    redact_home(word).or_else(|| redact_keyed(word)).unwrap_or_else(|| word.to_owned())
}

/// `redactGatewayDiagnosticText`: free text made safe to show an operator. Words are runs
/// between whitespace and quoting punctuation; the word after `Bearer` is always redacted.
pub(crate) fn redact_text(text: &str) -> String {
    let is_separator = |c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | ',' | ';' | '`' | '[' | ']' | '{' | '}')
    };
    let mut out = String::with_capacity(text.len());
    let mut word_start: Option<usize> = None;
    let mut after_bearer = false;
    let flush = |out: &mut String, word: &str, after_bearer: &mut bool| {
        if *after_bearer {
            out.push_str(REDACTED);
            *after_bearer = false;
        } else {
            *after_bearer = word.eq_ignore_ascii_case("bearer");
            out.push_str(&redact_word(word));
        }
    };
    for (index, c) in text.char_indices() {
        if is_separator(c) {
            if let Some(start) = word_start.take() {
                flush(&mut out, &text[start..index], &mut after_bearer);
            }
            out.push(c);
        } else if word_start.is_none() {
            word_start = Some(index);
        }
    }
    if let Some(start) = word_start {
        flush(&mut out, &text[start..], &mut after_bearer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_redaction() {
        let cases = [
            (
                "GET https://user:pw@api.example.com/x?token=abc&page=2 failed",
                "GET https://[redacted]@api.example.com/x?token=[redacted]&page=2 failed",
            ),
            (
                "POST https://api.telegram.org/bot123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAA/getMe",
                "POST https://api.telegram.org/[redacted]/getMe",
            ),
            ("authorization: Bearer abc.def", "authorization: Bearer [redacted]"),
            ("api_key=abcdefghijklmnopqrstuvwxyz", "api_key=[redacted]"),
            ("mail ops@example.com now", "mail [redacted-email] now"),
            ("open /home/alice/.config/x", "open /home/[redacted]"),
            ("at /Users/alice/acme?token=secret)", "at /Users/[redacted])"),
            ("at /Users/alice/acme?token=secret-0123456789", "at /Users/[redacted]"),
            (r"at C:\Users\alice\acme.txt", r"at C:\Users\[redacted]"),
            (
                "Call to 'getMe' failed! (400: Bearer provider-token-1 for alice@example.test at /Users/alice/acme?token=secret)",
                "Call to 'getMe' failed! (400: Bearer [redacted] for [redacted-email] at /Users/[redacted])",
            ),
            ("bot 123456789:ABCdefGHIjklMNOpqrSTUvwxYZ", "bot [redacted]"),
            ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "jwt [redacted]"),
            ("plain words stay, 42 of them", "plain words stay, 42 of them"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_text(input), expected, "{input}");
        }
        assert_eq!(Redacted(&"token occ_gw1_secretpart").to_string(), "token [redacted]");
    }

    /// A kind's own token prefixes (Slack's `xoxb-`, …) come from its description in the table.
    #[cfg(feature = "slack")]
    #[test]
    fn a_kind_adds_its_platform_token_prefixes() {
        learn_kind_prefixes(crate::providers::KINDS);
        assert_eq!(redact_text("token xoxb-1234-abcdef and occ_gw1_secretpart"), "token [redacted] and [redacted]");
    }

    #[test]
    fn settings_redaction() {
        let settings = json!({"apiBaseUrl": "https://api.example.com", "nested": {"clientSecret": "x", "note": "see https://h/?api_key=zz"}, "accessKey": "", "n": 5});
        assert_eq!(
            redact_value(&settings, None),
            json!({"apiBaseUrl": "https://api.example.com", "nested": {"clientSecret": "[redacted]", "note": "see https://h/?api_key=[redacted]"}, "accessKey": "", "n": 5})
        );
    }
}
