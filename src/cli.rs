//! Command-line parsing. Usage errors name the flag and exit 64 (EX_USAGE).

use std::path::PathBuf;

use crate::config::LogLevel;
use crate::logging::LogFormat;
use crate::util::args::{Word, Words};

pub const USAGE: &str = "\
open-cowork-gateway: the Open Cowork Cloud Channel Gateway

Usage:
  open-cowork-gateway [run] [options]        run the gateway (default)
  open-cowork-gateway demo                   chat with the dev Cloud's echo agent on stdin/stdout:
                                             no account, token or network needed
  open-cowork-gateway check-config [--print] validate the configuration and exit 0 or 78
  open-cowork-gateway doctor                 check the install end to end (state directory, port,
                                             Cloud, token, bindings, clock, each channel's
                                             credentials and routes); exit 0 when all pass, else 1
  open-cowork-gateway dev-cloud [--host H] [--port P] [--pending-identities] [--max-sse-per-org N]
                                             run the in-memory dev Cloud on loopback and print
                                             the env block a gateway needs to use it
  open-cowork-gateway setup [--help]         write an appliance env file (/etc/open-cowork/gateway.env)
  open-cowork-gateway probe [--ready] [--url URL] [--timeout-ms MS]
                                             GET /health (or /ready) on the gateway's loopback
                                             address; exit 0 on 2xx, 1 otherwise (health checks
                                             in images without curl)
  open-cowork-gateway version                print version and target
  open-cowork-gateway help                   show this text

Options:
  --config PATH              gateway-only JSON(C) file (instead of OPEN_COWORK_GATEWAY_CONFIG)
  --env-file PATH            KEY=VALUE file completing the environment (also OPEN_COWORK_GATEWAY_ENV_FILE);
                             variables already in the environment win
  --allow-insecure-env-file  accept an env file readable or writable by group or others
  --log-level LEVEL          debug | info | warn | error | silent (overrides RUST_LOG and the config)
  --log-format FORMAT        auto | journald | stderr (auto: journald when JOURNAL_STREAM is set)
  --print                    with check-config: print the resolved configuration, secrets redacted
  -h, --help                 show this text
  -V, --version              print version and target

Exit codes: 0 ok, 64 usage error, 69 listener unavailable, 78 configuration error, 1 other failure.
Configuration: environment variables and JSON files as described in README.md.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run,
    CheckConfig {
        print: bool,
    },
    /// Checks the install end to end; same configuration flags as `run`.
    Doctor,
    /// The gateway with the CLI provider on the embedded dev Cloud.
    Demo,
    /// Writes an env file; its flags are parsed by [`crate::setup`].
    Setup {
        args: Vec<String>,
    },
    /// The in-memory dev Cloud; loopback only.
    DevCloud {
        host: String,
        port: u16,
        pending_identities: bool,
        /// Concurrent SSE streams the dev Cloud allows (Cloud's per-organisation cap, 200).
        max_sse_per_org: usize,
    },
    /// A health check of a running gateway over loopback HTTP; see [`Probe`].
    Probe(Probe),
    Version,
    Help,
}

/// What `probe` asks: the URL (`None`: the address the environment configures) and the timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub url: Option<String>,
    /// `/ready` instead of `/health` when the URL names no path.
    pub ready: bool,
    pub timeout_ms: u64,
}

/// Long enough for a loaded Pi to answer, short enough to stay under a container health check's
/// own timeout (the Containerfile gives it 5 s).
const PROBE_DEFAULT_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    pub command: Command,
    pub config_file: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub allow_insecure_env_file: bool,
    pub log_level: Option<LogLevel>,
    pub log_format: LogFormat,
}

/// A command-line mistake; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Parses the arguments after the program name. `--flag value` and `--flag=value` both work.
pub fn parse<I, S>(args: I) -> Result<Cli, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut cli = Cli {
        command: Command::Run,
        config_file: None,
        env_file: None,
        allow_insecure_env_file: false,
        log_level: None,
        log_format: LogFormat::Auto,
    };
    let mut args = args.into_iter().map(Into::into).peekable();
    if args.peek().is_some_and(|first| first == "setup") {
        args.next();
        cli.command = Command::Setup { args: args.collect() };
        return Ok(cli);
    }
    if args.peek().is_some_and(|first| first == "probe") {
        args.next();
        cli.command = Command::Probe(parse_probe(args)?);
        return Ok(cli);
    }
    let mut words = Words::new(args);
    let mut flags = CommandFlags::default();
    while let Some(word) = words.next_word() {
        parse_word(&mut cli, &mut flags, &word, &mut words)?;
    }
    cli.command = flags.into_command()?;
    Ok(cli)
}

/// What the words set besides [`Cli`]'s own fields: the command and the flags only some
/// commands take, settled by [`CommandFlags::into_command`] once every word is read.
#[derive(Default)]
struct CommandFlags {
    command: Option<Command>,
    print: bool,
    dev_host: Option<String>,
    dev_port: Option<u16>,
    pending_identities: bool,
    max_sse: Option<usize>,
}

/// Applies one word of the run-family command line.
fn parse_word<I: Iterator<Item = String>>(
    cli: &mut Cli,
    flags: &mut CommandFlags,
    word: &Word,
    words: &mut Words<I>,
) -> Result<(), UsageError> {
    let flag = word.flag.as_str();
    let mut value = || words.value(word).ok_or_else(|| UsageError(format!("{flag} requires a value.")));
    let switch = word.inline.is_none();
    match flag {
        "--config" => cli.config_file = Some(PathBuf::from(value()?)),
        "--env-file" => cli.env_file = Some(PathBuf::from(value()?)),
        "--log-level" => {
            let text = value()?;
            cli.log_level = Some(LogLevel::parse(&text).ok_or_else(|| {
                UsageError(format!("--log-level must be one of debug, info, warn, error, silent (got {text:?})."))
            })?);
        }
        "--log-format" => {
            let text = value()?;
            cli.log_format = LogFormat::parse(&text).ok_or_else(|| {
                UsageError(format!("--log-format must be one of auto, journald, stderr (got {text:?})."))
            })?;
        }
        "--host" => flags.dev_host = Some(value()?),
        "--port" => {
            let text = value()?;
            flags.dev_port =
                Some(text.parse().map_err(|_| {
                    UsageError(format!("--port must be a port number from 0 to 65535 (got {text:?})."))
                })?);
        }
        "--pending-identities" if switch => flags.pending_identities = true,
        "--max-sse-per-org" => {
            let text = value()?;
            flags.max_sse = Some(text.parse().ok().filter(|n: &usize| *n >= 1).ok_or_else(|| {
                UsageError(format!("--max-sse-per-org must be a whole number of at least 1 (got {text:?})."))
            })?);
        }
        "--allow-insecure-env-file" if switch => cli.allow_insecure_env_file = true,
        "--print" if switch => flags.print = true,
        "-h" | "--help" => flags.command = Some(Command::Help),
        "-V" | "--version" => flags.command = Some(Command::Version),
        word if !word.starts_with('-') && flags.command.is_none() => flags.command = Some(command_named(word)?),
        word if !word.starts_with('-') => return Err(UsageError(format!("Unexpected argument {word:?}."))),
        _ => return Err(UsageError(format!("Unknown option {flag}. See --help."))),
    }
    Ok(())
}

/// The command a word names (its flags are filled in by [`CommandFlags::into_command`]).
fn command_named(word: &str) -> Result<Command, UsageError> {
    Ok(match word {
        "run" => Command::Run,
        "check-config" => Command::CheckConfig { print: false },
        "doctor" => Command::Doctor,
        "demo" => Command::Demo,
        "dev-cloud" => Command::DevCloud { host: String::new(), port: 0, pending_identities: false, max_sse_per_org: 0 },
        "version" => Command::Version,
        "help" => Command::Help,
        other => {
            return Err(UsageError(format!(
                "Unknown command {other:?}. Commands: run, demo, setup, check-config, doctor, dev-cloud, probe, version, help."
            )))
        }
    })
}

impl CommandFlags {
    /// The command with its flags; a flag given to a command that does not take it is an error.
    fn into_command(self) -> Result<Command, UsageError> {
        let dev_flags =
            self.dev_host.is_some() || self.dev_port.is_some() || self.pending_identities || self.max_sse.is_some();
        Ok(match self.command.unwrap_or(Command::Run) {
            Command::CheckConfig { .. } if !dev_flags => Command::CheckConfig { print: self.print },
            Command::DevCloud { .. } if !self.print => Command::DevCloud {
                host: self.dev_host.unwrap_or_else(|| "127.0.0.1".into()),
                port: self.dev_port.unwrap_or(8787),
                pending_identities: self.pending_identities,
                max_sse_per_org: self.max_sse.unwrap_or(200),
            },
            _ if self.print => return Err(UsageError("--print only applies to check-config.".into())),
            _ if dev_flags => {
                return Err(UsageError(
                    "--host, --port, --pending-identities and --max-sse-per-org only apply to dev-cloud.".into(),
                ))
            }
            other => other,
        })
    }
}

/// `probe`'s own flags. It has its own small grammar (like `setup`): a health check line in a
/// Containerfile or a Compose file takes nothing from the run flags.
fn parse_probe(args: impl Iterator<Item = String>) -> Result<Probe, UsageError> {
    let mut probe = Probe { url: None, ready: false, timeout_ms: PROBE_DEFAULT_TIMEOUT_MS };
    let mut words = Words::new(args);
    while let Some(word) = words.next_word() {
        let flag = word.flag.as_str();
        let mut value = || words.value(&word).ok_or_else(|| UsageError(format!("{flag} requires a value.")));
        match flag {
            "--url" => probe.url = Some(value()?),
            "--ready" if word.inline.is_none() => probe.ready = true,
            "--timeout-ms" => {
                let text = value()?;
                probe.timeout_ms = text.parse().ok().filter(|ms| (1..=60_000).contains(ms)).ok_or_else(|| {
                    UsageError(format!("--timeout-ms must be a number from 1 to 60000 (got {text:?})."))
                })?;
            }
            _ => {
                return Err(UsageError(format!(
                    "Unknown probe option {flag}. Usage: probe [--ready] [--url URL] [--timeout-ms MS]."
                )))
            }
        }
    }
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_run() {
        let cli = parse(Vec::<String>::new()).unwrap();
        assert_eq!(cli.command, Command::Run);
        assert_eq!(cli.log_format, LogFormat::Auto);
    }

    #[test]
    fn commands_and_flags() {
        let cli = parse([
            "check-config",
            "--print",
            "--config",
            "/etc/gw.jsonc",
            "--env-file=/etc/gw.env",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(cli.command, Command::CheckConfig { print: true });
        assert_eq!(cli.config_file.as_deref(), Some(std::path::Path::new("/etc/gw.jsonc")));
        assert_eq!(cli.env_file.as_deref(), Some(std::path::Path::new("/etc/gw.env")));
        assert_eq!(cli.log_level, Some(LogLevel::Debug));
        assert_eq!(parse(["--version"]).unwrap().command, Command::Version);
        let doctor = parse(["doctor", "--env-file", "/etc/gw.env"]).unwrap();
        assert_eq!((doctor.command, doctor.env_file.unwrap()), (Command::Doctor, "/etc/gw.env".into()));
        assert_eq!(parse(["run", "-h"]).unwrap().command, Command::Help);
        assert!(parse(["--allow-insecure-env-file"]).unwrap().allow_insecure_env_file);
        assert_eq!(parse(["--log-format", "journald"]).unwrap().log_format, LogFormat::Journald);
        assert_eq!(
            parse(["dev-cloud", "--port", "0", "--pending-identities"]).unwrap().command,
            Command::DevCloud { host: "127.0.0.1".into(), port: 0, pending_identities: true, max_sse_per_org: 200 }
        );
        assert_eq!(
            parse(["dev-cloud", "--max-sse-per-org", "20"]).unwrap().command,
            Command::DevCloud { host: "127.0.0.1".into(), port: 8787, pending_identities: false, max_sse_per_org: 20 }
        );
        assert!(parse(["dev-cloud", "--max-sse-per-org", "0"]).is_err());
    }

    #[test]
    fn usage_errors_name_the_flag() {
        assert_eq!(parse(["--bogus"]).unwrap_err().to_string(), "Unknown option --bogus. See --help.");
        assert_eq!(parse(["--config"]).unwrap_err().to_string(), "--config requires a value.");
        assert_eq!(parse(["--config", "--print"]).unwrap_err().to_string(), "--config requires a value.");
        assert!(parse(["--log-level", "loud"]).unwrap_err().to_string().starts_with("--log-level must be one of"));
        assert!(parse(["--log-format=xml"]).unwrap_err().to_string().starts_with("--log-format must be one of"));
        assert!(parse(["frobnicate"]).unwrap_err().to_string().starts_with("Unknown command"));
        assert!(parse(["run", "extra"]).unwrap_err().to_string().starts_with("Unexpected argument"));
        assert_eq!(parse(["--print"]).unwrap_err().to_string(), "--print only applies to check-config.");
        assert!(parse(["--port", "1"]).unwrap_err().to_string().contains("only apply to dev-cloud"));
        assert!(parse(["dev-cloud", "--port", "99999"]).unwrap_err().to_string().starts_with("--port must be"));
        assert!(parse(["--print=yes", "check-config"]).is_err());
    }

    #[test]
    fn probe_has_its_own_flags() {
        let probe = |args: &[&str]| match parse([&["probe"], args].concat()).map(|cli| cli.command) {
            Ok(Command::Probe(probe)) => Ok(probe),
            Ok(other) => panic!("not a probe: {other:?}"),
            Err(error) => Err(error.to_string()),
        };
        assert_eq!(probe(&[]), Ok(Probe { url: None, ready: false, timeout_ms: PROBE_DEFAULT_TIMEOUT_MS }));
        assert_eq!(
            probe(&["--ready", "--url=http://127.0.0.1:9000", "--timeout-ms", "500"]),
            Ok(Probe { url: Some("http://127.0.0.1:9000".into()), ready: true, timeout_ms: 500 })
        );
        assert_eq!(probe(&["--url"]), Err("--url requires a value.".into()));
        assert!(probe(&["--timeout-ms", "0"]).unwrap_err().starts_with("--timeout-ms must be"));
        assert!(probe(&["--timeout-ms", "soon"]).unwrap_err().starts_with("--timeout-ms must be"));
        assert!(probe(&["--print"]).unwrap_err().starts_with("Unknown probe option --print"));
        assert!(probe(&["--ready=yes"]).is_err());
        // Only as the first word; elsewhere it is an unknown word of the run grammar.
        assert!(parse(["--log-level", "info", "probe"]).is_err());
    }
}
