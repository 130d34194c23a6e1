//! The cli kind, described once: see [`crate::config::providers::kind::KindParts`].

use super::CliProvider;
use crate::config::providers::cli::CliSettings;
use crate::config::providers::kind::{AddedEntry, EntryCheck, Exposure, KindParts, Shortcuts, Typed};
use crate::config::{ConfigError, KindSettings, ProviderConfig};
use crate::providers::kinds::{no_doctor, Built, ChannelKind};
use crate::providers::ProviderFactory;

pub const KIND: KindParts = KindParts::new(shortcut, check, &ChannelKind { build, doctor: no_doctor })
    .exposure(Exposure::LocalOnly("Gateway CLI provider is local-only and cannot be exposed publicly."));

impl KindSettings for CliSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `OPEN_COWORK_GATEWAY_CLI_ENABLED=true`; anything but a boolean fails the load.
fn shortcut(env: &Shortcuts) -> AddedEntry {
    if !crate::config::env_flag(env.env, "OPEN_COWORK_GATEWAY_CLI_ENABLED")? {
        return Ok(None);
    }
    Ok(Some(env.entry(env.var("CLI_WORKSPACE_ID"), vec![], vec![])))
}

/// A CLI entry's credentials and settings are accepted and ignored.
fn check(_: &mut EntryCheck) -> Result<Typed, ConfigError> {
    Ok(EntryCheck::typed(CliSettings {}))
}

/// Its output goes where the factory says (stdout, or a test's buffer); it reads stdin unless
/// the factory says otherwise.
fn build(factory: &ProviderFactory, config: &ProviderConfig) -> Built {
    let (mode, out) = (factory.cli_output)();
    let input = factory.cli_reads_stdin.then(|| std::rc::Rc::clone(&factory.cli_input_ended));
    Ok(std::rc::Rc::new(CliProvider::new(config.id.clone(), mode, out, input)))
}
