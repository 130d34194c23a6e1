//! `run`: start providers, bind the listener, tell systemd, serve, and on SIGTERM/SIGINT drain:
//! `/ready` turns 503 and webhook intake closes at once, in-flight work gets
//! `shutdownDrainMs` to finish, providers stop, and the process exits 0. A second signal exits
//! at once.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::cloud::client::CloudClient;
use crate::cloud::DeliveryOperations;
use crate::config::Config;
use crate::net::https::build_client;
use crate::notify::Notifier;
use crate::runtime::Gateway;
use crate::signals::{Signals, StopRequest};

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Drained (or ran into the drain deadline) and stopped: exit 0.
    Drained,
    /// A second signal cut the drain short: exit 1.
    Forced,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The listener could not be bound: exit 69 (EX_UNAVAILABLE).
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: io::Error },
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("{0}")]
    Https(crate::net::https::HttpsError),
}

/// Binds `host:port`; a bracketed IPv6 host is accepted as written in URLs.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, DaemonError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    TcpListener::bind((bare, port)).await.map_err(|source| DaemonError::Bind { address: format!("{host}:{port}"), source })
}

/// Runs the gateway until a stop signal. Must run inside a `LocalSet`.
pub async fn run(config: Config, notifier: Notifier) -> Result<Exit, DaemonError> {
    let mut signals = Signals::register().map_err(DaemonError::Signals)?;
    // The CA file was checked with the configuration; a failure here is a TLS setup failure.
    let http = build_client(config.cloud.ca_file.as_deref()).map_err(DaemonError::Https)?;
    let client = Rc::new(CloudClient::new(
        http,
        &config.cloud.base_url,
        config.cloud.service_token.clone(),
        Duration::from_millis(config.cloud.request_timeout_ms),
    ));
    let gateway = Gateway::new(config, Some(client as Rc<dyn DeliveryOperations>));
    // Claiming deliveries without a dispatcher to send them would only burn their attempts, so
    // the subscription starts with the delivery dispatcher.
    gateway.readiness.borrow_mut().set(
        crate::runtime::DELIVERY_SUBSCRIPTION,
        false,
        Some("Delivery dispatch is not part of this build, so the gateway does not subscribe to deliveries.".into()),
    );
    for cidr in &gateway.config.server.trusted_proxy_cidrs {
        if crate::http::client_ip::Cidr::parse(cidr).is_none() {
            tracing::warn!(cidr = %cidr, "OPEN_COWORK_GATEWAY_TRUSTED_PROXY_CIDRS entry is not a CIDR and will never match");
        }
    }
    gateway.start();

    let listener = bind(&gateway.config.server.host, gateway.config.server.port).await?;
    let bound = listener.local_addr().map_err(|source| DaemonError::Bind { address: gateway.config.server.host.clone(), source })?;
    let url = format!("http://{}:{}", gateway.config.server.host, bound.port());
    tracing::info!(address = %bound, instance = %gateway.config.instance_id, providers = gateway.providers.borrow().registrations().len(), "listening");
    println!("Open Cowork gateway listening on {url}");
    notify(&notifier, "READY=1");

    let server = tokio::task::spawn_local(crate::http::server::serve_gateway(listener, Rc::clone(&gateway)));
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
    let drain_budget = Duration::from_millis(gateway.config.timeouts.shutdown_drain_ms);
    tracing::info!(in_flight = gateway.shutdown.in_flight(), budget_ms = drain_budget.as_millis() as u64, "stop requested; draining");
    gateway.shutdown.begin_drain();
    notify(&notifier, "STOPPING=1");

    let exit = tokio::select! {
        finished = gateway.shutdown.wait_for_work(drain_budget) => {
            if !finished {
                tracing::warn!(in_flight = gateway.shutdown.in_flight(), "drain deadline passed; unfinished work is left to Cloud leases");
            }
            Exit::Drained
        }
        _ = signals.next() => {
            tracing::warn!(in_flight = gateway.shutdown.in_flight(), "second stop signal; exiting without finishing the drain");
            Exit::Forced
        }
    };
    gateway.stop();
    server.abort();
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
