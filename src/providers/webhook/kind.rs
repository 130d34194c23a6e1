//! The generic webhook kind and the three bridges (discord, whatsapp, signal), described once
//! each: see [`crate::config::providers::kind::KindParts`]. They share this implementation and differ only in
//! their name, their capabilities and their bridge rules.

use super::WebhookProvider;
use crate::channel::DoctorCheck;
use crate::config::providers::kind::{AddedEntry, EntryCheck, KindParts, SetupFlag, SetupInput, SetupOutput, Shortcuts, Typed};
use crate::config::providers::webhook::WebhookSettings;
use crate::config::{ConfigError, KindSettings, ProviderConfig};
use crate::providers::kinds::LocalFuture;
use crate::providers::kinds::{settings_of, Built, ChannelKind};
use crate::providers::ProviderFactory;

/// The generic webhook and the bridges share one description; the table of kinds names each.
pub const RELAY: KindParts = KindParts::new(shortcut, check, &ChannelKind { build, doctor }).setup(FLAGS, setup);

fn is_bridge(kind: &str) -> bool {
    kind != "webhook"
}

impl KindSettings for WebhookSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn risks(&self, id: &str) -> Vec<String> {
        if !self.policy.allow_private {
            return Vec::new();
        }
        vec![format!(
            "Provider {id} may deliver to private, loopback and link-local addresses (allowPrivateDelivery): \
             a compromised Cloud or relay URL can reach this machine's network."
        )]
    }
}

/// `OPEN_COWORK_GATEWAY_<KIND>_DELIVERY_URL` and the kind's other variables; a bridge may name
/// its workspace.
fn shortcut(env: &Shortcuts) -> AddedEntry {
    let prefix = env.kind.to_ascii_uppercase();
    let var = |suffix: &str| env.var(&format!("{prefix}_{suffix}"));
    let Some(url) = var("DELIVERY_URL") else { return Ok(None) };
    let workspace = if is_bridge(env.kind) { var("WORKSPACE_ID") } else { None };
    Ok(Some(env.entry(
        workspace,
        vec![("sharedSecret", var("SHARED_SECRET"))],
        vec![
            ("deliveryUrl", Some(url)),
            ("deliveryUrlAllowedHosts", var("DELIVERY_ALLOWED_HOSTS")),
            ("allowPrivateDelivery", var("ALLOW_PRIVATE_DELIVERY")),
            ("maxAttachmentBytes", var("MAX_ATTACHMENT_BYTES")),
        ],
    )))
}

/// The relay posts inbound messages as request bodies, so attachments are bounded by the body
/// cap. The delivery URL is checked when the provider is built (by the factory, not the shared
/// rules), so only an enabled entry, which is built, must carry a good one.
fn check(entry: &mut EntryCheck) -> Result<Typed, ConfigError> {
    let name = entry.kind.as_str();
    if !is_bridge(name) && entry.credential("sharedSecret").is_none() {
        return Err(entry.error("requires credential sharedSecret for authenticated webhook ingress."));
    }
    entry.bound_attachments_by_the_body_cap()?;
    if is_bridge(name) {
        if entry.credential("sharedSecret").is_none() {
            return Err(
                entry.error(format!("requires credential sharedSecret for authenticated {name} bridge ingress."))
            );
        }
        if entry.setting_text("deliveryUrl").is_none() {
            return Err(entry.error(format!("requires setting deliveryUrl for {name} bridge delivery.")));
        }
    }
    if !entry.enabled {
        return Ok(None);
    }
    Ok(EntryCheck::typed(WebhookSettings::parse(entry.kind, entry.id, entry.credentials, entry.settings)?))
}

const FLAGS: &[SetupFlag] = &[
    SetupFlag {
        name: "--delivery-url",
        value: Some("URL"),
        help: "the relay's HTTPS URL (required for webhook and the bridges)",
    },
    SetupFlag {
        name: "--shared-secret",
        value: Some("S"),
        help: "the relay's signing secret; generated when not given",
    },
];

/// The relay's URL passes the same DNS-free policy `check-config` runs.
fn setup(input: &SetupInput) -> Result<SetupOutput, String> {
    let url =
        input.value("--delivery-url").ok_or("--delivery-url is required for the webhook and bridge providers.")?;
    let policy = crate::net::url_policy::UrlPolicy::default();
    crate::net::url_policy::check_delivery_url(url, &policy)
        .map_err(|refusal| format!("--delivery-url is refused: {}.", refusal.message))?;
    let prefix = input.kind.to_ascii_uppercase();
    let mut out = SetupOutput::default();
    out.set(format!("OPEN_COWORK_GATEWAY_{prefix}_DELIVERY_URL"), url.trim());
    out.set(format!("OPEN_COWORK_GATEWAY_{prefix}_SHARED_SECRET"), input.secret_or_generated("--shared-secret")?);
    out.set(format!("OPEN_COWORK_GATEWAY_{prefix}_CHANNEL_BINDING_ID"), input.kind);
    Ok(out)
}

fn build(factory: &ProviderFactory, config: &ProviderConfig) -> Built {
    let settings = settings_of::<WebhookSettings>(config)?;
    let resolver = std::rc::Rc::clone(&factory.webhook_resolver);
    let channel = WebhookProvider::new(config.id.clone(), settings, resolver, &factory.context)?;
    Ok(std::rc::Rc::new(channel))
}

fn doctor<'a>(factory: &'a ProviderFactory, config: &'a ProviderConfig) -> LocalFuture<'a, Vec<DoctorCheck>> {
    Box::pin(async move {
        match settings_of::<WebhookSettings>(config) {
            Ok(settings) => super::doctor::check(&config.id, settings, factory.webhook_resolver.as_ref()).await,
            Err(problem) => vec![DoctorCheck::fail(config.id.as_str(), problem)],
        }
    })
}
