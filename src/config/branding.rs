//! Branding resolution: defaults, then `branding` from JSON, then
//! `OPEN_COWORK_GATEWAY_PUBLIC_BRANDING_JSON`, then the individual env vars. Returned on `/health`
//! and `/ready`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::env::{non_blank, Env};
use super::urls::is_branding_url;
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Branding {
    pub product_name: String,
    pub short_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    pub support_url: String,
    pub privacy_url: String,
    pub security_url: String,
    pub legal_url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub theme: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dashboard: BTreeMap<String, String>,
    pub managed_org_connection_labels: BTreeMap<String, String>,
}

impl Default for Branding {
    fn default() -> Self {
        let labels = [
            ("desktopToken", "Desktop token"),
            ("gatewayToken", "Gateway token"),
            ("apiToken", "API token"),
            ("cloudUrl", "Cloud URL"),
        ];
        Self {
            product_name: "Open Cowork Cloud".into(),
            short_name: "OC".into(),
            logo_url: None,
            support_url: String::new(),
            privacy_url: String::new(),
            security_url: String::new(),
            legal_url: String::new(),
            theme: BTreeMap::new(),
            dashboard: BTreeMap::new(),
            managed_org_connection_labels: crate::util::maps::sorted(
                labels.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
        }
    }
}

/// URL fields and whether `mailto:` is accepted for them.
const URL_FIELDS: [(&str, bool); 5] =
    [("logoUrl", false), ("supportUrl", true), ("privacyUrl", false), ("securityUrl", false), ("legalUrl", false)];

pub fn resolve(raw: &Value, env: &Env) -> Result<Branding, ConfigError> {
    let mut branding = Branding::default();
    if let Some(Value::Object(layer)) = raw.get("branding") {
        apply_layer(&mut branding, layer);
    }
    if let Some(text) = env.string("OPEN_COWORK_GATEWAY_PUBLIC_BRANDING_JSON") {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::new(format!("Invalid OPEN_COWORK_GATEWAY_PUBLIC_BRANDING_JSON: {e}")))?;
        if let Value::Object(layer) = value {
            apply_layer(&mut branding, &layer);
        }
    }
    let env_layer = crate::util::maps::object(
        [
            ("productName", "OPEN_COWORK_GATEWAY_BRAND_NAME"),
            ("shortName", "OPEN_COWORK_GATEWAY_BRAND_SHORT_NAME"),
            ("logoUrl", "OPEN_COWORK_GATEWAY_BRAND_LOGO_URL"),
            ("supportUrl", "OPEN_COWORK_GATEWAY_SUPPORT_URL"),
            ("privacyUrl", "OPEN_COWORK_GATEWAY_PRIVACY_URL"),
            ("securityUrl", "OPEN_COWORK_GATEWAY_SECURITY_URL"),
            ("legalUrl", "OPEN_COWORK_GATEWAY_LEGAL_URL"),
        ]
        .into_iter()
        .filter_map(|(key, var)| Some((key, env.string(var)?))),
    );
    apply_layer(&mut branding, &env_layer);
    Ok(branding)
}

fn apply_layer(branding: &mut Branding, layer: &Map<String, Value>) {
    let text = |key: &str| layer.get(key).and_then(Value::as_str).and_then(non_blank).map(str::to_owned);
    if let Some(name) = text("productName") {
        branding.product_name = name;
    }
    if let Some(name) = text("shortName") {
        branding.short_name = name;
    }
    for (key, allow_mailto) in URL_FIELDS {
        let Some(url) = text(key).filter(|url| is_branding_url(url, allow_mailto)) else { continue };
        match key {
            "logoUrl" => branding.logo_url = Some(url),
            "supportUrl" => branding.support_url = url,
            "privacyUrl" => branding.privacy_url = url,
            "securityUrl" => branding.security_url = url,
            _ => branding.legal_url = url,
        }
    }
    for (key, target) in [
        ("theme", &mut branding.theme),
        ("dashboard", &mut branding.dashboard),
        ("managedOrgConnectionLabels", &mut branding.managed_org_connection_labels),
    ] {
        if let Some(Value::Object(map)) = layer.get(key) {
            target.extend(map.iter().filter_map(|(k, v)| Some((k.clone(), non_blank(v.as_str()?)?.to_owned()))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layers_and_url_validation() {
        let raw = json!({"branding": {"productName": "Acme", "supportUrl": "mailto:help@acme.test", "privacyUrl": "https://acme.test/privacy", "theme": {"accent": " #f00 ", "bad": 3}}});
        let env = Env::from_pairs([
            (
                "OPEN_COWORK_GATEWAY_PUBLIC_BRANDING_JSON",
                r#"{"shortName": "AC", "privacyUrl": "http://insecure.test"}"#,
            ),
            ("OPEN_COWORK_GATEWAY_BRAND_NAME", "  "),
            ("OPEN_COWORK_GATEWAY_LEGAL_URL", "https://acme.test/legal"),
        ]);
        let branding = resolve(&raw, &env).unwrap();
        assert_eq!(branding.product_name, "Acme");
        assert_eq!(branding.short_name, "AC");
        assert_eq!(branding.support_url, "mailto:help@acme.test");
        assert_eq!(branding.privacy_url, "https://acme.test/privacy", "an invalid URL leaves the lower layer");
        assert_eq!(branding.legal_url, "https://acme.test/legal");
        assert_eq!(branding.theme.get("accent").map(String::as_str), Some("#f00"));
        assert!(!branding.theme.contains_key("bad"));
        assert_eq!(branding.managed_org_connection_labels["cloudUrl"], "Cloud URL");
    }

    #[test]
    fn invalid_branding_json_fails() {
        let env = Env::from_pairs([("OPEN_COWORK_GATEWAY_PUBLIC_BRANDING_JSON", "{nope")]);
        assert!(resolve(&json!({}), &env)
            .unwrap_err()
            .to_string()
            .starts_with("Invalid OPEN_COWORK_GATEWAY_PUBLIC_BRANDING_JSON: "));
        let env = Env::from_pairs([("OPEN_COWORK_GATEWAY_PUBLIC_BRANDING_JSON", "[1]")]);
        assert_eq!(resolve(&json!({}), &env).unwrap(), Branding::default());
    }
}
