//! Golden configurations: every `tests/config/valid/*.env` must pass `check-config`, every
//! `tests/config/invalid/*.env` must exit 78 with the message on its `# expect:` line.
//!
//! A case is `<name>.env` (the environment, in env-file syntax), optionally `<name>.jsonc` (passed
//! as `--config`) and `<name>.central.jsonc` (a central file, found through
//! `OPEN_COWORK_CONFIG_PATH`).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;

fn cases(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "env"))
        .collect();
    files.sort();
    files
}

/// The arguments handing a case's `.env` to the binary as its env file (the repository's files are
/// readable by others, hence `--allow-insecure-env-file`).
fn env_file_args(case: &Path) -> [&std::ffi::OsStr; 3] {
    ["--env-file".as_ref(), case.as_os_str(), "--allow-insecure-env-file".as_ref()]
}

/// A case's `KEY=VALUE` lines, comments left out and double quotes taken off (the cases use no
/// escapes, single quotes or `export`).
fn settings(text: &str) -> Vec<(&str, &str)> {
    let lines = text.lines().filter(|line| !line.starts_with('#'));
    lines.filter_map(|line| line.split_once('=')).map(|(key, value)| (key, value.trim_matches('"'))).collect()
}

/// Runs `check-config` for one case with its `.env` as the env file; returns the output and the
/// `# expect:` text, if any.
fn check(case: &Path, extra_args: &[&str]) -> (Output, Option<String>) {
    let text = std::fs::read_to_string(case).unwrap();
    let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).map(|s| s.trim_end().to_owned());
    let central = case.with_extension("central.jsonc");
    let central = central.to_string_lossy().into_owned();
    let mut env: Vec<(&str, &str)> = Vec::new();
    if Path::new(&central).exists() {
        env.push(("OPEN_COWORK_CONFIG_PATH", &central));
    }
    let dir = support::TempDir::new("golden");
    let mut command = support::command(&dir.0, &env);
    command.arg("check-config").args(extra_args).args(env_file_args(case));
    let gateway_file = case.with_extension("jsonc");
    if gateway_file.exists() {
        command.arg("--config").arg(&gateway_file);
    }
    (command.output().unwrap(), expect)
}

#[test]
fn invalid_configs_fail_with_their_message() {
    let cases = cases("invalid");
    assert!(cases.len() >= 25, "at least 25 invalid cases, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (output, expect) = check(case, &[]);
        let expect = expect.unwrap_or_else(|| panic!("{} has no `# expect:` line", case.display()));
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(78) || !stderr.contains(&expect) {
            failures.push(format!(
                "{}: exit {:?}, stderr {stderr:?}, expected {expect:?}",
                case.display(),
                output.status.code()
            ));
        }
        assert_eq!(stderr.lines().count(), 1, "{}: one line: {stderr}", case.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_configs_pass_and_print_without_secrets() {
    let cases = cases("valid");
    assert!(!cases.is_empty());
    for case in &cases {
        let (output, _) = check(case, &["--print"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{}: {}", case.display(), String::from_utf8_lossy(&output.stderr));
        let printed: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        assert_eq!(printed["productMode"], "cloud_channel");
        for (key, value) in settings(&std::fs::read_to_string(case).unwrap()) {
            let secret_key = ["TOKEN", "SECRET", "PASSWORD"].iter().any(|w| key.contains(w));
            if secret_key && !value.is_empty() {
                assert!(!stdout.contains(value), "{}: {key} printed in clear", case.display());
            }
        }
    }
}

#[test]
fn json_layers_resolve_as_documented() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/json-providers-with-env-token.env");
    let (output, _) = check(&case, &["--print"]);
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["instanceId"], "pi-kitchen");
    assert_eq!(printed["server"]["maxRequestBodyBytes"], 67108864, "clamped, not rejected");
    assert_eq!(printed["providers"][0]["id"], "telegram-family", "the JSON id wins over the env shortcut's");
    assert_eq!(printed["providers"][0]["credentials"]["botToken"], "[redacted]", "the env token is merged in");
    assert_eq!(printed["providers"][1]["settings"]["maxAttachmentBytes"], 65536);

    let central = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/central-file-with-placeholders.env");
    let (output, _) = check(&central, &["--print"]);
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["server"]["host"], "localhost");
    assert_eq!(printed["logLevel"], "warn");
}

#[test]
fn disabled_entries_of_any_kind_load_and_are_shown() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config/valid/telegram-webhook-json-settings-with-disabled-kinds.env");
    let (output, _) = check(&case, &["--print"]);
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let providers = printed["providers"].as_array().unwrap();
    let kinds: Vec<(&str, bool)> =
        providers.iter().map(|p| (p["kind"].as_str().unwrap(), p["enabled"].as_bool().unwrap())).collect();
    assert_eq!(kinds, [("telegram", true), ("slack", false), ("email", false), ("discord", false)]);
    assert_eq!(providers[0]["settings"]["publicBaseUrl"], "https://bot.example.com", "normalised at load");
    assert_eq!(providers[1]["credentials"]["signingSecret"], "[redacted]");
    assert_eq!(
        providers[1]["settings"]["note"], "pasted [redacted] here",
        "a kind's own token prefix (Slack's xoxb-) is redacted in any text the binary prints"
    );
}

/// `run` goes through the same load as `check-config`: an entry the provider could not be built
/// from (an e-mail `from` without an address) stops it with exit 78 and the same single line,
/// before any socket is opened. (Every kind is implemented now; the "not compiled in" message is
/// pinned by the unit tests of `config::providers`, since the default build has every feature.)
#[test]
fn an_unbuildable_entry_stops_run_with_exit_78() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/invalid/email-from-not-an-address.env");
    let dir = support::TempDir::new("golden-run");
    let output = support::command(&dir.0, &[]).arg("run").args(env_file_args(&case)).output().unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "open-cowork-gateway: configuration error: Gateway provider email-team requires a valid from address \
         (OPEN_COWORK_GATEWAY_EMAIL_FROM), e.g. agent@example.com or \"Agent <agent@example.com>\".\n"
    );
}

/// The userinfo passwords (or lone user names) of every URL in a case's files.
fn url_passwords(text: &str) -> Vec<String> {
    text.split("://")
        .skip(1)
        .filter_map(|rest| {
            let authority = rest.split(['/', '"', '\'', ' ', '\n']).next()?;
            let (userinfo, _) = authority.rsplit_once('@')?;
            let secret = userinfo.split_once(':').map_or(userinfo, |(_, password)| password);
            (!secret.is_empty()).then(|| secret.to_owned())
        })
        .collect()
}

/// A URL with `user:password@` is refused by name, and neither `check-config` (with `--print`)
/// nor `run` ever echoes the password: the error names the setting, not the value.
#[test]
fn refused_url_credentials_are_never_echoed() {
    let mut planted = 0;
    for case in cases("invalid") {
        let mut text = std::fs::read_to_string(&case).unwrap();
        if let Ok(json) = std::fs::read_to_string(case.with_extension("jsonc")) {
            text.push_str(&json);
        }
        let passwords = url_passwords(&text);
        if passwords.is_empty() {
            continue;
        }
        planted += 1;
        let (output, _) = check(&case, &["--print"]);
        assert_eq!(output.status.code(), Some(78), "{}", case.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The webhook delivery URL keeps upstream's own wording.
        let named = stderr.contains("must not contain credentials (user:password@)")
            || stderr.contains("Webhook delivery URL must not include embedded credentials");
        assert!(named, "{}: {stderr}", case.display());
        let everything = format!("{stderr}{}", String::from_utf8_lossy(&output.stdout));
        for password in &passwords {
            assert!(!everything.contains(password.as_str()), "{}: echoed {password}: {everything}", case.display());
        }
    }
    assert!(planted >= 3, "the Cloud, public and Bot API credential cases plant a password");

    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/invalid/cloud-url-credentials.env");
    let dir = support::TempDir::new("golden-credentials-run");
    let output = support::command(&dir.0, &[])
        .args(["run", "--log-level", "debug"])
        .args(env_file_args(&case))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "open-cowork-gateway: configuration error: OPEN_COWORK_CLOUD_BASE_URL must not contain credentials \
         (user:password@); the gateway authenticates with OPEN_COWORK_GATEWAY_SERVICE_TOKEN.\n"
    );
    assert!(output.stdout.is_empty());
}
