//! The one table of channel kinds: one line per kind, in the order the environment shortcuts are
//! read (and `setup` lists them). Each kind describes itself in its own folder
//! (`providers/<kind>/kind.rs`); a kind whose cargo feature is off is still listed, as a stand-in
//! that names the feature, so an enabled entry of it fails the load with one line saying so.
//!
//! Adding a channel: its folder, and one line here.

use crate::channel::{Channel, DoctorCheck};
use crate::config::{KindSettings, KindSpec, ProviderConfig};

use super::ProviderFactory;

/// A future borrowed from the factory, run on the gateway's single thread: what a kind's
/// `doctor` entry returns (a plain `fn` pointer cannot be `async`).
pub type LocalFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// `"feature" "name" "TRIGGER" => path::TO::SPEC`: the kind's spec when its feature is on, else
/// the stand-in that names the feature (and notices `OPEN_COWORK_GATEWAY_<TRIGGER>`, the variable
/// that configures the kind from the environment; none for the fake provider, which is added only
/// when nothing else is configured, which its stand-in cannot know).
macro_rules! kinds {
    ($($feature:literal $name:literal $trigger:literal => $spec:path),* $(,)?) => {
        &[$(
            #[cfg(feature = $feature)]
            &$spec,
            #[cfg(not(feature = $feature))]
            &KindSpec::not_compiled_in($name, $feature, $trigger),
        )*]
    };
}

/// Every kind this crate knows, compiled in or not.
pub static KINDS: &[&KindSpec] = kinds![
    "telegram" "telegram" "TELEGRAM_BOT_TOKEN" => super::telegram::kind::KIND,
    "slack" "slack" "SLACK_BOT_TOKEN" => super::slack::kind::KIND,
    "email" "email" "EMAIL_INBOUND_SECRET" => super::email::kind::KIND,
    "webhook" "webhook" "WEBHOOK_DELIVERY_URL" => super::webhook::kind::WEBHOOK,
    "bridges" "discord" "DISCORD_DELIVERY_URL" => super::webhook::kind::DISCORD,
    "bridges" "whatsapp" "WHATSAPP_DELIVERY_URL" => super::webhook::kind::WHATSAPP,
    "bridges" "signal" "SIGNAL_DELIVERY_URL" => super::webhook::kind::SIGNAL,
    "cli" "cli" "CLI_ENABLED" => super::cli::kind::KIND,
    "devcloud" "fake" "" => super::fake::kind::KIND,
];

/// What a kind's constructor returns: the channel, or why it cannot run in this process.
pub type Built = Result<std::rc::Rc<dyn Channel>, String>;

/// The channel half of a kind, which the configuration layer carries without knowing its type
/// ([`KindSpec::channel`]).
pub struct ChannelKind {
    /// The channel for one enabled entry of the kind, or why it cannot run in this process.
    pub build: fn(&ProviderFactory, &ProviderConfig) -> Built,
    /// `doctor`'s checks of an entry against its platform, without building its channel.
    pub doctor: for<'a> fn(&'a ProviderFactory, &'a ProviderConfig) -> LocalFuture<'a, Vec<DoctorCheck>>,
}

impl ChannelKind {
    /// The channel half of `spec`, if it has one (a kind not compiled in has none).
    pub fn of(spec: &KindSpec) -> Option<&ChannelKind> {
        spec.channel.downcast_ref::<ChannelKind>()
    }
}

/// A kind with nothing to check remotely.
pub fn no_doctor<'a>(_: &'a ProviderFactory, _: &'a ProviderConfig) -> LocalFuture<'a, Vec<DoctorCheck>> {
    Box::pin(std::future::ready(Vec::new()))
}

/// The entry's settings as the kind's own type (checked while the configuration loaded).
pub fn settings_of<T: KindSettings>(config: &ProviderConfig) -> Result<&T, String> {
    config.channel.get::<T>().ok_or_else(|| format!("The {} provider has no settings of its kind.", config.kind))
}

/// The shared HTTPS client, which a kind that calls its platform needs.
pub fn https_client(
    factory: &ProviderFactory,
    config: &ProviderConfig,
) -> Result<crate::net::https::HttpsClient, String> {
    factory.context.http.clone().ok_or_else(|| {
        format!("The {} provider needs the Cloud client's HTTPS connection, which is not attached.", config.kind)
    })
}

/// `doctor`'s line for a kind whose platform cannot be checked without the HTTPS client.
pub fn no_https_client(id: &str) -> Vec<DoctorCheck> {
    vec![DoctorCheck::fail(id, "no HTTPS client was attached to check it with")]
}
