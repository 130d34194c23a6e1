//! Running the gateway: start providers, the Cloud delivery subscription and its dispatcher, the
//! CLI reader and the HTTP listener; tell systemd; and on SIGTERM/SIGINT drain: `/ready` turns
//! 503 and webhook intake closes at once, the delivery subscription closes (no new claims),
//! queued and in-flight sends get `shutdownDrainMs` to finish and be acked, session cursors are
//! flushed, providers stop, and the process exits 0. A second signal exits at once. A delivery
//! not sent by the deadline is never acked: its lease expires and Cloud serves it again.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cloud::client::CloudClient;
use crate::cloud::streams::{follow_deliveries, DeliveryStreamOptions};
use crate::config::{Config, ProviderKind};
use crate::net::https::build_client;
use crate::notify::Notifier;
use crate::providers::{Provider, ProviderFactory};
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
    TcpListener::bind((bare, port))
        .await
        .map_err(|source| DaemonError::Bind { address: format!("{host}:{port}"), source })
}

/// A started gateway.
pub struct Running {
    pub gateway: Rc<Gateway>,
    pub address: SocketAddr,
    /// Ends when the delivery stream closed and every queued delivery was handled.
    pub dispatcher: JoinHandle<()>,
    /// Ends at the end of the CLI's input, if a CLI provider reads stdin.
    pub cli_reader: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// Starts everything but does not wait. Must run inside a `LocalSet`.
pub async fn start(config: Config, factory: ProviderFactory, read_stdin: bool) -> Result<Running, DaemonError> {
    // The CA file was checked with the configuration; a failure here is a TLS setup failure.
    let http = build_client(config.cloud.ca_file.as_deref()).map_err(DaemonError::Https)?;
    let client = Rc::new(CloudClient::new(
        http,
        &config.cloud.base_url,
        config.cloud.service_token.clone(),
        Duration::from_millis(config.cloud.request_timeout_ms),
    ));
    let gateway = Gateway::with_client(config, Rc::clone(&client), factory);
    for cidr in &gateway.config.server.trusted_proxy_cidrs {
        if crate::http::client_ip::Cidr::parse(cidr).is_none() {
            tracing::warn!(cidr = %cidr, "OPEN_COWORK_GATEWAY_TRUSTED_PROXY_CIDRS entry is not a CIDR and will never match");
        }
    }
    // Upstream order: providers first, then the delivery subscription, then the listener.
    gateway.start();
    let (deliveries_tx, deliveries_rx) = mpsc::channel(gateway.config.delivery.max_queue_depth.max(16));
    let follower = {
        let (gateway, client) = (Rc::clone(&gateway), Rc::clone(&client));
        tokio::task::spawn_local(async move {
            follow_deliveries(&gateway, &client, DeliveryStreamOptions::default(), deliveries_tx).await
        })
    };
    let dispatcher = tokio::task::spawn_local(crate::runtime::deliveries::run_dispatcher(
        Rc::clone(&gateway),
        client,
        deliveries_rx,
    ));
    let cli_reader = read_stdin.then(|| spawn_cli_reader(&gateway)).flatten();
    let resume = tokio::task::spawn_local(crate::runtime::sessions::resume_saved(Rc::clone(&gateway)));
    let mut background = Vec::new();
    #[cfg(feature = "telegram")]
    for registration in gateway.providers.borrow().registrations() {
        if let Some(Provider::Telegram(bot)) = registration.provider.as_deref() {
            background.push(tokio::task::spawn_local(crate::providers::telegram::poll::run(
                Rc::clone(&gateway),
                bot.clone(),
            )));
        }
    }
    let sweeper = {
        let gateway = Rc::clone(&gateway);
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                crate::runtime::sessions::sweep_idle(&gateway);
            }
        })
    };
    let listener = bind(&gateway.config.server.host, gateway.config.server.port).await?;
    let address = listener
        .local_addr()
        .map_err(|source| DaemonError::Bind { address: gateway.config.server.host.clone(), source })?;
    let server = tokio::task::spawn_local(crate::http::server::serve_gateway(listener, Rc::clone(&gateway)));
    tracing::info!(%address, instance = %gateway.config.instance_id, providers = gateway.providers.borrow().registrations().len(), "listening");
    Ok(Running {
        gateway,
        address,
        dispatcher,
        cli_reader,
        background: {
            background.extend([follower, sweeper, server, resume]);
            background
        },
    })
}

/// Reads the CLI provider's input lines and runs each through the inbound pipeline, in order.
fn spawn_cli_reader(gateway: &Rc<Gateway>) -> Option<JoinHandle<()>> {
    let (id, provider) = gateway
        .providers
        .borrow()
        .registrations()
        .iter()
        .find(|r| r.config.kind == ProviderKind::Cli)
        .and_then(|r| Some((r.config.id.clone(), r.provider.clone()?)))?;
    let gateway = Rc::clone(gateway);
    Some(tokio::task::spawn_local(async move {
        let mut input = tokio::io::BufReader::new(tokio::io::stdin());
        let mut drain = gateway.shutdown.signal();
        loop {
            let line = tokio::select! {
                line = read_line_bounded(&mut input, MAX_CLI_LINE) => line,
                _ = drain.started() => return,
            };
            let line = match line {
                Ok(Some(InputLine::Text(line))) => line,
                Ok(Some(InputLine::TooLong)) => {
                    if let Provider::Cli(cli) = provider.as_ref() {
                        cli.report_error(&format!(
                            "CLI input line is longer than {MAX_CLI_LINE} bytes and was skipped."
                        ));
                    }
                    continue;
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "reading the CLI input failed");
                    return;
                }
            };
            let report = |error: &str| {
                if let Provider::Cli(cli) = provider.as_ref() {
                    cli.report_error(error);
                }
            };
            match crate::providers::cli::parse_line(&id, &line, crate::time::now_ms()) {
                None => {}
                Some(Err(error)) => report(&error),
                Some(Ok(message)) => {
                    let _work = gateway.shutdown.work_guard();
                    if let Err(error) = crate::runtime::inbound::handle_message(&gateway, &id, message).await {
                        report(&error.to_string());
                    }
                }
            }
        }
    }))
}

/// Longest CLI input line accepted; a longer one is reported and skipped.
const MAX_CLI_LINE: usize = 1024 * 1024;

/// One line of CLI input.
#[derive(Debug, PartialEq, Eq)]
enum InputLine {
    Text(String),
    /// Longer than the bound; its bytes were discarded.
    TooLong,
}

/// Reads one line of at most `max` bytes; `Ok(None)` at end of input.
async fn read_line_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> io::Result<Option<InputLine>> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buffer = reader.fill_buf().await?;
        let at_end = buffer.is_empty();
        let (taken, ended) = match buffer.iter().position(|b| *b == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), at_end),
        };
        if line.len() + taken <= max {
            line.extend_from_slice(&buffer[..taken]);
        } else {
            too_long = true;
        }
        reader.consume(taken);
        if ended {
            if at_end && line.is_empty() && !too_long {
                return Ok(None);
            }
            return Ok(Some(if too_long {
                InputLine::TooLong
            } else {
                InputLine::Text(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_owned())
            }));
        }
    }
}

impl Running {
    /// The drain of §3.9 with this project's decisions; returns whether everything finished.
    pub async fn drain(&self, budget: Duration) -> bool {
        let gateway = &self.gateway;
        tracing::info!(in_flight = gateway.shutdown.in_flight(), budget_ms = budget.as_millis() as u64, "draining");
        gateway.shutdown.begin_drain();
        let finished = gateway.shutdown.wait_for_work(budget).await;
        if !finished {
            tracing::warn!(
                in_flight = gateway.shutdown.in_flight(),
                "drain deadline passed; unfinished deliveries are left to their Cloud leases"
            );
        }
        finished
    }

    /// Stops providers and background tasks.
    pub fn stop(self) {
        self.gateway.stop();
        self.dispatcher.abort();
        if let Some(reader) = self.cli_reader {
            reader.abort();
        }
        for task in self.background {
            task.abort();
        }
    }
}

/// Runs the gateway until a stop signal. Must run inside a `LocalSet`.
pub async fn run(config: Config, notifier: Notifier) -> Result<Exit, DaemonError> {
    let mut signals = Signals::register().map_err(DaemonError::Signals)?;
    let drain_budget = Duration::from_millis(config.timeouts.shutdown_drain_ms);
    let read_stdin = config.enabled_providers().any(|p| p.kind == ProviderKind::Cli);
    let running = start(config, ProviderFactory::default(), read_stdin).await?;
    println!(
        "Open Cowork gateway listening on http://{}:{}",
        running.gateway.config.server.host,
        running.address.port()
    );
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
            tracing::warn!(in_flight = running.gateway.shutdown.in_flight(), "second stop signal; exiting without finishing the drain");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn input_lines_are_bounded() {
        let mut input = tokio::io::BufReader::with_capacity(4, &b"hello\r\nthis line is too long\nok\nlast"[..]);
        let mut lines = Vec::new();
        while let Some(line) = read_line_bounded(&mut input, 10).await.unwrap() {
            lines.push(line);
        }
        assert_eq!(
            lines,
            [
                InputLine::Text("hello".into()),
                InputLine::TooLong,
                InputLine::Text("ok".into()),
                InputLine::Text("last".into())
            ]
        );
    }
}
