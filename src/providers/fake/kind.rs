//! The fake kind, described once: see [`crate::config::providers::kind::KindParts`]. It stands in for the CLI
//! channel: Cloud and telemetry see `cli`.

use serde_json::Value;

use super::FakeProvider;
use crate::config::providers::fake::FakeSettings;
use crate::config::providers::kind::{AddedEntry, EntryCheck, Exposure, KindParts, Seeds, SetupInput, SetupOutput, Typed, no_shortcut};
use crate::config::{ConfigError, Env, KindSettings, ProviderConfig};
use crate::providers::kinds::{no_doctor, Built, ChannelKind};
use crate::providers::ProviderFactory;

pub const KIND: KindParts = KindParts::new(no_shortcut, check, &ChannelKind { build, doctor: no_doctor })
    .stands_in_for("cli")
    .exposure(Exposure::DemoOnly(
        "Gateway fake provider cannot be exposed publicly unless OPEN_COWORK_GATEWAY_ALLOW_PUBLIC_FAKE_PROVIDER=true is set explicitly for a self-host demo.",
    ))
    .when_none_configured(when_none_configured)
    .seeds(Seeds::Binding { binding_id: "fake-binding", provider: "cli" })
    .setup(&[], setup);

impl KindSettings for FakeSettings {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER=true` with no provider configured: the demo's entry.
fn when_none_configured(env: &Env) -> AddedEntry {
    if !crate::config::env_flag(env, "OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER")? {
        return Ok(None);
    }
    let binding = env.string("OPEN_COWORK_GATEWAY_FAKE_CHANNEL_BINDING_ID").unwrap_or("fake-binding");
    let mut fake = serde_json::json!({"id": "fake", "kind": "fake", "enabled": true, "channelBindingId": binding});
    if let Some(workspace) = env.string("OPEN_COWORK_GATEWAY_FAKE_WORKSPACE_ID") {
        fake["externalWorkspaceId"] = Value::from(workspace);
    }
    Ok(Some(fake))
}

/// It has no settings of its own: the largest file it accepts is the server's body cap.
fn check(entry: &mut EntryCheck) -> Result<Typed, ConfigError> {
    Ok(EntryCheck::typed(FakeSettings { max_file_bytes: entry.context.max_request_body_bytes }))
}

fn setup(_: &SetupInput) -> Result<SetupOutput, String> {
    let mut out = SetupOutput::default();
    out.set("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true");
    out.set("OPEN_COWORK_GATEWAY_FAKE_CHANNEL_BINDING_ID", "fake-binding");
    Ok(out)
}

/// Kept by the factory, so tests and the demo can look inside it.
fn build(factory: &ProviderFactory, config: &ProviderConfig) -> Built {
    let settings = crate::providers::kinds::settings_of::<FakeSettings>(config)?;
    let fake = FakeProvider::new(config.id.clone(), settings.max_file_bytes);
    factory.fakes.borrow_mut().insert(config.id.clone(), fake.clone());
    Ok(std::rc::Rc::new(fake))
}
