//! The `open-cowork-gateway` binary: parses the command line, loads the configuration, builds the
//! current_thread runtime and maps every outcome to an exit code:
//! 0 clean stop, 64 usage error, 78 configuration error, 69 a listener cannot bind, 1 anything
//! else (systemd's `RestartPreventExitStatus=78` keeps a broken config from crash-looping).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use open_cowork_gateway::app::{self, AppError, Exit};
use open_cowork_gateway::cli::{self, Command};
use open_cowork_gateway::config::{self, Env, Overrides};
use open_cowork_gateway::notify::Notifier;
use open_cowork_gateway::providers::KINDS;
use open_cowork_gateway::{errln, logging, out, outln, TARGET, VERSION};

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    // The binary knows its table of kinds: every line it writes redacts the kinds' token prefixes
    // from the start, before any configuration is resolved (resolving hands the same table again).
    config::redact::learn_kind_prefixes(KINDS);
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(error) => {
            errln!("open-cowork-gateway: {error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match cli.command {
        Command::Help => {
            out!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            outln!("open-cowork-gateway {VERSION} ({TARGET})");
            return ExitCode::SUCCESS;
        }
        Command::DevCloud { host, port, pending_identities, max_sse_per_org } => {
            return dev_cloud(&host, port, pending_identities, max_sse_per_org)
        }
        Command::Demo => return demo(cli.log_level),
        Command::Setup { args } => return setup(&args),
        Command::Probe(request) => return probe(&request),
        Command::Run | Command::CheckConfig { .. } | Command::Doctor => {}
    }
    let doctor = cli.command == Command::Doctor;

    let mut env = Env::from_process();
    let env_file = cli.env_file.clone().or_else(|| env.string("OPEN_COWORK_GATEWAY_ENV_FILE").map(PathBuf::from));
    if let Some(path) = env_file {
        if let Err(error) = env.merge_env_file(&path, cli.allow_insecure_env_file) {
            return configuration_error(doctor, &error);
        }
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let overrides = Overrides { config_file: cli.config_file.clone(), log_level: cli.log_level };
    let config = match config::load(&env, &cwd, &overrides, KINDS) {
        Ok(config) => config,
        Err(error) => return configuration_error(doctor, &error),
    };
    if doctor {
        return run_doctor(&config);
    }

    if let Command::CheckConfig { print } = cli.command {
        return check_config(&config, print);
    }

    let filter = logging::filter(cli.log_level, env.raw("RUST_LOG"), config.log_level);
    if let Some(note) = logging::init(cli.log_format, filter) {
        tracing::warn!("{note}");
    }

    let Some(runtime) = current_thread_runtime() else { return ExitCode::FAILURE };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, app::run(config, Notifier::from_env())) {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        Ok(Exit::Forced) => ExitCode::FAILURE,
        Err(error @ AppError::Bind { .. }) => {
            errln!("open-cowork-gateway: {error}");
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(error) => {
            errln!("open-cowork-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config` once the configuration loaded: the resolved configuration (secrets redacted)
/// with `--print`, else one line summing it up.
#[inline(never)]
fn check_config(config: &config::Config, print: bool) -> ExitCode {
    if print {
        match serde_json::to_string_pretty(config) {
            Ok(text) => outln!("{text}"),
            Err(error) => {
                errln!("open-cowork-gateway: cannot print the configuration: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let providers: Vec<&str> = config.enabled_providers().map(|p| p.id.as_str()).collect();
        outln!(
            "Configuration OK: {} enabled provider(s) [{}], listening on {}:{}, Cloud {}.",
            providers.len(),
            providers.join(", "),
            config.server.host,
            config.server.port,
            config.cloud.base_url
        );
    }
    ExitCode::SUCCESS
}

/// `doctor` reports a bad configuration as its first ✗ line (exit 1); the others exit 78.
fn configuration_error(doctor: bool, error: &dyn std::fmt::Display) -> ExitCode {
    if doctor {
        outln!("✗ configuration: {error}");
        return ExitCode::FAILURE;
    }
    errln!("open-cowork-gateway: configuration error: {error}");
    ExitCode::from(EX_CONFIG)
}

/// `doctor`: every check, one line each; 0 when all pass, 1 otherwise.
#[inline(never)]
fn run_doctor(config: &config::Config) -> ExitCode {
    let Some(runtime) = current_thread_runtime() else { return ExitCode::FAILURE };
    let mut factory = open_cowork_gateway::providers::ProviderFactory::default();
    let passed = tokio::task::LocalSet::new().block_on(&runtime, async {
        open_cowork_gateway::doctor::run(config, &mut factory, &mut std::io::stdout()).await
    });
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn current_thread_runtime() -> Option<tokio::runtime::Runtime> {
    // The blocking pool runs name lookups, journal and state writes and a non-pollable stdin:
    // a few threads cover them, and a hung resolver or disk cannot grow it to tokio's 512
    // threads (each with its stack and, under glibc, its own malloc arena).
    match tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(4).build() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            errln!("open-cowork-gateway: cannot start the runtime: {error}");
            None
        }
    }
}

/// `dev-cloud`: the in-memory Cloud on loopback, seeded, until SIGTERM/SIGINT.
#[cfg(feature = "devcloud")]
// Out of line: inlined, every subcommand would share main's one large body and stack frame.
#[inline(never)]
fn dev_cloud(host: &str, port: u16, pending_identities: bool, max_sse_per_org: usize) -> ExitCode {
    use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions};
    if !open_cowork_gateway::config::urls::is_loopback_host(host) {
        errln!("open-cowork-gateway: dev-cloud serves well-known dev tokens and listens on loopback only (got --host {host}).");
        return ExitCode::from(EX_USAGE);
    }
    let _ = logging::init(
        logging::LogFormat::Stderr,
        logging::filter(None, std::env::var("RUST_LOG").ok().as_deref(), config::LogLevel::Info),
    );
    let Some(runtime) = current_thread_runtime() else { return ExitCode::FAILURE };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut signals = match open_cowork_gateway::signals::Signals::register() {
            Ok(signals) => signals,
            Err(error) => {
                errln!("open-cowork-gateway: cannot install signal handlers: {error}");
                return ExitCode::FAILURE;
            }
        };
        let cloud = DevCloud::new(DevCloudOptions {
            auto_activate_identities: !pending_identities,
            max_sse_per_org,
            ..DevCloudOptions::default()
        });
        let seeded = cloud.seed();
        let address = match cloud.start(host, port).await {
            Ok(address) => address,
            Err(error) => {
                errln!("open-cowork-gateway: dev-cloud cannot listen on {host}:{port}: {error}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        outln!("OPEN_COWORK_CLOUD_BASE_URL=http://{address}");
        outln!("OPEN_COWORK_GATEWAY_SERVICE_TOKEN={}", seeded.gateway_token);
        outln!("OPEN_COWORK_GATEWAY_FAKE_CHANNEL_BINDING_ID=fake-binding");
        for binding in seeded.bindings.iter().filter(|b| b.binding_id != "fake-binding") {
            outln!("{}={}", binding.env_var, binding.binding_id);
        }
        outln!("OPEN_COWORK_DEVCLOUD_ADMIN_TOKEN={}", seeded.admin_token);
        tracing::info!(%address, "dev Cloud ready");
        signals.next().await;
        ExitCode::SUCCESS
    })
}

#[cfg(not(feature = "devcloud"))]
fn dev_cloud(_: &str, _: u16, _: bool, _: usize) -> ExitCode {
    errln!("open-cowork-gateway: this binary was built without the devcloud feature.");
    ExitCode::from(EX_USAGE)
}

/// `demo`: the dev Cloud and the gateway with a text-mode CLI provider in one process. Lines on
/// stdin go to the echo agent, replies come out on stdout; at the end of input it waits (at most
/// 15 s) for replies still in flight, then exits 0.
#[cfg(feature = "devcloud")]
// Out of line: inlined, every subcommand would share main's one large body and stack frame.
#[inline(never)]
fn demo(log_level: Option<config::LogLevel>) -> ExitCode {
    use std::time::Duration;

    use open_cowork_gateway::devcloud::{DevCloud, DevCloudOptions};
    use open_cowork_gateway::providers::cli::CliOutputMode;
    use open_cowork_gateway::providers::ProviderFactory;

    let _ = logging::init(logging::LogFormat::Stderr, logging::filter(log_level, None, config::LogLevel::Warn));
    let Some(runtime) = current_thread_runtime() else { return ExitCode::FAILURE };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let cloud = DevCloud::new(DevCloudOptions::default());
        let seeded = cloud.seed();
        let address = match cloud.start("127.0.0.1", 0).await {
            Ok(address) => address,
            Err(error) => {
                errln!("open-cowork-gateway: the demo's dev Cloud cannot listen on loopback: {error}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        };
        let base_url = format!("http://{address}");
        let env = Env::from_pairs([
            ("OPEN_COWORK_CLOUD_BASE_URL", base_url.as_str()),
            ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", seeded.gateway_token.as_str()),
            ("OPEN_COWORK_GATEWAY_CLI_ENABLED", "true"),
            ("OPEN_COWORK_GATEWAY_ALLOW_LOOPBACK_OPERATOR_BYPASS", "true"),
            ("OPEN_COWORK_GATEWAY_PORT", "0"),
            ("OPEN_COWORK_GATEWAY_INSTANCE_ID", "demo"),
        ]);
        let config = match config::resolve(&serde_json::json!({}), &env, KINDS) {
            Ok(config) => config,
            Err(error) => {
                errln!("open-cowork-gateway: demo configuration error: {error}");
                return ExitCode::from(EX_CONFIG);
            }
        };
        let mut factory = ProviderFactory::default();
        factory.cli_output = Box::new(|| (CliOutputMode::Text, Box::new(std::io::stdout())));
        let running = match app::start(config, factory).await {
            Ok(running) => running,
            Err(error) => {
                errln!("open-cowork-gateway: {error}");
                return ExitCode::FAILURE;
            }
        };
        errln!("Open Cowork gateway demo: type a message for the echo agent. \"/ask\" asks you a question, \"/approve-me\" asks for approval; end with Ctrl-D.");
        while !running.factory.cli_input_ended() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // End of input: wait, bounded, until the agent is done and every reply was rendered.
        let settled = || {
            cloud.agent_idle()
                && running.sessions.streams().borrow().cursors().iter().all(|(binding, cursor)| cloud.latest_sequence(binding).is_none_or(|latest| *cursor >= latest))
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !settled() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        running.drain(Duration::from_secs(2)).await;
        running.stop();
        ExitCode::SUCCESS
    })
}

#[cfg(not(feature = "devcloud"))]
fn demo(_: Option<config::LogLevel>) -> ExitCode {
    errln!("open-cowork-gateway: this binary was built without the devcloud feature, which the demo needs.");
    ExitCode::from(EX_USAGE)
}

/// `probe`: one HTTP/1.1 GET over loopback with a deadline; 0 on a 2xx answer, 1 on anything else
/// (refused, timed out, 503 not ready), 64 on a URL it will not probe. Plain std I/O, no runtime:
/// it runs every few seconds in a container health check, so it must cost next to nothing.
// Out of line: inlined, every subcommand would share main's one large body and stack frame.
#[inline(never)]
fn probe(request: &cli::Probe) -> ExitCode {
    let url = match &request.url {
        Some(url) => url.clone(),
        None => configured_probe_base(),
    };
    let (authority, host, path) = match split_probe_url(&url) {
        Ok(parts) => parts,
        Err(message) => {
            errln!("open-cowork-gateway probe: {message}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let path = match path {
        "" | "/" if request.ready => "/ready",
        "" | "/" => "/health",
        path => path,
    };
    let timeout = std::time::Duration::from_millis(request.timeout_ms);
    match probe_get(&authority, host, path, timeout) {
        Ok(status) if (200..300).contains(&status) => {
            outln!("open-cowork-gateway probe: GET http://{authority}{path} -> {status}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            errln!("open-cowork-gateway probe: GET http://{authority}{path} -> {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            errln!("open-cowork-gateway probe: GET http://{authority}{path} failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The listener the gateway's environment configures (`OPEN_COWORK_GATEWAY_HOST`/`_PORT`, the
/// same defaults as `run`). A wildcard bind is answered on loopback too, so probe loopback.
fn configured_probe_base() -> String {
    let host = std::env::var("OPEN_COWORK_GATEWAY_HOST").unwrap_or_default();
    let host = match host.trim() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" | "::1" => "[::1]".to_owned(),
        other => other.to_owned(),
    };
    let port = std::env::var("OPEN_COWORK_GATEWAY_PORT").ok().and_then(|p| p.trim().parse::<u16>().ok());
    format!("http://{host}:{}", port.filter(|p| *p != 0).unwrap_or(8790))
}

/// `http://host[:port][/path]` → (`host:port`, host, path). Loopback only: the probe is a local
/// health check, not an HTTP client, and plain HTTP off the machine would be the wrong tool.
fn split_probe_url(url: &str) -> Result<(String, &str, &str), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("--url must start with http:// (got {url:?})."))?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| format!("--url has a bad port (got {url:?})."))?)
        }
        _ => (authority, 80),
    };
    if !open_cowork_gateway::config::urls::is_loopback_host(&host.to_ascii_lowercase()) {
        return Err(format!("--url must name a loopback host such as 127.0.0.1 (got {host:?})."));
    }
    Ok((format!("{host}:{port}"), host, path))
}

/// Connects, sends the request and reads the status line, each step bounded by what is left of
/// one deadline, so a gateway that accepts but never answers still fails within the timeout.
fn probe_get(authority: &str, host: &str, path: &str, timeout: std::time::Duration) -> std::io::Result<u16> {
    use std::io::{Error, ErrorKind, Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Instant;

    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Error::new(ErrorKind::TimedOut, "timed out"))
    };
    let addresses = authority.to_socket_addrs()?;
    let mut last_error = Error::new(ErrorKind::NotFound, "the host resolved to no address");
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, left()?) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(error) => last_error = error,
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    stream.set_write_timeout(Some(left()?))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: open-cowork-gateway-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // The status line is all the probe needs; 512 bytes hold it with room to spare.
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 512 {
        stream.set_read_timeout(Some(left()?))?;
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    match (words.next(), words.next().and_then(|code| code.parse::<u16>().ok())) {
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(Error::new(ErrorKind::InvalidData, "the answer is not HTTP/1.x")),
    }
}

/// `setup`: usage mistakes exit 64, a file that would not pass `check-config` 78, write failures
/// 73 (EX_CANTCREAT).
// Out of line: inlined, every subcommand would share main's one large body and stack frame.
#[inline(never)]
fn setup(args: &[String]) -> ExitCode {
    use open_cowork_gateway::setup::{self, SetupError};
    let result = setup::parse(args).and_then(|options| setup::run(&options, &mut std::io::stdout()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(SetupError::Usage(message)) => {
            errln!("open-cowork-gateway setup: {message}\n\n{}", setup::usage_text());
            ExitCode::from(EX_USAGE)
        }
        Err(SetupError::Io(message)) => {
            errln!("open-cowork-gateway setup: {message}");
            ExitCode::from(73)
        }
        Err(error @ SetupError::Config(_)) => {
            errln!("open-cowork-gateway setup: {error}");
            ExitCode::from(EX_CONFIG)
        }
    }
}
