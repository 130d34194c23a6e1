//! The channels this build implements, one folder per kind, each behind its cargo feature; the
//! one table of kinds ([`KINDS`], written in `table_of_kinds.rs`, which also declares the
//! folders); and [`ProviderFactory`], which builds a configured entry through its kind's
//! constructor. Adding a kind = its folder here and one entry in the table.
//!
//! A folder's `conformance.rs` is not part of this library: it is the kind's side of the channel
//! conformance battery (its fake platform, driven through the test crate's `TestGateway`), which
//! the integration tests include by reading the same table.

#[cfg(any(feature = "telegram", feature = "webhook", feature = "bridges"))]
pub mod buttons;
pub mod kinds;

/// Declares each folder of the table of kinds (compiled when one of its kinds' features is on,
/// or `always`) and builds [`KINDS`]: a kind's spec when its feature is on, else the stand-in
/// that names the feature.
macro_rules! kinds {
    ($($folder:ident $($always:ident)? {
        $($kind:ident if $feature:literal when $trigger:literal => $parts:ident)+
    })+) => {
        $(kinds!(@folder $folder $($always)? [$($feature)+]);)+

        /// Every kind this crate knows, compiled in or not.
        pub static KINDS: &[&KindSpec] = &[$($(
            #[cfg(feature = $feature)]
            &KindSpec::compiled(stringify!($kind), $feature, $folder::kind::$parts),
            #[cfg(not(feature = $feature))]
            &KindSpec::not_compiled_in(stringify!($kind), $feature, $trigger),
        )+)+];
    };
    (@folder $folder:ident always [$($feature:literal)+]) => {
        pub mod $folder;
    };
    (@folder $folder:ident [$($feature:literal)+]) => {
        #[cfg(any($(feature = $feature),+))]
        pub mod $folder;
    };
}

include!("table_of_kinds.rs");

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use smol_str::SmolStr;

use crate::channel::{Channel, DoctorCheck};
use crate::config::{ChannelSettings, KindSpec, ProviderConfig};
use crate::net::https::HttpsClient;
use cli::CliOutputMode;

/// Builds channels for the registry. The CLI's output goes to stdout and it reads stdin unless a
/// test or the demo says otherwise.
pub struct ProviderFactory {
    pub cli_output: Box<dyn Fn() -> (CliOutputMode, Box<dyn std::io::Write>)>,
    /// Whether a CLI channel reads its input lines from stdin.
    pub cli_reads_stdin: bool,
    /// What channels need from the gateway; set by the wiring before channels are built.
    pub context: BuildContext,
    /// Set once a CLI channel's input has ended (the demo waits for it).
    cli_input_ended: Rc<std::cell::Cell<bool>>,
    /// Fake channels built so far, by provider id, so tests and the demo can look inside them.
    fakes: RefCell<HashMap<SmolStr, fake::FakeProvider>>,
    /// Answers the webhook and bridge channels' per-attempt DNS lookups: the system resolver,
    /// or a scripted one in tests (which must never leave loopback).
    pub webhook_resolver: Rc<dyn crate::net::url_policy::Resolver>,
}

/// What channels get from the gateway when they are built.
#[derive(Clone, Default)]
pub struct BuildContext {
    /// The shared HTTPS client; `None` without a Cloud client.
    pub http: Option<HttpsClient>,
    /// The state directory, if any (button tables and open streams kept across restarts).
    pub state_dir: Option<std::path::PathBuf>,
    /// `OPEN_COWORK_GATEWAY_CA_FILE`: trusted for webhook and bridge delivery URLs too.
    pub ca_file: Option<std::path::PathBuf>,
    /// `timeouts.webhookDeliveryMs`: bounds each webhook or bridge delivery attempt.
    pub webhook_delivery_timeout: std::time::Duration,
}

impl Default for ProviderFactory {
    fn default() -> Self {
        Self {
            cli_output: Box::new(|| (CliOutputMode::Json, Box::new(std::io::stdout()))),
            cli_reads_stdin: true,
            context: BuildContext::default(),
            cli_input_ended: Rc::default(),
            fakes: RefCell::new(HashMap::new()),
            webhook_resolver: Rc::new(crate::net::url_policy::SystemResolver),
        }
    }
}

impl ProviderFactory {
    /// A factory whose CLI writes to `output` and reads no input (tests, the demo's own input).
    pub fn with_cli_output(output: impl Fn() -> (CliOutputMode, Box<dyn std::io::Write>) + 'static) -> Self {
        Self { cli_output: Box::new(output), cli_reads_stdin: false, ..Self::default() }
    }

    /// The channel for one provider entry, or why it cannot run in this process. The entry's
    /// settings were typed and checked with the configuration; its kind builds it.
    pub fn build(&self, config: &ProviderConfig) -> Result<Rc<dyn Channel>, String> {
        match kinds::ChannelKind::of(config.kind.spec()) {
            Some(kind) if config.channel != ChannelSettings::NotInThisBuild => (kind.build)(self, config),
            _ => Err(format!("The {} provider is not available in this build.", config.kind.as_str())),
        }
    }

    /// `doctor`'s checks of one provider entry against its platform, without building or
    /// starting its channel.
    pub async fn doctor(&self, config: &ProviderConfig) -> Vec<DoctorCheck> {
        match kinds::ChannelKind::of(config.kind.spec()) {
            Some(kind) if config.channel != ChannelSettings::NotInThisBuild => (kind.doctor)(self, config).await,
            _ => Vec::new(),
        }
    }

    /// Whether a CLI channel read its input to the end.
    pub fn cli_input_ended(&self) -> bool {
        self.cli_input_ended.get()
    }

    /// The fake channel built for provider `id`, if any.
    pub fn fake(&self, id: &str) -> Option<fake::FakeProvider> {
        self.fakes.borrow().get(id).cloned()
    }
}
