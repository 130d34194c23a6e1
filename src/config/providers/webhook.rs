//! The generic webhook's and the bridges' settings, checked and typed once while the configuration
//! loads. The delivery URL passes the DNS-free half of the outbound URL policy here (see
//! docs/webhook-protocol.md), so `check-config` and start-up refuse a bad one (exit 78) instead of
//! the first delivery.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{credential, provider_error, setting_text, ProviderKind};
use crate::config::secret::Secret;
use crate::config::ConfigError;
use crate::net::url_policy::{check_delivery_url, DeliveryUrl, UrlPolicy};

/// One webhook or bridge entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// `webhook`, `discord`, `whatsapp` or `signal`: capabilities and display name follow it.
    pub kind: ProviderKind,
    /// `credentials.sharedSecret`: the HMAC key of ingress and of outbound signatures. Never sent.
    pub shared_secret: Secret,
    /// `settings.deliveryUrl`, checked by the URL policy (normalised host, no fragment).
    pub delivery_url: DeliveryUrl,
    /// `settings.deliveryUrlAllowedHosts` and `settings.allowPrivateDelivery`.
    pub policy: UrlPolicy,
    /// `settings.maxAttachmentBytes` (the config layer always fills it): the inbound attachment cap.
    pub max_attachment_bytes: usize,
}

/// The display name of a bridge kind, used in construction errors and documentation.
pub fn display_name(kind: ProviderKind) -> &'static str {
    match kind.as_str() {
        "discord" => "Discord",
        "whatsapp" => "WhatsApp",
        "signal" => "Signal",
        _ => "Webhook",
    }
}

/// A "host list setting": a JSON array of strings or a comma-separated string.
fn host_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => {
            items.iter().filter_map(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        }
        Some(Value::String(text)) => {
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        }
        _ => Vec::new(),
    }
}

/// A "boolean setting" (false unless clearly true).
fn boolean(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(text)) => crate::config::env::parse_bool(text).unwrap_or(false),
        _ => false,
    }
}

impl WebhookSettings {
    /// Construction's checks after the rules `normalize_provider` already ran (secret present,
    /// attachment cap filled, a bridge's URL present): the webhook's URL, then the URL policy, then
    /// the secret's shape.
    pub fn parse(
        kind: ProviderKind,
        id: &str,
        credentials: &BTreeMap<String, Secret>,
        settings: &Map<String, Value>,
    ) -> Result<Self, ConfigError> {
        let bridge = kind.as_str() != "webhook";
        let url_text = setting_text(settings, "deliveryUrl").ok_or_else(|| {
            if bridge {
                provider_error(id, format!("requires setting deliveryUrl for {} bridge delivery.", kind.as_str()))
            } else {
                provider_error(id, "requires setting deliveryUrl.")
            }
        })?;
        let policy = UrlPolicy::new(
            &host_list(settings.get("deliveryUrlAllowedHosts")),
            boolean(settings.get("allowPrivateDelivery")),
        );
        let delivery_url = check_delivery_url(&url_text, &policy)
            .map_err(|refusal| provider_error(id, format!("settings.deliveryUrl: {}.", refusal.message)))?;
        let shared_secret = match credential(credentials, "sharedSecret") {
            Some(secret) => secret.clone(),
            None if bridge => {
                return Err(provider_error(id, format!("{} bridge sharedSecret is required.", display_name(kind))))
            }
            None => {
                return Err(provider_error(id, "requires credential sharedSecret for authenticated webhook ingress."))
            }
        };
        if shared_secret.expose().chars().any(|c| (c as u32) < 0x20 || c as u32 == 0x7f) {
            return Err(provider_error(id, "has a shared secret with control characters; remove them (the secret is compared byte for byte with what the relay signs with)."));
        }
        let max_attachment_bytes =
            settings.get("maxAttachmentBytes").and_then(Value::as_u64).unwrap_or(1024 * 1024) as usize;
        Ok(Self { kind, shared_secret, delivery_url, policy, max_attachment_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(name: &str) -> ProviderKind {
        ProviderKind::parse(crate::providers::KINDS, name).unwrap()
    }

    fn parse(kind: ProviderKind, settings: Value, secret: &str) -> Result<WebhookSettings, String> {
        let credentials = BTreeMap::from([("sharedSecret".to_owned(), Secret::new(secret))]);
        let Value::Object(settings) = settings else { panic!() };
        WebhookSettings::parse(kind, kind.as_str(), &credentials, &settings).map_err(|e| e.to_string())
    }

    #[test]
    fn url_policy_and_secret_rules_name_the_provider() {
        let ok = parse(kind("webhook"), json!({"deliveryUrl": "https://relay.example.com/in"}), "s").unwrap();
        assert_eq!(ok.delivery_url.host, "relay.example.com");
        assert_eq!(
            parse(kind("webhook"), json!({}), "s").unwrap_err(),
            "Gateway provider webhook requires setting deliveryUrl."
        );
        assert_eq!(
            parse(kind("discord"), json!({"deliveryUrl": "http://relay.example.com/in"}), "s").unwrap_err(),
            "Gateway provider discord settings.deliveryUrl: Webhook delivery URL must use https unless it targets localhost."
        );
        assert_eq!(
            parse(kind("signal"), json!({"deliveryUrl": "https://10.0.0.1/in"}), "s").unwrap_err(),
            "Gateway provider signal settings.deliveryUrl: Webhook delivery URL must not target a private or reserved IP literal."
        );
        let private = json!({"deliveryUrl": "https://10.0.0.1/in", "allowPrivateDelivery": "true"});
        assert!(parse(kind("signal"), private, "s").unwrap().policy.allow_private);
        let listed = json!({"deliveryUrl": "https://a.example.test/in", "deliveryUrlAllowedHosts": "*.example.com, b.example.org"});
        assert!(parse(kind("whatsapp"), listed, "s")
            .unwrap_err()
            .ends_with("Webhook delivery URL host is not allowed."));
        assert_eq!(
            parse(kind("webhook"), json!({"deliveryUrl": "https://relay.example.com/in"}), "a\u{7}b")
                .unwrap_err(),
            "Gateway provider webhook has a shared secret with control characters; remove them (the secret is compared byte for byte with what the relay signs with)."
        );
        assert_eq!(
            parse(kind("whatsapp"), json!({"deliveryUrl": "https://relay.example.com/in"}), "  ").unwrap_err(),
            "Gateway provider whatsapp WhatsApp bridge sharedSecret is required."
        );
    }
}
