//! What a kind's folder uses to describe its channel half: the constructor and `doctor` entry
//! ([`ChannelKind`]) and the helpers they share. The table of kinds itself is
//! `providers/table_of_kinds.rs`.

use crate::channel::{Channel, DoctorCheck};
use crate::config::{KindSettings, KindSpec, ProviderConfig};

use super::ProviderFactory;

/// A future borrowed from the factory, run on the gateway's single thread: what a kind's
/// `doctor` entry returns (a plain `fn` pointer cannot be `async`).
pub type LocalFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// What a kind's constructor returns: the channel, or why it cannot run in this process.
pub type Built = Result<std::rc::Rc<dyn Channel>, String>;

/// The channel half of a kind, which the configuration layer carries without knowing its type
/// ([`crate::config::providers::kind::KindParts::channel`]).
pub struct ChannelKind {
    /// The channel for one enabled entry of the kind, or why it cannot run in this process.
    pub build: fn(&ProviderFactory, &ProviderConfig) -> Built,
    /// `doctor`'s checks of an entry against its platform, without building its channel.
    pub doctor: for<'a> fn(&'a ProviderFactory, &'a ProviderConfig) -> LocalFuture<'a, Vec<DoctorCheck>>,
}

impl ChannelKind {
    /// The channel half of `spec`, if it has one (a kind not compiled in has none).
    pub fn of(spec: &KindSpec) -> Option<&ChannelKind> {
        spec.parts.channel.downcast_ref::<ChannelKind>()
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
