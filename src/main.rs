//! The `open-cowork-gateway` binary: parses the command line, loads the configuration, builds the
//! current_thread runtime and maps every outcome to an exit code (§8.15).

use std::path::PathBuf;
use std::process::ExitCode;

use open_cowork_gateway::cli::{self, Command};
use open_cowork_gateway::config::{self, Env, Overrides};
use open_cowork_gateway::daemon::{self, DaemonError, Exit};
use open_cowork_gateway::notify::Notifier;
use open_cowork_gateway::{logging, TARGET, VERSION};

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("open-cowork-gateway: {error}");
            return ExitCode::from(EX_USAGE);
        }
    };
    match cli.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("open-cowork-gateway {VERSION} ({TARGET})");
            return ExitCode::SUCCESS;
        }
        Command::Run | Command::CheckConfig { .. } => {}
    }

    let mut env = Env::from_process();
    let env_file = cli.env_file.clone().or_else(|| env.string("OPEN_COWORK_GATEWAY_ENV_FILE").map(PathBuf::from));
    if let Some(path) = env_file {
        if let Err(error) = env.merge_env_file(&path, cli.allow_insecure_env_file) {
            eprintln!("open-cowork-gateway: configuration error: {error}");
            return ExitCode::from(EX_CONFIG);
        }
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let overrides = Overrides { config_file: cli.config_file.clone(), log_level: cli.log_level };
    let config = match config::load(&env, &cwd, &overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("open-cowork-gateway: configuration error: {error}");
            return ExitCode::from(EX_CONFIG);
        }
    };

    if let Command::CheckConfig { print } = cli.command {
        if print {
            match serde_json::to_string_pretty(&config) {
                Ok(text) => println!("{text}"),
                Err(error) => {
                    eprintln!("open-cowork-gateway: cannot print the configuration: {error}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            let providers: Vec<&str> = config.enabled_providers().map(|p| p.id.as_str()).collect();
            println!(
                "Configuration OK: {} enabled provider(s) [{}], listening on {}:{}, Cloud {}.",
                providers.len(),
                providers.join(", "),
                config.server.host,
                config.server.port,
                config.cloud.base_url
            );
        }
        return ExitCode::SUCCESS;
    }

    let filter = logging::filter(cli.log_level, env.raw("RUST_LOG"), config.log_level);
    if let Some(note) = logging::init(cli.log_format, filter) {
        tracing::warn!("{note}");
    }

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("open-cowork-gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, daemon::run(config, None, Notifier::from_env())) {
        Ok(Exit::Drained) => ExitCode::SUCCESS,
        Ok(Exit::Forced) => ExitCode::FAILURE,
        Err(error @ DaemonError::Bind { .. }) => {
            eprintln!("open-cowork-gateway: {error}");
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(error) => {
            eprintln!("open-cowork-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
