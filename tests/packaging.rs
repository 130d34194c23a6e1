//! Appliance packaging: every env file `setup` writes passes `check-config` (a channel this build
//! cannot run is refused by `setup` itself, exit 64), the systemd unit
//! and the launchd plist carry what operators rely on, and `scripts/install --root` lays out
//! the files with the right modes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run_setup(dir: &Path, args: &[&str]) -> std::process::Output {
    support::command(dir, &[]).arg("setup").args(args).output().unwrap()
}

#[test]
fn every_setup_combination_passes_check_config() {
    let cloud = ["--cloud-url", "https://cloud.example.com"];
    let token = ["--service-token", "occ_tok_abcdefghijkl_0123456789"];
    let telegram = ["--telegram-bot-token", "123456789:AAbbccddeeffgghhiijjkkllmmnnoopp"];
    let webhook = ["--telegram-mode", "webhook", "--public-url", "https://bot.example.com"];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("remote-telegram-polling", [&cloud[..], &token, &telegram].concat()),
        ("remote-telegram-webhook", [&cloud[..], &token, &telegram, &webhook].concat()),
        (
            "remote-telegram-webhook-given-secrets",
            [
                &cloud[..],
                &token,
                &telegram,
                &webhook,
                &["--telegram-webhook-secret", "tg-secret-0123456789", "--admin-token", "admin-0123456789abcdef"],
            ]
            .concat(),
        ),
        ("remote-fake", [&cloud[..], &token, &["--provider", "fake"]].concat()),
        ("local-telegram-polling", [&["--mode", "local"][..], &token, &telegram].concat()),
        ("local-telegram-webhook", [&["--mode", "local"][..], &token, &telegram, &webhook].concat()),
        ("local-fake", [&["--mode", "local", "--provider", "fake"][..], &token].concat()),
        (
            "remote-webhook",
            [&cloud[..], &token, &["--provider", "webhook", "--delivery-url", "https://relay.example.com/in"]].concat(),
        ),
        (
            "remote-discord-given-secret",
            [
                &cloud[..],
                &token,
                &["--provider", "discord", "--delivery-url", "https://bridge.example.com/discord"],
                &["--shared-secret", "discord-shared-0123456789"],
            ]
            .concat(),
        ),
        (
            "local-whatsapp",
            [
                &["--mode", "local"][..],
                &token,
                &["--provider", "whatsapp", "--delivery-url", "http://localhost:8091/wa"],
            ]
            .concat(),
        ),
        (
            "local-signal",
            [
                &["--mode", "local"][..],
                &token,
                &["--provider", "signal", "--delivery-url", "http://127.0.0.1:8092/signal"],
            ]
            .concat(),
        ),
    ];
    let dir = support::TempDir::new("setup");
    for (name, args) in cases {
        let output_path = dir.0.join(format!("{name}.env"));
        let mut all = args.clone();
        let path_text = output_path.to_str().unwrap().to_owned();
        all.extend(["--output", path_text.as_str()]);
        let written = run_setup(&dir.0, &all);
        // A channel this build cannot run is refused by setup itself (exit 64), so no file exists
        // that check-config would reject.
        let provider = args.windows(2).find(|pair| pair[0] == "--provider").map(|pair| pair[1]);
        let relay = provider.filter(|kind| ["webhook", "discord", "whatsapp", "signal"].contains(kind));
        let (kind, feature_on) = if name.contains("fake") {
            ("fake", cfg!(feature = "devcloud"))
        } else if let Some(relay) = relay {
            let feature_on = match relay {
                "webhook" => cfg!(feature = "webhook"),
                _ => cfg!(feature = "bridges"),
            };
            (relay, feature_on)
        } else {
            ("telegram", cfg!(feature = "telegram"))
        };
        if !feature_on {
            assert_eq!(written.status.code(), Some(64), "{name}");
            let stderr = String::from_utf8_lossy(&written.stderr);
            assert!(stderr.contains(&format!("--provider {kind} is not available")), "{name}: {stderr}");
            assert!(!output_path.exists(), "{name}: nothing written");
            continue;
        }
        assert_eq!(written.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&written.stderr));
        assert_eq!(std::fs::metadata(&output_path).unwrap().permissions().mode() & 0o777, 0o600, "{name}");
        let text = std::fs::read_to_string(&output_path).unwrap();
        assert!(
            !String::from_utf8_lossy(&written.stdout).contains("occ_tok_abcdefghijkl_0123456789"),
            "{name}: no secret on stdout"
        );
        if let Some(relay) = relay {
            let prefix = relay.to_ascii_uppercase();
            assert!(text.contains(&format!("OPEN_COWORK_GATEWAY_{prefix}_DELIVERY_URL=")), "{name}: {text}");
            assert!(text.contains(&format!("OPEN_COWORK_GATEWAY_{prefix}_SHARED_SECRET=")), "{name}: {text}");
        }
        let checked = support::command(&dir.0, &[]).args(["check-config", "--env-file", &path_text]).output().unwrap();
        assert_eq!(checked.status.code(), Some(0), "{name}: {}\n{text}", String::from_utf8_lossy(&checked.stderr));
    }
}

#[cfg(feature = "devcloud")] // it writes files for the fake channel
#[test]
fn setup_refuses_to_overwrite_or_print_secrets_and_names_bad_flags() {
    let dir = support::TempDir::new("setup-refuse");
    let path = dir.0.join("gateway.env");
    let path_text = path.to_str().unwrap();
    let args = [
        "--mode",
        "local",
        "--provider",
        "fake",
        "--service-token",
        "occ_tok_abcdefghijkl_0123456789",
        "--output",
        path_text,
    ];
    assert_eq!(run_setup(&dir.0, &args).status.code(), Some(0));
    let again = run_setup(&dir.0, &args);
    assert_eq!(again.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass --force"));
    assert_eq!(run_setup(&dir.0, &[&args[..], &["--force"]].concat()).status.code(), Some(0));
    let printed =
        run_setup(&dir.0, &["--mode", "local", "--provider", "fake", "--service-token", "occ_tok_x_y", "--print"]);
    assert_eq!(printed.status.code(), Some(64));
    assert!(printed.stdout.is_empty());
    let bad = run_setup(&dir.0, &["--telegram-mode", "push"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--telegram-mode must be one of: polling, webhook"));
    let missing = run_setup(&dir.0, &["--cloud-url", "https://c.example.com", "--service-token", "occ_x_y"]);
    let expected = if cfg!(feature = "telegram") {
        "--telegram-bot-token is required"
    } else {
        "--provider telegram is not available"
    };
    assert!(String::from_utf8_lossy(&missing.stderr).contains(expected));
}

fn unit_text() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("systemd/open-cowork-gateway.service")).unwrap()
}

fn unit_value<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).collect()
}

#[test]
fn systemd_unit_is_notify_hardened_and_verifies() {
    let text = unit_text();
    for (key, value) in [
        ("Type", "notify"),
        ("EnvironmentFile", "/etc/open-cowork/gateway.env"),
        ("RestartPreventExitStatus", "78"),
        ("StateDirectory", "open-cowork-gateway"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("DynamicUser", "yes"),
    ] {
        assert!(unit_value(&text, key).contains(&value), "{key}={value}");
    }
    assert!(unit_value(&text, "WatchdogSec").len() == 1);
    assert!(unit_value(&text, "RestrictAddressFamilies")[0].contains("AF_INET"));
    assert!(!unit_value(&text, "SystemCallFilter").is_empty());
    let stop: u64 = unit_value(&text, "TimeoutStopSec")[0].trim_end_matches('s').parse().unwrap();
    assert!(stop > 120, "TimeoutStopSec must exceed the largest drain timeout (120 s)");

    // systemd-analyze verify, when this machine has systemd's tools.
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let dir = support::TempDir::new("unit");
        let unit = dir.0.join("open-cowork-gateway.service");
        std::fs::write(&unit, text.replace("/usr/local/bin/open-cowork-gateway", support::BINARY)).unwrap();
        let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
        assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
        let security =
            Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().unwrap();
        let report = String::from_utf8_lossy(&security.stdout);
        if let Some(line) = report.lines().find(|l| l.contains("Overall exposure level")) {
            println!("{line}");
        }
    }
}

#[test]
fn launchd_plist_parses_with_the_expected_keys() {
    let plist = Path::new(ROOT).join("launchd/com.open-cowork.gateway.plist");
    let script = r#"
import json, plistlib, sys
with open(sys.argv[1], "rb") as f:
    print(json.dumps(plistlib.load(f)))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&plist)
        .output()
        .expect("python3 is needed to parse the plist");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plist: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plist["Label"], "com.open-cowork.gateway");
    let arguments: Vec<&str> =
        plist["ProgramArguments"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(arguments, ["/usr/local/bin/open-cowork-gateway", "run", "--env-file", "/etc/open-cowork/gateway.env"]);
    assert_eq!(plist["RunAtLoad"], true);
    assert!(plist.get("KeepAlive").is_some());
    assert!(plist["ThrottleInterval"].as_u64().unwrap() >= 5);
    assert!(plist["ExitTimeOut"].as_u64().unwrap() > 120, "above the largest drain timeout");
    assert_eq!(plist["StandardOutPath"], "/var/log/open-cowork/gateway.log");
    assert_eq!(plist["StandardErrorPath"], "/var/log/open-cowork/gateway-error.log");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[test]
fn install_lays_out_the_files_under_a_root() {
    for platform in ["linux", "macos"] {
        let root = support::TempDir::new("install");
        let output = Command::new(Path::new(ROOT).join("scripts/install"))
            .args(["--root", root.0.to_str().unwrap(), "--binary", support::BINARY, "--platform", platform])
            .output()
            .unwrap();
        assert!(output.status.success(), "{platform}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(mode(&root.0.join("usr/local/bin/open-cowork-gateway")), 0o755);
        assert_eq!(mode(&root.0.join("etc/open-cowork")), 0o750);
        if platform == "linux" {
            assert_eq!(mode(&root.0.join("etc/systemd/system/open-cowork-gateway.service")), 0o644);
        } else {
            assert_eq!(mode(&root.0.join("Library/LaunchDaemons/com.open-cowork.gateway.plist")), 0o644);
            assert_eq!(mode(&root.0.join("var/log/open-cowork")), 0o750);
        }
    }
}
