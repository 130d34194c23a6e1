//! What a channel kind tells the rest of the gateway about itself: one [`KindSpec`] per kind,
//! made of its entry in the one table of kinds (`providers/table_of_kinds.rs`: name, cargo
//! feature, environment trigger) and the [`KindParts`] its own folder under `providers/` writes. The configuration, redaction, `setup` and the dev
//! Cloud read that table instead of naming kinds, so adding a channel touches no code here.
//!
//! The types are defined in this layer (below `providers`) because the configuration resolves
//! entries against them; the table itself is handed in ([`Kinds`]) by whoever resolves a
//! configuration from a layer above `providers` (the binary, `setup`, the tests), so nothing here
//! reads a layer above its own.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::ProviderContext;
use crate::config::env::Env;
use crate::config::secret::Secret;
use crate::config::ConfigError;

/// A table of kinds: every kind a build knows, compiled in or not, in the order the environment
/// shortcuts are read.
pub type Kinds = &'static [&'static KindSpec];

/// A kind's checked settings: typed for a provider to run, or `None` for an entry never run.
pub type Typed = Option<Arc<dyn KindSettings>>;

/// An entry a kind adds to the provider list, if any.
pub type AddedEntry = Result<Option<Value>, ConfigError>;

/// One channel kind, as the configuration, `setup`, redaction and the dev Cloud see it: its line
/// of the table of kinds (name, cargo feature, the variable that configures it from the
/// environment) and what its folder says about it ([`KindParts`]).
pub struct KindSpec {
    /// The `kind` of a provider entry, and its default id and channel binding.
    pub name: &'static str,
    /// The cargo feature that compiles the kind in.
    pub cargo_feature: &'static str,
    /// For the stand-in of a kind this build lacks: the variable (after `OPEN_COWORK_GATEWAY_`)
    /// that configures the kind from the environment. Set (and not `false`), it adds an entry of
    /// the kind, which then fails the load naming the missing feature instead of being ignored.
    pub stand_in_trigger: Option<&'static str>,
    /// What the kind's folder describes.
    pub parts: KindParts,
}

/// What a kind's folder says about it (`providers/<kind>/kind.rs`), built with
/// [`KindParts::new`] and the `const` setters below for whatever differs from the common case.
#[derive(Clone, Copy)]
pub struct KindParts {
    /// The kind the runtime reports instead of this one (the fake provider stands in for the CLI):
    /// its ids are free-form, and telemetry and Cloud see the other kind.
    pub stands_in_for: Option<&'static str>,
    /// Whether an enabled entry may run on a publicly exposed gateway.
    pub exposure: Exposure,
    /// The entry its `OPEN_COWORK_GATEWAY_<KIND>_*` variables describe, if they are set. Called
    /// whatever way the list is given, so a malformed switch fails the load even when unused.
    pub shortcut: fn(&Shortcuts) -> AddedEntry,
    /// The entry this kind adds when no provider is configured at all (the demo's fake provider).
    pub when_none_configured: Option<fn(&Env) -> AddedEntry>,
    /// Checks a normalised entry of this kind and types its settings (`None`: never run).
    pub check: fn(&mut EntryCheck) -> Result<Typed, ConfigError>,
    /// Token prefixes that are credentials of this kind's platform on their own, redacted
    /// wherever they appear in text.
    pub secret_prefixes: &'static [&'static str],
    /// The channel binding the dev Cloud seeds for this kind's default entry.
    pub seeds: Seeds,
    /// What `setup --provider <name>` asks for and writes; `None`: not offered by `setup`.
    pub setup: Option<SetupSpec>,
    /// The channel half of the kind (its constructor), which only `providers` knows the type of.
    pub channel: &'static (dyn Any + Send + Sync),
}

/// The channel binding the dev Cloud seeds for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeds {
    /// None: the kind's entries never reach the dev Cloud's seeded organisation.
    Nothing,
    /// A binding named after the kind, for a provider of the kind (the common case).
    OwnBinding,
    /// A binding of another id, for the provider Cloud knows the kind as.
    Binding { binding_id: &'static str, provider: &'static str },
}

impl KindParts {
    /// A public kind that reads its environment shortcut with `shortcut`, checks an entry with
    /// `check` and builds its channel from `channel`; it redacts no prefix of its own, seeds a
    /// binding named after it and is not offered by `setup`.
    pub const fn new(
        shortcut: fn(&Shortcuts) -> AddedEntry,
        check: fn(&mut EntryCheck) -> Result<Typed, ConfigError>,
        channel: &'static (dyn Any + Send + Sync),
    ) -> Self {
        Self {
            stands_in_for: None,
            exposure: Exposure::Public,
            shortcut,
            when_none_configured: None,
            check,
            secret_prefixes: &[],
            seeds: Seeds::OwnBinding,
            setup: None,
            channel,
        }
    }

    /// Offered by `setup --provider <name>` with `flags`, whose values `write` turns into env lines.
    pub const fn setup(
        self,
        flags: &'static [SetupFlag],
        write: fn(&SetupInput) -> Result<SetupOutput, String>,
    ) -> Self {
        Self { setup: Some(SetupSpec { flags, write }), ..self }
    }

    /// Tokens starting with one of `prefixes` are this platform's credentials, redacted anywhere.
    pub const fn secret_prefixes(self, prefixes: &'static [&'static str]) -> Self {
        Self { secret_prefixes: prefixes, ..self }
    }

    pub const fn exposure(self, exposure: Exposure) -> Self {
        Self { exposure, ..self }
    }

    pub const fn seeds(self, seeds: Seeds) -> Self {
        Self { seeds, ..self }
    }

    /// Reported as `kind` to telemetry and Cloud, with free-form ids.
    pub const fn stands_in_for(self, kind: &'static str) -> Self {
        Self { stands_in_for: Some(kind), ..self }
    }

    /// Adds an entry with `added` when no provider is configured at all.
    pub const fn when_none_configured(self, added: fn(&Env) -> AddedEntry) -> Self {
        Self { when_none_configured: Some(added), ..self }
    }
}

impl KindSpec {
    /// A kind compiled into this build: its table line and its folder's parts.
    pub const fn compiled(name: &'static str, cargo_feature: &'static str, parts: KindParts) -> Self {
        Self { name, cargo_feature, stand_in_trigger: None, parts }
    }

    /// The stand-in for a kind this build was compiled without: a disabled entry of it loads (and
    /// is never run), an enabled one fails the load naming the feature.
    pub const fn not_compiled_in(name: &'static str, cargo_feature: &'static str, trigger: &'static str) -> Self {
        Self {
            name,
            cargo_feature,
            stand_in_trigger: Some(trigger),
            parts: KindParts { seeds: Seeds::Nothing, ..KindParts::new(stand_in_shortcut, never_run, &()) },
        }
    }

    /// `false` for the stand-in of a kind whose feature is off (the one kind of spec with a
    /// trigger): only a disabled entry of it loads.
    pub const fn compiled_in(&self) -> bool {
        self.stand_in_trigger.is_none()
    }

    /// The channel binding the dev Cloud seeds for the kind's default entry, and the variable
    /// that names it (`OPEN_COWORK_GATEWAY_<KIND>_CHANNEL_BINDING_ID`); none for a kind not
    /// compiled in.
    pub fn seeded_binding(&self) -> Option<SeededBinding> {
        let (binding_id, provider) = match self.parts.seeds {
            Seeds::Nothing => return None,
            Seeds::OwnBinding => (self.name, self.name),
            Seeds::Binding { binding_id, provider } => (binding_id, provider),
        };
        let env_var = format!("OPEN_COWORK_GATEWAY_{}_CHANNEL_BINDING_ID", self.name.to_ascii_uppercase());
        Some(SeededBinding { env_var, binding_id, provider })
    }
}

/// A kind without environment shortcuts.
pub fn no_shortcut(_: &Shortcuts) -> AddedEntry {
    Ok(None)
}

/// A bare entry of a kind this build lacks, when its trigger variable is set.
fn stand_in_shortcut(env: &Shortcuts) -> AddedEntry {
    let set = env.stand_in_trigger.and_then(|trigger| env.var(trigger));
    match set.as_deref().map(crate::config::env::parse_bool) {
        None | Some(Some(false)) => Ok(None),
        Some(_) => Ok(Some(env.entry(None, vec![], vec![]))),
    }
}

fn never_run(_: &mut EntryCheck) -> Result<Typed, ConfigError> {
    Ok(None)
}

/// Whether a kind may run on a gateway reachable from other machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    Public,
    /// Never: the message says why.
    LocalOnly(&'static str),
    /// Only in a self-host demo that sets `OPEN_COWORK_GATEWAY_ALLOW_PUBLIC_FAKE_PROVIDER=true`.
    DemoOnly(&'static str),
}

/// The typed settings of one entry, checked while the configuration loads. The kind's
/// constructor downcasts them back to its own type.
pub trait KindSettings: std::fmt::Debug + Send + Sync + Any {
    fn as_any(&self) -> &dyn Any;

    /// What an operator should know this entry risks (shown in `/diagnostics`).
    fn risks(&self, id: &str) -> Vec<String> {
        let _ = id;
        Vec::new()
    }
}

/// One entry under check: what normalisation made of it so far, and the rest of the configuration.
pub struct EntryCheck<'a> {
    pub id: &'a str,
    pub kind: super::ProviderKind,
    pub enabled: bool,
    pub credentials: &'a BTreeMap<String, Secret>,
    /// The normalised settings; a check may fill in defaults (shown in `/diagnostics`).
    pub settings: &'a mut Map<String, Value>,
    pub context: &'a ProviderContext<'a>,
}

impl EntryCheck<'_> {
    /// A "required credential": present and not blank once trimmed.
    pub fn credential(&self, key: &str) -> Option<&Secret> {
        super::credential(self.credentials, key)
    }

    /// A "setting string": a string, trimmed, not empty.
    pub fn setting_text(&self, key: &str) -> Option<String> {
        super::setting_text(self.settings, key)
    }

    /// "Gateway provider <id> <detail>".
    pub fn error(&self, detail: impl std::fmt::Display) -> ConfigError {
        super::provider_error(self.id, detail)
    }

    /// Fails with "requires credential <key>." unless the credential is set.
    pub fn require_credentials(&self, keys: &[&str]) -> Result<(), ConfigError> {
        match keys.iter().find(|key| self.credential(key).is_none()) {
            Some(key) => Err(self.error(format!("requires credential {key}."))),
            None => Ok(()),
        }
    }

    /// Fails with "requires setting <key>." unless the setting is set.
    pub fn require_settings(&self, keys: &[&str]) -> Result<(), ConfigError> {
        match keys.iter().find(|key| self.setting_text(key).is_none()) {
            Some(key) => Err(self.error(format!("requires setting {key}."))),
            None => Ok(()),
        }
    }

    /// `settings.maxAttachmentBytes` of a kind whose inbound arrives as a request body: an
    /// integer from 1 to 64 MiB, no more than the body cap, which is also its default.
    pub fn bound_attachments_by_the_body_cap(&mut self) -> Result<(), ConfigError> {
        let bytes = super::attachment_cap(self.id, self.settings, self.context.max_request_body_bytes)?;
        self.settings.insert("maxAttachmentBytes".into(), bytes.into());
        Ok(())
    }

    /// Typed settings for an entry.
    pub fn typed(settings: impl KindSettings) -> Typed {
        Some(Arc::new(settings))
    }
}

/// What a kind's shortcut reads: `OPEN_COWORK_GATEWAY_<suffix>` and the gateway's public URL.
pub struct Shortcuts<'a> {
    /// The kind whose shortcuts are read (one function may serve several kinds).
    pub kind: &'static str,
    /// [`KindSpec::stand_in_trigger`] of the kind.
    pub stand_in_trigger: Option<&'static str>,
    pub env: &'a Env,
    pub gateway_public_url: Option<&'a str>,
}

impl Shortcuts<'_> {
    /// `OPEN_COWORK_GATEWAY_<suffix>`, if set and not blank.
    pub fn var(&self, suffix: &str) -> Option<String> {
        self.env.string(&format!("OPEN_COWORK_GATEWAY_{suffix}")).map(str::to_owned)
    }

    /// An env entry of the kind: id and kind are its name, the channel binding is
    /// `OPEN_COWORK_GATEWAY_<KIND>_CHANNEL_BINDING_ID` or the name; unset values are left out.
    pub fn entry(
        &self,
        workspace: Option<String>,
        credentials: Vec<(&str, Option<String>)>,
        settings: Vec<(&str, Option<String>)>,
    ) -> Value {
        let kind = self.kind;
        let prefix = kind.to_ascii_uppercase();
        let mut entry = Map::new();
        entry.insert("id".into(), kind.into());
        entry.insert("kind".into(), kind.into());
        let binding = self.var(&format!("{prefix}_CHANNEL_BINDING_ID")).unwrap_or_else(|| kind.to_owned());
        entry.insert("channelBindingId".into(), binding.into());
        if let Some(workspace) = workspace {
            entry.insert("externalWorkspaceId".into(), workspace.into());
        }
        let collect = |pairs: Vec<(&str, Option<String>)>| -> Map<String, Value> {
            crate::util::maps::object(pairs.into_iter().filter_map(|(k, v)| Some((k, v?))))
        };
        entry.insert("credentials".into(), Value::Object(collect(credentials)));
        entry.insert("settings".into(), Value::Object(collect(settings)));
        Value::Object(entry)
    }
}

/// A channel binding the dev Cloud creates when it is seeded, so a default entry of the kind
/// finds its binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededBinding {
    /// The variable that names the binding of the kind's default entry.
    pub env_var: String,
    pub binding_id: &'static str,
    /// The provider the binding is for, as Cloud sees it.
    pub provider: &'static str,
}

/// What `setup` offers for a kind.
#[derive(Clone, Copy)]
pub struct SetupSpec {
    /// The kind's own flags (a flag several kinds share is listed by each).
    pub flags: &'static [SetupFlag],
    /// The env lines for the kind's entry, from the flag values; an error names the flag.
    pub write: fn(&SetupInput) -> Result<SetupOutput, String>,
}

/// One `setup` flag: `--name VALUE` (or a switch), with its usage line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupFlag {
    pub name: &'static str,
    /// The value's placeholder in the usage text; `None` for a switch.
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// The flags `setup` was given, for a kind's `write`.
pub struct SetupInput<'a> {
    /// The kind `--provider` chose (one `write` may serve several kinds).
    pub kind: &'static str,
    pub values: &'a BTreeMap<&'static str, String>,
    /// `--public-url`, if given (checked by `setup` once the kind says whether it needs one).
    pub public_url: Option<&'a str>,
    /// A fresh random secret (32 bytes, base64url) for a secret the operator did not give.
    pub generate_secret: &'a dyn Fn() -> Result<String, String>,
}

impl SetupInput<'_> {
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }

    pub fn switch(&self, flag: &str) -> bool {
        self.values.contains_key(flag)
    }

    /// The flag's value, or a generated secret.
    pub fn secret_or_generated(&self, flag: &str) -> Result<String, String> {
        match self.value(flag) {
            Some(value) => Ok(value.to_owned()),
            None => (self.generate_secret)(),
        }
    }
}

/// A kind's part of the env file `setup` writes.
#[derive(Debug, Default)]
pub struct SetupOutput {
    /// `KEY=value` lines, in order.
    pub lines: Vec<(String, String)>,
    /// Whether platforms post to this gateway, so it listens on every interface and needs a public
    /// URL: `Some(why)` names what needs it, for the error when `--public-url` is missing.
    pub public_url_needed_for: Option<&'static str>,
    /// Whether the gateway listens publicly even without needing a URL (a public URL was given to
    /// a kind that may receive from elsewhere).
    pub listens_publicly: bool,
}

impl SetupOutput {
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.lines.push((key.into(), value.into()));
    }
}
