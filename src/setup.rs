//! `open-cowork-gateway setup`: writes a gateway env file for an appliance, with
//! upstream's flags. Unlike upstream, every file it writes passes `check-config`: it
//! generates the admin token and the Telegram webhook secret when none is given, requires a real
//! service token, and never writes a key twice. The file is created with mode 0600 and is not
//! overwritten without `--force`; `--print` refuses to show secrets without `--allow-secret-print`.
//! A channel this binary was built without is refused at once (exit 64), rather than written into a
//! file that `check-config` and the service would then reject.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use std::collections::BTreeMap;

use crate::config::providers::kind::{SetupFlag, SetupInput, SetupOutput};
use crate::config::urls::{normalize_public_https_url, PublicUrlProblem};
use crate::config::ProviderKind;
use crate::providers::KINDS;

/// The usage text: the common flags, then each kind's own, as the table of kinds lists them.
pub fn usage_text() -> String {
    let mut text = String::from(
        "Usage: open-cowork-gateway setup [options]\n\n\
         \x20 --mode remote|local             remote Cloud (default) or a Cloud on this machine (http://127.0.0.1:8787)\n\
         \x20 --cloud-url URL                 the Cloud URL (required for remote)\n\
         \x20 --service-token TOKEN           the gateway-scoped Cloud token (required)\n",
    );
    let kinds: Vec<&str> = offered_kinds().map(ProviderKind::as_str).collect();
    let (default, rest) = kinds.split_first().map_or(("", &[][..]), |(first, rest)| (*first, rest));
    text.push_str(&usage_line("--provider KIND", &format!("{default} (default), {}", rest.join(", "))));
    let mut listed = Vec::new();
    for flag in kind_flags() {
        if !listed.contains(&flag.name) {
            listed.push(flag.name);
            let name = flag.value.map_or(flag.name.to_owned(), |value| format!("{} {value}", flag.name));
            text.push_str(&usage_line(&name, flag.help));
        }
    }
    for (name, help) in COMMON_FLAGS {
        text.push_str(&usage_line(name, help));
    }
    text
}

/// The flags every kind shares, after the kinds' own in the usage text.
const COMMON_FLAGS: [(&str, &str); 7] = [
    ("--public-url URL", "public HTTPS URL of this gateway (required when the platform posts to it)"),
    ("--admin-token TOKEN", "operator token; generated when not given"),
    ("--output PATH", "default /etc/open-cowork/gateway.env (written with mode 0600)"),
    ("--force", "overwrite an existing file"),
    ("--print", "print the env file instead of writing it"),
    ("--allow-secret-print", "allow --print to show the secrets it contains"),
    ("-h, --help", "this text"),
];

fn usage_line(name: &str, help: &str) -> String {
    format!("  {name:<31} {help}\n")
}

/// The kinds `--provider` accepts, in the table's order (the first is the default): every kind
/// with a `setup`, and every kind this build lacks, so choosing one says which feature is missing.
fn offered_kinds() -> impl Iterator<Item = ProviderKind> {
    ProviderKind::all(KINDS).filter(|kind| !kind.compiled_in() || kind.spec().parts.setup.is_some())
}

/// The flags of every kind this build can set up.
fn kind_flags() -> impl Iterator<Item = &'static SetupFlag> {
    ProviderKind::all(KINDS).filter_map(|kind| kind.spec().parts.setup).flat_map(|setup| setup.flags.iter())
}

/// What went wrong; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
    /// The file would not pass `check-config` (exit 78, as `check-config` would): nothing is written.
    #[error("the env file would not start the gateway, so it was not written: {0}")]
    Config(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOptions {
    pub local: bool,
    pub cloud_url: Option<String>,
    pub service_token: Option<String>,
    /// `--provider`: the first kind of the table unless given.
    pub provider: Option<ProviderKind>,
    /// The chosen kind's own flags as given (a switch has an empty value).
    pub kind_flags: BTreeMap<&'static str, String>,
    pub public_url: Option<String>,
    pub admin_token: Option<String>,
    pub output: PathBuf,
    pub force: bool,
    pub print: bool,
    pub allow_secret_print: bool,
    pub help: bool,
}

impl SetupOptions {
    fn kind(&self) -> Option<ProviderKind> {
        self.provider.or_else(|| offered_kinds().next())
    }
}

fn usage(message: impl Into<String>) -> SetupError {
    SetupError::Usage(message.into())
}

/// Parses the flags after `setup`. An unknown flag is reported once the chosen kind is known: a
/// kind this build lacks is named first (its flags are unknown here), by `render`.
pub fn parse(args: &[String]) -> Result<SetupOptions, SetupError> {
    let mut options = SetupOptions {
        local: false,
        cloud_url: None,
        service_token: None,
        provider: None,
        kind_flags: BTreeMap::new(),
        public_url: None,
        admin_token: None,
        output: PathBuf::from("/etc/open-cowork/gateway.env"),
        force: false,
        print: false,
        allow_secret_print: false,
        help: false,
    };
    let mut unknown = None;
    let mut args = args.iter().peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, SetupError> {
            match inline.clone().or_else(|| args.next().cloned()) {
                Some(v) if !v.is_empty() && !v.starts_with("--") => Ok(v),
                _ => Err(usage(format!("{flag} requires a value."))),
            }
        };
        match flag {
            "--mode" => {
                options.local = match value()?.as_str() {
                    "remote" => false,
                    "local" => true,
                    _ => return Err(usage("--mode must be one of: remote, local")),
                }
            }
            "--provider" => options.provider = Some(provider(&value()?)?),
            "--cloud-url" => options.cloud_url = Some(value()?),
            "--service-token" => options.service_token = Some(value()?),
            "--public-url" => options.public_url = Some(value()?),
            "--admin-token" => options.admin_token = Some(value()?),
            "--output" => options.output = PathBuf::from(value()?),
            "--force" => options.force = true,
            "--print" => options.print = true,
            "--allow-secret-print" => options.allow_secret_print = true,
            "-h" | "--help" => options.help = true,
            other if other.starts_with('-') => match kind_flags().find(|f| f.name == other) {
                Some(known) if known.value.is_some() => _ = options.kind_flags.insert(known.name, value()?),
                Some(known) => _ = options.kind_flags.insert(known.name, String::new()),
                None => {
                    unknown.get_or_insert_with(|| usage(format!("Unknown option {other}.")));
                    let _ = args.next_if(|next| !next.starts_with('-'));
                }
            },
            other => return Err(usage(format!("Unexpected argument: {other}"))),
        }
    }
    match unknown {
        Some(error) if options.kind().is_some_and(ProviderKind::compiled_in) => Err(error),
        _ => Ok(options),
    }
}

/// `--provider KIND`: a kind `setup` offers.
fn provider(name: &str) -> Result<ProviderKind, SetupError> {
    offered_kinds().find(|kind| kind.as_str() == name).ok_or_else(|| {
        let names: Vec<&str> = offered_kinds().map(ProviderKind::as_str).collect();
        usage(format!("--provider must be one of: {}", names.join(", ")))
    })
}

/// A random secret: 32 bytes from the system's CSPRNG, base64url.
fn generate_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| "the system random generator failed".to_owned())?;
    Ok(crate::util::base64::encode_url(&bytes))
}

/// One value per line: newlines are removed, as upstream does.
fn clean(value: &str) -> String {
    value.replace(['\r', '\n'], "")
}

/// Why `setup` will not write a file for `kind`, if this binary cannot run it. Setup is where the
/// operator chooses the channel, so that is where to hear it; a file naming it would only fail
/// `check-config` with exit 78 at the first start of the service.
fn unavailable_provider(kind: ProviderKind, compiled_in: bool) -> Option<SetupError> {
    (!compiled_in).then(|| {
        usage(format!(
            "--provider {kind} is not available: this build of open-cowork-gateway was compiled without cargo feature \"{feature}\". \
             Use a build with that feature, or choose another --provider.",
            kind = kind.as_str(),
            feature = kind.cargo_feature()
        ))
    })
}

/// `--public-url`, normalised, if given.
fn public_url(options: &SetupOptions) -> Result<Option<String>, SetupError> {
    let Some(url) = &options.public_url else { return Ok(None) };
    normalize_public_https_url(url).map(Some).map_err(|problem| match problem {
        PublicUrlProblem::Invalid => {
            usage("--public-url must be a valid HTTPS URL, for example https://gateway.example.com.")
        }
        PublicUrlProblem::NotHttps => usage("--public-url must be HTTPS: the platforms post to it."),
        PublicUrlProblem::Loopback => usage("--public-url must be publicly reachable, not loopback."),
    })
}

/// The chosen kind's part of the file, from its own flags.
fn kind_lines(kind: ProviderKind, options: &SetupOptions, public_url: Option<&str>) -> Result<SetupOutput, SetupError> {
    if let Some(error) = unavailable_provider(kind, kind.compiled_in()) {
        return Err(error);
    }
    let setup = kind.spec().parts.setup.ok_or_else(|| usage(format!("--provider {kind} cannot be set up.")))?;
    let input =
        SetupInput { kind: kind.as_str(), values: &options.kind_flags, public_url, generate_secret: &generate_secret };
    let output = (setup.write)(&input).map_err(usage)?;
    match (output.public_url_needed_for, public_url) {
        (Some(why), None) => Err(usage(format!("--public-url is required for {why}."))),
        _ => Ok(output),
    }
}

/// The env file's text.
pub fn render(options: &SetupOptions) -> Result<String, SetupError> {
    let kind = options.kind().ok_or_else(|| usage("this build of open-cowork-gateway has no channel to set up."))?;
    let public_url = public_url(options)?;
    let kind_output = kind_lines(kind, options, public_url.as_deref())?;
    let cloud_url = match (&options.cloud_url, options.local) {
        (Some(url), _) => url.clone(),
        (None, true) => "http://127.0.0.1:8787".to_owned(),
        (None, false) => return Err(usage("--cloud-url is required in remote mode.")),
    };
    let service_token = options.service_token.clone().ok_or_else(|| {
        usage("--service-token is required: create a gateway-scoped token in Open Cowork Cloud and pass it here.")
    })?;
    let admin_token = match &options.admin_token {
        Some(token) => token.clone(),
        None => generate_secret().map_err(SetupError::Io)?,
    };
    let listens_publicly = kind_output.public_url_needed_for.is_some() || kind_output.listens_publicly;
    let mut lines = vec![
        "# Generated by open-cowork-gateway setup.".to_owned(),
        "# Store this file outside git and rotate every token if it is exposed.".to_owned(),
        "# /metrics and /diagnostics are on and answer only with OPEN_COWORK_GATEWAY_ADMIN_TOKEN, e.g.".to_owned(),
        "#   curl -H \"Authorization: Bearer <admin token>\" http://127.0.0.1:8790/diagnostics".to_owned(),
    ];
    let common = [
        ("OPEN_COWORK_CLOUD_BASE_URL", cloud_url.as_str()),
        ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", &service_token),
        ("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", &admin_token),
        ("OPEN_COWORK_GATEWAY_HOST", if listens_publicly { "0.0.0.0" } else { "127.0.0.1" }),
        ("OPEN_COWORK_GATEWAY_PORT", "8790"),
        ("OPEN_COWORK_GATEWAY_PUBLIC_URL", public_url.as_deref().unwrap_or("")),
        ("OPEN_COWORK_GATEWAY_PRODUCT_MODE", "cloud_channel"),
        ("OPEN_COWORK_GATEWAY_MODE", "self-host"),
        ("OPEN_COWORK_GATEWAY_METRICS_ENABLED", "true"),
        ("OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED", "true"),
        ("OPEN_COWORK_GATEWAY_TRUST_PROXY_HEADERS", "false"),
        ("OPEN_COWORK_GATEWAY_TRUSTED_PROXY_CIDRS", ""),
    ];
    lines.extend(common.iter().map(|(key, value)| format!("{key}={}", clean(value))));
    lines.extend(kind_output.lines.iter().map(|(key, value)| format!("{key}={}", clean(value))));
    let text = lines.join("\n") + "\n";
    check_like_check_config(&text)?;
    Ok(text)
}

/// Runs the checks `check-config` runs on the file's own variables (and nothing else of this
/// shell's environment), so whatever `setup` writes starts.
fn check_like_check_config(text: &str) -> Result<(), SetupError> {
    let pairs = crate::config::env::parse_env_file(text).map_err(SetupError::Config)?;
    let env = crate::config::Env::from_pairs(pairs);
    crate::config::resolve(&serde_json::Value::Object(serde_json::Map::new()), &env, KINDS)
        .map(|_| ())
        .map_err(|error| SetupError::Config(error.to_string()))
}

/// How this binary was installed, which decides what starts the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Installation {
    /// The Debian package: `/usr/bin`, its unit already installed and enabled.
    Package,
    /// `scripts/install`: `/usr/local/bin`, its unit or LaunchDaemon already installed.
    Script,
    /// Anywhere else (a build tree, a copied binary): the service is not installed yet.
    Unpackaged,
}

impl Installation {
    fn of(executable: Option<&Path>) -> Self {
        match executable.and_then(Path::parent).and_then(Path::to_str) {
            Some("/usr/bin") => Self::Package,
            Some("/usr/local/bin") => Self::Script,
            _ => Self::Unpackaged,
        }
    }
}

/// The steps after writing the file, for the way this binary was installed.
fn next_steps(path: &Path, installation: Installation) -> String {
    let path = path.display();
    let start = match installation {
        Installation::Package => {
            "3. Start it (the package installed and enabled the service): sudo systemctl restart open-cowork-gateway\n"
                .to_owned()
        }
        Installation::Script if cfg!(target_os = "macos") => {
            "3. Start it: sudo launchctl kickstart -k system/com.open-cowork.gateway\n".to_owned()
        }
        Installation::Script => "3. Start it: sudo systemctl restart open-cowork-gateway\n".to_owned(),
        Installation::Unpackaged => "3. Install the service: scripts/install (systemd on Linux, launchd on macOS), \
             then start it: sudo systemctl enable --now open-cowork-gateway (or launchctl bootstrap system …).\n"
            .to_owned(),
    };
    format!(
        "Next steps:\n\
         1. Review {path} (mode 0600; it holds secrets).\n\
         2. Validate it: open-cowork-gateway check-config --env-file {path}\n\
         {start}\
         4. Check /health and /ready: curl -s http://127.0.0.1:8790/health; curl -s http://127.0.0.1:8790/ready\n"
    )
}

/// Writes `text` to a new file with mode 0600 (or replaces it with `force`).
fn write_env_file(path: &Path, text: &str, force: bool) -> Result<(), SetupError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| SetupError::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SetupError::Usage(format!("{} already exists; pass --force to replace it.", path.display()))
        } else {
            SetupError::Io(format!("cannot write {}: {e}", path.display()))
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // An existing file keeps its mode on open: tighten it too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SetupError::Io(format!("cannot set the mode of {}: {e}", path.display())))?;
    }
    file.write_all(text.as_bytes()).map_err(|e| SetupError::Io(format!("cannot write {}: {e}", path.display())))
}

/// Runs `setup` with its output on `out`.
pub fn run(options: &SetupOptions, out: &mut dyn Write) -> Result<(), SetupError> {
    if options.help {
        let _ = out.write_all(usage_text().as_bytes());
        return Ok(());
    }
    let text = render(options)?;
    if options.print {
        if !options.allow_secret_print {
            return Err(usage(
                "--print would write live gateway secrets to stdout. Pass --allow-secret-print to accept that, or write the file with --output.",
            ));
        }
        return out.write_all(text.as_bytes()).map_err(|e| SetupError::Io(e.to_string()));
    }
    write_env_file(&options.output, &text, options.force)?;
    let _ = writeln!(out, "Wrote {}.", options.output.display());
    let executable = std::env::current_exe().ok();
    let _ = out.write_all(next_steps(&options.output, Installation::of(executable.as_deref())).as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> ProviderKind {
        ProviderKind::parse(KINDS, name).unwrap()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_and_errors() {
        assert_eq!(parse(&args(&["--mode", "cluster"])).unwrap_err(), usage("--mode must be one of: remote, local"));
        // The CLI has nothing to set up: it is offered only by a build without it, to name its
        // feature. A kind added to the table joins the list wherever its entry stands.
        let offered: &[&str] = if cfg!(feature = "cli") {
            &["telegram", "slack", "email", "webhook", "discord", "whatsapp", "signal", "fake"]
        } else {
            &["telegram", "slack", "email", "webhook", "discord", "whatsapp", "signal", "cli", "fake"]
        };
        let unknown = parse(&args(&["--provider", "irc"])).unwrap_err().to_string();
        let listed = unknown.split_once("--provider must be one of: ").map(|(_, list)| list).unwrap_or_default();
        let mut names = listed.trim_end_matches('.').split(", ");
        assert!(offered.iter().all(|kind| names.any(|name| name == *kind)), "{offered:?} in order: {unknown}");
        assert_eq!(parse(&args(&["--cloud-url"])).unwrap_err(), usage("--cloud-url requires a value."));
        assert_eq!(parse(&args(&["--cloud-url", "--print"])).unwrap_err(), usage("--cloud-url requires a value."));
        assert_eq!(parse(&args(&["stray"])).unwrap_err(), usage("Unexpected argument: stray"));
        let options =
            parse(&args(&["--mode=local", "--provider", "fake", "--service-token", "occ_x_y", "--print"])).unwrap();
        assert!(options.local && options.provider == ProviderKind::parse(KINDS, "fake") && options.print);
    }

    /// Whatever `setup` writes must start: a file `check-config` would refuse is not written.
    #[cfg(feature = "devcloud")]
    #[test]
    fn a_file_that_check_config_would_refuse_is_never_written() {
        let dir = std::env::temp_dir().join(format!("setup-refuses-{}", std::process::id()));
        let output = dir.join("gateway.env");
        for (flags, expected) in [
            (&["--cloud-url", "http://cloud.example.com"][..], "Cloud base URL must use HTTPS"),
            (
                &["--cloud-url", "https://cloud.example.com", "--service-token", "replace-with-a-token"][..],
                "still a placeholder",
            ),
            (&["--cloud-url", "https://cloud.example.com/?key=x"][..], "must not have a query"),
        ] {
            let mut list = vec!["--provider", "fake", "--service-token", "occ_x_y", "--output"];
            let output_text = output.to_string_lossy().into_owned();
            list.push(&output_text);
            list.extend_from_slice(flags);
            let options = parse(&args(&list)).unwrap();
            let error = run(&options, &mut Vec::new()).unwrap_err();
            assert!(matches!(&error, SetupError::Config(message) if message.contains(expected)), "{flags:?}: {error}");
            assert!(!output.exists(), "{flags:?}: nothing written");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(feature = "devcloud")]
    #[test]
    fn the_file_keeps_metrics_and_diagnostics_on_and_says_so() {
        let options = parse(&args(&["--mode", "local", "--provider", "fake", "--service-token", "occ_x_y"])).unwrap();
        let text = render(&options).unwrap();
        assert!(text.contains("OPEN_COWORK_GATEWAY_METRICS_ENABLED=true\n"), "{text}");
        assert!(text.contains("OPEN_COWORK_GATEWAY_DIAGNOSTICS_ENABLED=true\n"));
        assert!(text.contains("# /metrics and /diagnostics are on"));
    }

    #[test]
    fn next_steps_follow_how_the_binary_was_installed() {
        let path = Path::new("/etc/open-cowork/gateway.env");
        let package = next_steps(path, Installation::of(Some(Path::new("/usr/bin/open-cowork-gateway"))));
        assert!(package.contains("sudo systemctl restart open-cowork-gateway") && !package.contains("scripts/install"));
        let built =
            next_steps(path, Installation::of(Some(Path::new("/home/me/gw/target/release/open-cowork-gateway"))));
        assert!(built.contains("scripts/install"));
        assert_eq!(Installation::of(Some(Path::new("/usr/local/bin/open-cowork-gateway"))), Installation::Script);
    }

    #[cfg(feature = "telegram")]
    #[test]
    fn rendering_generates_what_the_mode_needs() {
        let options = parse(&args(&[
            "--cloud-url",
            "https://cloud.example.com",
            "--service-token",
            "occ_x_y",
            "--telegram-bot-token",
            "1:abc",
            "--telegram-mode",
            "webhook",
            "--public-url",
            "https://bot.example.com/",
        ]))
        .unwrap();
        let text = render(&options).unwrap();
        assert!(text.contains("OPEN_COWORK_GATEWAY_HOST=0.0.0.0\n"));
        assert!(text.contains("OPEN_COWORK_GATEWAY_PUBLIC_URL=https://bot.example.com\n"));
        let secret = text.lines().find_map(|l| l.strip_prefix("OPEN_COWORK_GATEWAY_TELEGRAM_WEBHOOK_SECRET=")).unwrap();
        assert_eq!(secret.len(), 43, "a generated 32-byte secret");
        let admin = text.lines().find_map(|l| l.strip_prefix("OPEN_COWORK_GATEWAY_ADMIN_TOKEN=")).unwrap();
        assert_eq!(admin.len(), 43);
        assert_ne!(admin, secret);
        let keys: Vec<&str> = text.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "no key twice");
        let http = SetupOptions { public_url: Some("http://bot.example.com".into()), ..options };
        assert_eq!(render(&http).unwrap_err(), usage("--public-url must be HTTPS: the platforms post to it."));
    }

    #[cfg(feature = "email")]
    #[test]
    fn email_needs_a_from_address_and_an_smtp_host_and_generates_the_relay_secret() {
        let base = ["--cloud-url", "https://c.example.com", "--service-token", "occ_x_y", "--provider", "email"];
        let with = |extra: &[&str]| render(&parse(&args(&[&base[..], extra].concat())).unwrap());
        assert!(with(&[]).unwrap_err().to_string().starts_with("--email-from is required"));
        assert!(with(&["--email-from", "Agent"]).unwrap_err().to_string().starts_with("--email-from must contain"));
        let from = ["--email-from", "Agent <agent@example.com>"];
        assert!(with(&from).unwrap_err().to_string().starts_with("--smtp-host is required"));
        let host = [&from[..], &["--smtp-host", "smtp.example.com"]].concat();
        assert!(with(&[&host[..], &["--smtp-port", "0"]].concat()).unwrap_err().to_string().contains("--smtp-port"));
        let text = with(&host).unwrap();
        assert!(text.contains("OPEN_COWORK_GATEWAY_EMAIL_FROM=Agent <agent@example.com>\n"), "{text}");
        assert!(text.contains("OPEN_COWORK_GATEWAY_EMAIL_SMTP_HOST=smtp.example.com\n"));
        assert!(text.contains("OPEN_COWORK_GATEWAY_HOST=127.0.0.1\n"), "a local relay by default");
        let secret = text.lines().find_map(|l| l.strip_prefix("OPEN_COWORK_GATEWAY_EMAIL_INBOUND_SECRET=")).unwrap();
        assert!(secret.len() >= 40, "generated: {secret}");
        assert!(!text.contains("TELEGRAM") && !text.contains("SLACK"));
    }

    #[cfg(feature = "slack")]
    #[test]
    fn slack_needs_both_secrets_and_a_public_url() {
        let base = ["--cloud-url", "https://c.example.com", "--service-token", "occ_x_y", "--provider", "slack"];
        let with = |extra: &[&str]| render(&parse(&args(&[&base[..], extra].concat())).unwrap());
        assert!(with(&[]).unwrap_err().to_string().starts_with("--slack-bot-token is required"));
        assert!(with(&["--slack-bot-token", "xoxb-1"]).unwrap_err().to_string().starts_with("--slack-signing-secret"));
        let secrets = ["--slack-bot-token", "xoxb-1", "--slack-signing-secret", "sign"];
        assert!(with(&secrets).unwrap_err().to_string().starts_with("--public-url is required for Slack"));
        let text = with(&[&secrets[..], &["--public-url", "https://gw.example.com"]].concat()).unwrap();
        assert!(text.contains("OPEN_COWORK_GATEWAY_SLACK_BOT_TOKEN=xoxb-1\n"), "{text}");
        assert!(text.contains("OPEN_COWORK_GATEWAY_SLACK_SIGNING_SECRET=sign\n"));
        assert!(!text.contains("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER=true"));
        assert!(!text.contains("TELEGRAM"));
    }

    #[cfg(feature = "devcloud")]
    #[test]
    fn print_refuses_secrets_and_files_are_private() {
        let mut options =
            parse(&args(&["--mode", "local", "--provider", "fake", "--service-token", "occ_x_y", "--print"])).unwrap();
        let mut out = Vec::new();
        assert!(run(&options, &mut out)
            .unwrap_err()
            .to_string()
            .starts_with("--print would write live gateway secrets"));
        options.allow_secret_print = true;
        run(&options, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("OPEN_COWORK_CLOUD_BASE_URL=http://127.0.0.1:8787"));

        let dir = std::env::temp_dir().join(format!("ocg-setup-{}", std::process::id()));
        let path = dir.join("etc/gateway.env");
        options.print = false;
        options.output = path.clone();
        run(&options, &mut Vec::new()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(run(&options, &mut Vec::new()).unwrap_err().to_string().contains("pass --force"));
        options.force = true;
        run(&options, &mut Vec::new()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_provider_this_build_cannot_run_is_refused_before_anything_is_written() {
        assert_eq!(
            unavailable_provider(kind("telegram"), false).unwrap().to_string(),
            "--provider telegram is not available: this build of open-cowork-gateway was compiled without cargo \
             feature \"telegram\". Use a build with that feature, or choose another --provider."
        );
        assert_eq!(unavailable_provider(kind("fake"), true), None);
        let options =
            parse(&args(&["--mode", "local", "--provider", "fake", "--service-token", "occ_x_y", "--print"])).unwrap();
        assert_eq!(render(&options).is_ok(), cfg!(feature = "devcloud"), "fake needs the devcloud feature");
    }

    #[cfg(feature = "bridges")]
    #[test]
    fn a_relay_needs_a_delivery_url_that_passes_the_url_policy() {
        let base = ["--mode", "local", "--service-token", "occ_x_y", "--provider", "signal"];
        let missing = render(&parse(&args(&base)).unwrap()).unwrap_err();
        assert_eq!(missing, usage("--delivery-url is required for the webhook and bridge providers."));
        let plain = parse(&args(&[&base[..], &["--delivery-url", "http://relay.example.com/in"]].concat())).unwrap();
        assert_eq!(
            render(&plain).unwrap_err(),
            usage("--delivery-url is refused: Webhook delivery URL must use https unless it targets localhost.")
        );
        let good = parse(&args(&[&base[..], &["--delivery-url", "https://relay.example.com/in"]].concat())).unwrap();
        let text = render(&good).unwrap();
        assert!(text.contains("OPEN_COWORK_GATEWAY_SIGNAL_DELIVERY_URL=https://relay.example.com/in\n"));
        assert!(text.contains("OPEN_COWORK_GATEWAY_SIGNAL_CHANNEL_BINDING_ID=signal\n"));
        let secret = text.lines().find_map(|l| l.strip_prefix("OPEN_COWORK_GATEWAY_SIGNAL_SHARED_SECRET=")).unwrap();
        assert_eq!(secret.len(), 43, "a generated 32-byte secret");
        assert!(!text.contains("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER=true"));
    }
}
