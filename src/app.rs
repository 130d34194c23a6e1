//! The wiring: builds the configuration's pieces (Cloud client, metrics, channel registry,
//! ingress queue, session streams, delivery dispatcher, HTTP listener), hands each the narrow
//! handles it needs, owns their tasks, and runs the shutdown order. On SIGTERM/SIGINT: `/ready`
//! turns 503 and webhook intake closes at once, the delivery subscription closes (no new claims),
//! in-flight inbound messages and sends get `shutdownDrainMs` to finish and be acked, deliveries
//! claimed but not started are handed back to Cloud, session cursors and state files are flushed,
//! channels stop, and the process exits 0. A second signal exits at once. A send still running at
//! the deadline is never acked: its lease expires and Cloud serves it again.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::channel::{ChannelRegistry, Ingress};
use crate::cloud::client::CloudClient;
use crate::cloud::streams::{follow_deliveries, CloudStatusReporter, DeliveryStreamOptions, StreamContext};
use crate::cloud::DeliveryOperations;
use crate::config::Config;
use crate::http::state::HttpState;
use crate::logging::WarnLimiter;
use crate::metrics::Metrics;
use crate::net::https::{build_client, build_stream_client, HttpsClient};
use crate::notify::Notifier;
use crate::providers::{BuildContext, ProviderFactory};
use crate::runtime::deliveries::{run_dispatcher, sendable_bindings, Dispatcher};
use crate::runtime::inbound::Inbound;
use crate::runtime::journal::InboundJournal;
use crate::runtime::lanes::run_ingress;
use crate::runtime::sessions::{resume_saved, SessionStreams, Sessions};
use crate::runtime::state::StateFile;
use crate::runtime::Readiness;
use crate::shutdown::Shutdown;
use crate::signals::{Signals, StopRequest};

/// Inbound messages waiting for the pipeline across all channels; a full queue answers
/// webhooks 503 and pauses pollers.
const INGRESS_DEPTH: usize = 256;

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Drained (or ran into the drain deadline) and stopped: exit 0.
    Drained,
    /// A second signal cut the drain short: exit 1.
    Forced,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The listener could not be bound: exit 69 (EX_UNAVAILABLE).
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("{0}")]
    Https(crate::net::https::HttpsError),
}

/// Binds `host:port`; a bracketed IPv6 host is accepted as written in URLs.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, AppError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    TcpListener::bind((bare, port)).await.map_err(|source| AppError::Bind { address: format!("{host}:{port}"), source })
}

/// A started gateway, with the handles an embedding (the demo, the tests) may read.
pub struct Running {
    pub address: SocketAddr,
    pub config: Rc<Config>,
    pub metrics: Rc<Metrics>,
    pub readiness: Readiness,
    pub registry: Rc<ChannelRegistry>,
    pub sessions: Sessions,
    pub shutdown: Shutdown,
    /// The factory that built the channels (tests reach the fake channel through it).
    pub factory: Rc<ProviderFactory>,
    /// Ends when the delivery stream closed and every queued delivery was handled.
    pub dispatcher: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Starts everything but does not wait. Must run inside a `LocalSet`.
pub async fn start(config: Config, mut factory: ProviderFactory) -> Result<Running, AppError> {
    let (http, client) = cloud_client(&config)?;
    let config = Rc::new(config);
    warn_unmatchable_proxy_cidrs(&config);
    let metrics = Rc::new(Metrics::new(&config));
    let shutdown = Shutdown::new();
    let registry = Rc::new(ChannelRegistry::new(&config, Rc::clone(&metrics)));
    let (status, status_watch) = CloudStatusReporter::new("The Cloud delivery subscription is not connected yet.");
    let readiness = Readiness::new(shutdown.clone(), Rc::clone(&registry), Some(status_watch));
    let stream_context = StreamContext {
        metrics: Rc::clone(&metrics),
        drain: shutdown.signal(),
        status,
        warnings: Rc::new(WarnLimiter::new(Duration::from_secs(60))),
    };
    let sessions = session_streams(&config, &registry, &client, &shutdown, &stream_context);
    let (ingress, queue) = Ingress::bounded(INGRESS_DEPTH);

    // Upstream order: channels first, then the delivery subscription, then the listener.
    factory.context = BuildContext {
        http: Some(http),
        state_dir: config.state_dir.clone(),
        ca_file: config.cloud.ca_file.clone(),
        webhook_delivery_timeout: Duration::from_millis(config.timeouts.webhook_delivery_ms),
    };
    let factory = Rc::new(factory);
    registry.start_all(&|provider| factory.build(provider), &ingress, &shutdown);
    readiness.set_started(true);
    let inbound = inbound_pipeline(&config, &metrics, &registry, &client, &sessions, &stream_context);
    // What a killed process answered but never prompted goes first, before new messages.
    let replay = {
        let (inbound, ingress) = (inbound.clone(), ingress.clone());
        tokio::task::spawn_local(async move { inbound.replay_journal(&ingress).await })
    };
    let consumer = tokio::task::spawn_local(run_ingress(inbound, queue, shutdown.clone()));
    let (dispatcher, [binding_watch, follower]) =
        start_deliveries(&config, &metrics, &registry, &client, &shutdown, &stream_context);
    let resume = tokio::task::spawn_local(resume_saved(sessions.clone()));
    let sweeper = sweep_idle_sessions(sessions.clone());
    let listener = bind(&config.server.host, config.server.port).await?;
    let address =
        listener.local_addr().map_err(|source| AppError::Bind { address: config.server.host.clone(), source })?;
    let http_state = HttpState::new(
        Rc::clone(&config),
        Rc::clone(&metrics),
        readiness.clone(),
        Rc::clone(&registry),
        ingress,
        Some(client as Rc<dyn DeliveryOperations>),
        shutdown.clone(),
    );
    let server = tokio::task::spawn_local(crate::http::server::serve_gateway(listener, Rc::new(http_state)));
    tracing::info!(%address, instance = %config.instance_id, providers = registry.registrations().len(), "listening");
    Ok(Running {
        address,
        config,
        metrics,
        readiness,
        registry,
        sessions,
        shutdown,
        factory,
        dispatcher,
        background: vec![consumer, binding_watch, follower, sweeper, server, resume, replay],
    })
}

/// The HTTPS client (shared with the channels) and the Cloud client on it. The CA file was
/// checked with the configuration; a failure here is a TLS setup failure.
fn cloud_client(config: &Config) -> Result<(HttpsClient, Rc<CloudClient>), AppError> {
    let http = build_client(config.cloud.ca_file.as_deref()).map_err(AppError::Https)?;
    let streams = build_stream_client(config.cloud.ca_file.as_deref()).map_err(AppError::Https)?;
    let client = CloudClient::new(
        http.clone(),
        &config.cloud.base_url,
        config.cloud.service_token.clone(),
        Duration::from_millis(config.cloud.request_timeout_ms),
    )
    .with_stream_client(streams);
    Ok((http, Rc::new(client)))
}

fn warn_unmatchable_proxy_cidrs(config: &Config) {
    for cidr in &config.server.trusted_proxy_cidrs {
        if crate::http::client_ip::Cidr::parse(cidr).is_none() {
            tracing::warn!(cidr = %cidr, "OPEN_COWORK_GATEWAY_TRUSTED_PROXY_CIDRS entry is not a CIDR and will never match");
        }
    }
}

/// The session streams, budgeted and remembered in the state directory (when there is one).
fn session_streams(
    config: &Config,
    registry: &Rc<ChannelRegistry>,
    client: &Rc<CloudClient>,
    shutdown: &Shutdown,
    context: &StreamContext,
) -> Sessions {
    let streams = SessionStreams::shared(config.state_dir.as_deref().map(StateFile::in_directory));
    streams
        .borrow_mut()
        .configure(config.max_session_streams, Duration::from_millis(config.timeouts.session_stream_idle_close_ms));
    Sessions::new(streams, Rc::clone(registry), Rc::clone(client), shutdown.clone(), context.clone())
}

fn inbound_pipeline(
    config: &Config,
    metrics: &Rc<Metrics>,
    registry: &Rc<ChannelRegistry>,
    client: &Rc<CloudClient>,
    sessions: &Sessions,
    context: &StreamContext,
) -> Inbound {
    Inbound {
        metrics: Rc::clone(metrics),
        registry: Rc::clone(registry),
        client: Rc::clone(client),
        sessions: sessions.clone(),
        claimed_by: config.claimed_by(),
        reuse: Rc::default(),
        journal: config.state_dir.as_deref().map(|dir| Rc::new(InboundJournal::in_state_directory(dir))),
        claims_in_flight: Rc::default(),
        warnings: Rc::clone(&context.warnings),
    }
}

/// The delivery subscription (following the bindings that can send) and its dispatcher. Returns
/// the dispatcher's task, then the bindings watch's and the subscription's.
fn start_deliveries(
    config: &Config,
    metrics: &Rc<Metrics>,
    registry: &Rc<ChannelRegistry>,
    client: &Rc<CloudClient>,
    shutdown: &Shutdown,
    context: &StreamContext,
) -> (JoinHandle<()>, [JoinHandle<()>; 2]) {
    let (deliveries_tx, deliveries_rx) = mpsc::channel(config.delivery.max_queue_depth.max(16));
    let (bindings, binding_watch) = sendable_bindings(Rc::clone(registry));
    let options = DeliveryStreamOptions::new(config.claimed_by());
    let (cloud_clock, requested_lease) = (options.clock.clone(), Duration::from_millis(options.ttl_ms));
    let follower = {
        let (context, client) = (context.clone(), Rc::clone(client));
        tokio::task::spawn_local(
            async move { follow_deliveries(&context, &client, options, bindings, deliveries_tx).await },
        )
    };
    let dispatcher = Dispatcher {
        metrics: Rc::clone(metrics),
        registry: Rc::clone(registry),
        shutdown: shutdown.clone(),
        max_concurrency: config.delivery.max_concurrency,
        max_queue_depth: config.delivery.max_queue_depth,
        clock: cloud_clock,
        requested_lease,
    };
    let dispatcher = tokio::task::spawn_local(run_dispatcher(dispatcher, Rc::clone(client), deliveries_rx));
    (dispatcher, [binding_watch, follower])
}

/// Closes idle session streams once a minute, for as long as the gateway runs.
fn sweep_idle_sessions(sessions: Sessions) -> JoinHandle<()> {
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            sessions.sweep_idle();
        }
    })
}

impl Running {
    /// The drain (see the module doc): `/ready` turns 503 and intake closes, then the work in
    /// flight gets `budget` to finish. Returns whether everything finished.
    pub async fn drain(&self, budget: Duration) -> bool {
        tracing::info!(in_flight = self.shutdown.in_flight(), budget_ms = budget.as_millis() as u64, "draining");
        self.shutdown.begin_drain();
        let finished = self.shutdown.wait_for_work(budget).await;
        if !finished {
            tracing::warn!(
                in_flight = self.shutdown.in_flight(),
                "drain deadline passed; unfinished deliveries are left to their Cloud leases"
            );
        }
        finished
    }

    /// Closes session streams, stops channels in reverse order and the background tasks.
    pub fn stop(self) {
        self.sessions.close_all();
        self.registry.stop_all();
        self.readiness.set_started(false);
        self.dispatcher.abort();
        for task in self.background {
            task.abort();
        }
    }
}

/// Runs the gateway until a stop signal. Must run inside a `LocalSet`.
pub async fn run(config: Config, notifier: Notifier) -> Result<Exit, AppError> {
    let mut signals = Signals::register().map_err(AppError::Signals)?;
    let drain_budget = Duration::from_millis(config.timeouts.shutdown_drain_ms);
    let running = start(config, ProviderFactory::default()).await?;
    crate::util::console::stdout(format_args!(
        "Open Cowork gateway listening on http://{}:{}\n",
        running.config.server.host,
        running.address.port()
    ));
    notify(&notifier, "READY=1");
    let watchdog = Notifier::watchdog_interval().map(|interval| {
        let notifier = notifier.clone();
        tokio::task::spawn_local(async move {
            // This task runs only while the single-threaded loop makes progress, which is what the
            // watchdog should certify.
            loop {
                tokio::time::sleep(interval).await;
                notify(&notifier, "WATCHDOG=1");
            }
        })
    });

    let first = signals.next().await;
    debug_assert_eq!(first, StopRequest::Drain);
    notify(&notifier, "STOPPING=1");
    let exit = tokio::select! {
        _ = running.drain(drain_budget) => Exit::Drained,
        _ = signals.next() => {
            tracing::warn!(in_flight = running.shutdown.in_flight(), "second stop signal; exiting without finishing the drain");
            Exit::Forced
        }
    };
    running.stop();
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!(?exit, "stopped");
    Ok(exit)
}

fn notify(notifier: &Notifier, state: &str) {
    if let Err(error) = notifier.notify(state) {
        tracing::warn!(%error, state, "sd_notify failed");
    }
}
