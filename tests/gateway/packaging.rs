//! Appliance packaging: every env file `setup` writes passes `check-config` (a channel this build
//! cannot run is refused by `setup` itself, exit 64), the systemd unit
//! and the launchd plist carry what operators rely on, and `scripts/install --root` lays out
//! the files with the right modes. The Debian package: its unit mirrors the source unit, its
//! maintainer scripts start the gateway only once check-config passes, the built .deb files hold
//! the layout (0600 conffile, libc floor, lintian clean) and a dpkg upgrade keeps the operator's
//! configuration.

use crate::support;
use crate::tooling;

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
    let slack = [
        "--provider",
        "slack",
        "--slack-bot-token",
        "xoxb-1234-5678-abcdefghijklmnop",
        "--slack-signing-secret",
        "8f742231b10e8888abcd99yyyzzz85a5",
        "--public-url",
        "https://bot.example.com",
    ];
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
        ("remote-slack", [&cloud[..], &token, &slack].concat()),
        ("local-slack", [&["--mode", "local"][..], &token, &slack].concat()),
        ("local-telegram-polling", [&["--mode", "local"][..], &token, &telegram].concat()),
        ("local-telegram-webhook", [&["--mode", "local"][..], &token, &telegram, &webhook].concat()),
        ("local-fake", [&["--mode", "local", "--provider", "fake"][..], &token].concat()),
        (
            "remote-email",
            [
                &cloud[..],
                &token,
                &[
                    "--provider",
                    "email",
                    "--email-from",
                    "Agent <agent@example.com>",
                    "--smtp-host",
                    "smtp.example.com",
                ],
                &["--smtp-port", "587", "--smtp-username", "agent", "--smtp-password", "smtp-password-0123"],
            ]
            .concat(),
        ),
        (
            "local-email-public-secure-given-secret",
            [
                &["--mode", "local"][..],
                &token,
                &["--provider", "email", "--email-from", "agent@example.com", "--smtp-host", "smtp.example.com"],
                &[
                    "--smtp-secure",
                    "--inbound-secret",
                    "relay-inbound-0123456789",
                    "--public-url",
                    "https://mail.example.com",
                ],
            ]
            .concat(),
        ),
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
        } else if name.contains("slack") {
            ("slack", cfg!(feature = "slack"))
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

// ---------------------------------------------------------------------------------------------
// The Debian package (scripts/package, deploy/debian, [package.metadata.deb]).

const DEB_ARCHES: [&str; 3] = ["amd64", "arm64", "armhf"];

fn deb_path(arch: &str) -> std::path::PathBuf {
    let revision = "1";
    Path::new(ROOT)
        .join(format!("target/debian/open-cowork-gateway_{}-{revision}_{arch}.deb", env!("CARGO_PKG_VERSION")))
}

/// The unit without comments and with the binary path normalized.
fn unit_body(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.replace("/usr/local/bin/open-cowork-gateway", "/usr/bin/open-cowork-gateway"))
        .collect()
}

#[test]
fn packaged_unit_is_the_source_unit_with_the_package_binary_path() {
    let packaged = std::fs::read_to_string(Path::new(ROOT).join("deploy/debian/open-cowork-gateway.service")).unwrap();
    assert_eq!(
        unit_body(&packaged),
        unit_body(&unit_text()),
        "edit systemd/open-cowork-gateway.service, then mirror it"
    );
    assert_eq!(unit_value(&packaged, "ExecStart"), ["/usr/bin/open-cowork-gateway run --log-format journald"]);
}

#[test]
fn debian_changelog_and_metadata_track_cargo_toml() {
    let changelog = std::fs::read_to_string(Path::new(ROOT).join("deploy/debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap();
    assert_eq!(first.split_whitespace().nth(1), Some(format!("({}-1)", env!("CARGO_PKG_VERSION")).as_str()), "{first}");
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    assert!(manifest.contains("started only once that file passes"), "the description says when the unit starts");
    let template = std::fs::read_to_string(Path::new(ROOT).join("deploy/debian/gateway.env")).unwrap();
    assert!(template.lines().all(|l| l.is_empty() || l.starts_with('#')), "the conffile template sets nothing");
}

/// A PATH with stubs for systemctl and deb-systemd-invoke that log their arguments, and the
/// test build of the binary as `open-cowork-gateway`.
struct Stubs {
    dir: support::TempDir,
}

impl Stubs {
    fn new(active: bool) -> Self {
        let dir = support::TempDir::new("stubs");
        let bin = dir.0.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let log = dir.0.join("calls.log");
        let is_active = if active { 0 } else { 3 };
        for (name, body) in [
            (
                "systemctl",
                format!(
                    "echo \"systemctl $*\" >> {}\ncase \"$*\" in *is-active*) exit {is_active} ;; esac\nexit 0\n",
                    log.display()
                ),
            ),
            ("deb-systemd-invoke", format!("echo \"deb-systemd-invoke $*\" >> {}\n", log.display())),
            ("deb-systemd-helper", format!("echo \"deb-systemd-helper $*\" >> {}\n", log.display())),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::os::unix::fs::symlink(support::BINARY, bin.join("open-cowork-gateway")).unwrap();
        Self { dir }
    }

    fn path(&self) -> String {
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.dir.0.join("bin").display())
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("calls.log")).unwrap_or_default()
    }
}

fn write_env(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn valid_env_text() -> String {
    support::base_env().iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn the_package_starts_the_gateway_only_once_check_config_passes() {
    let helper = Path::new(ROOT).join("deploy/debian/start-if-configured");
    let run_helper = |stubs: &Stubs, env_file: &Path| {
        Command::new(&helper).arg(env_file).env_clear().env("PATH", stubs.path()).output().unwrap()
    };
    let dir = support::TempDir::new("start-if-configured");
    let template = dir.0.join("template.env");
    write_env(&template, &std::fs::read_to_string(Path::new(ROOT).join("deploy/debian/gateway.env")).unwrap());
    let valid = dir.0.join("valid.env");
    write_env(&valid, &valid_env_text());

    // Fresh install: the commented template fails check-config, so nothing is started, and the
    // message says how to configure it. The package install itself still succeeds.
    let stubs = Stubs::new(false);
    let output = run_helper(&stubs, &template);
    assert_eq!(output.status.code(), Some(0));
    assert!(!stubs.calls().contains("deb-systemd-invoke"), "{}", stubs.calls());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not (re)started") && stderr.contains("open-cowork-gateway setup --force"), "{stderr}");

    // Configured and stopped: started.
    let stubs = Stubs::new(false);
    assert_eq!(run_helper(&stubs, &valid).status.code(), Some(0));
    assert!(stubs.calls().contains("deb-systemd-invoke start open-cowork-gateway.service"), "{}", stubs.calls());

    // Upgrade of a running gateway with a valid configuration: restarted on the new binary.
    let stubs = Stubs::new(true);
    assert_eq!(run_helper(&stubs, &valid).status.code(), Some(0));
    assert!(stubs.calls().contains("deb-systemd-invoke restart open-cowork-gateway.service"), "{}", stubs.calls());

    // Upgrade of a running gateway whose configuration the new version rejects: left running.
    let stubs = Stubs::new(true);
    let output = run_helper(&stubs, &template);
    assert!(!stubs.calls().contains("deb-systemd-invoke"), "{}", stubs.calls());
    assert!(String::from_utf8_lossy(&output.stderr).contains("left as it is"));
}

#[test]
fn maintainer_scripts_under_dpkg_root_touch_files_only() {
    let scripts = Path::new(ROOT).join("deploy/debian/maintainer-scripts");
    let root = support::TempDir::new("dpkg-root");
    std::fs::create_dir_all(root.0.join("etc/open-cowork")).unwrap();
    let env_file = root.0.join("etc/open-cowork/gateway.env");
    std::fs::write(&env_file, "# edited with a sloppy umask\n").unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stubs = Stubs::new(false);
    let postinst = Command::new(scripts.join("postinst"))
        .arg("configure")
        .env("DPKG_ROOT", &root.0)
        .env("PATH", stubs.path())
        .output()
        .unwrap();
    assert!(postinst.status.success(), "{postinst:?}");
    assert_eq!(mode(&env_file), 0o600, "the tokens are root's alone");
    assert_eq!(mode(&root.0.join("etc/open-cowork")), 0o750);
    assert_eq!(stubs.calls(), "", "an install into another root leaves the running systemd alone");

    std::fs::create_dir_all(root.0.join("var/lib/private/open-cowork-gateway")).unwrap();
    std::fs::remove_file(&env_file).unwrap();
    let purge = Command::new(scripts.join("postrm"))
        .arg("purge")
        .env("DPKG_ROOT", &root.0)
        .env("PATH", stubs.path())
        .output()
        .unwrap();
    assert!(purge.status.success(), "{purge:?}");
    assert!(!root.0.join("var/lib/private/open-cowork-gateway").exists(), "purge drops the state");
    assert!(!root.0.join("etc/open-cowork").exists());
}

/// Highest `GLIBC_x.y` symbol version a binary references.
fn glibc_floor(binary: &[u8]) -> Option<(u32, u32)> {
    let mut best = None;
    for (i, _) in binary.windows(8).enumerate().filter(|(_, w)| *w == b"GLIBC_2.") {
        let digits: String = binary[i + 6..]
            .iter()
            .take(8)
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .map(|b| *b as char)
            .collect();
        let mut parts = digits.split('.').filter_map(|p| p.parse::<u32>().ok());
        if let (Some(major), Some(minor)) = (parts.next(), parts.next()) {
            best = best.max(Some((major, minor)));
        }
    }
    best
}

#[test]
#[ignore = "needs the .deb files of scripts/package, dpkg-deb and lintian; .ci/run builds and runs this"]
fn debian_packages_hold_the_service_layout_and_pass_lintian() {
    let built: Vec<&str> = DEB_ARCHES.iter().copied().filter(|arch| deb_path(arch).exists()).collect();
    tooling::require(built.len() == DEB_ARCHES.len(), "the three .deb files", "run scripts/package");
    tooling::require(tooling::has_tool("dpkg-deb", &["--version"]), "dpkg-deb", "a Debian system");
    let lintian = tooling::has_tool("lintian", &["--version"]);
    tooling::require(lintian, "lintian", "apt-get install lintian");
    for arch in built {
        let deb = deb_path(arch);
        let field =
            |name: &str| tooling::run(Command::new("dpkg-deb").arg("--field").arg(&deb).arg(name)).trim().to_owned();
        assert_eq!(field("Package"), "open-cowork-gateway");
        assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")), "the version comes from Cargo.toml");
        assert_eq!(field("Architecture"), arch);
        let depends = field("Depends");
        assert!(field("Description").contains("check-config"), "the description says when it starts");

        let work = support::TempDir::new("deb");
        tooling::run(Command::new("dpkg-deb").arg("--raw-extract").arg(&deb).arg(&work.0));
        let control = work.0.join("DEBIAN");
        assert_eq!(std::fs::read_to_string(control.join("conffiles")).unwrap().trim(), "/etc/open-cowork/gateway.env");
        for script in ["postinst", "prerm", "postrm"] {
            assert_eq!(mode(&control.join(script)), 0o755, "{arch}: {script}");
        }
        let listing = tooling::run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
        let entry = |path: &str| {
            listing.lines().find(|l| l.ends_with(path)).unwrap_or_else(|| panic!("{arch}: {path} missing"))
        };
        let root_owned = |line: &str| line.contains(" 0/0 ") || line.contains(" root/root ");
        let conffile = entry("./etc/open-cowork/gateway.env");
        assert!(conffile.starts_with("-rw------- ") && root_owned(conffile), "{arch}: conffile 0600: {conffile}");
        let binary = entry("./usr/bin/open-cowork-gateway");
        assert!(binary.starts_with("-rwxr-xr-x ") && root_owned(binary), "{arch}: {binary}");
        assert!(entry("./usr/libexec/open-cowork-gateway/start-if-configured").starts_with("-rwxr-xr-x"));
        assert!(entry("./usr/share/man/man1/open-cowork-gateway.1.gz").starts_with("-rw-r--r--"));
        let unit = std::fs::read_to_string(work.0.join("lib/systemd/system/open-cowork-gateway.service")).unwrap();
        assert_eq!(
            unit,
            std::fs::read_to_string(Path::new(ROOT).join("deploy/debian/open-cowork-gateway.service")).unwrap()
        );

        // The libc floor in Depends covers every glibc symbol the binary uses (musl: no libc).
        let binary = std::fs::read(work.0.join("usr/bin/open-cowork-gateway")).unwrap();
        match glibc_floor(&binary) {
            None => assert!(!depends.contains("libc6"), "{arch}: static, yet {depends}"),
            Some((major, minor)) => {
                let floor = depends.split("libc6 (>= ").nth(1).and_then(|r| r.split(')').next()).unwrap();
                let (fmajor, fminor) = floor.split_once('.').unwrap();
                let floor = (fmajor.parse::<u32>().unwrap(), fminor.parse::<u32>().unwrap());
                assert!((major, minor) <= floor, "{arch}: needs GLIBC_{major}.{minor}, Depends says {depends}");
            }
        }

        if lintian {
            let report = Command::new("lintian").args(["--fail-on", "error,warning"]).arg(&deb).output().unwrap();
            assert!(report.status.success(), "{arch}: {}", String::from_utf8_lossy(&report.stdout));
        }
    }
}

#[test]
#[ignore = "needs the amd64 .deb of scripts/package, dpkg and root; .ci/run builds and runs this"]
fn dpkg_upgrades_keep_the_operators_configuration() {
    let deb = deb_path("amd64");
    tooling::require(deb.exists(), "the amd64 .deb", "run scripts/package amd64");
    tooling::require(tooling::has_tool("dpkg", &["--version"]), "dpkg", "a Debian system");
    tooling::require(tooling::is_root(), "root", "installing into a dpkg root needs root");
    let work = support::TempDir::new("dpkg");
    let root = work.0.join("root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
    // The maintainer scripts run on this machine with DPKG_ROOT set: files only, no systemd.
    let dpkg = |args: &[&str]| {
        let mut command = Command::new("dpkg");
        command.arg(format!("--root={}", root.display())).args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ]);
        command.args(args);
        tooling::run(&mut command)
    };
    dpkg(&["--install", deb.to_str().unwrap()]);
    let env_file = root.join("etc/open-cowork/gateway.env");
    assert_eq!(mode(&env_file), 0o600);
    assert_eq!(mode(&root.join("usr/bin/open-cowork-gateway")), 0o755);

    // The operator configures it (with a sloppy mode), then a new version is installed over it.
    std::fs::write(&env_file, valid_env_text()).unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let unpacked = work.0.join("next");
    tooling::run(Command::new("dpkg-deb").arg("--raw-extract").arg(&deb).arg(&unpacked));
    let control_path = unpacked.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path).unwrap();
    let version = format!("{}-1", env!("CARGO_PKG_VERSION"));
    std::fs::write(&control_path, control.replace(&format!("Version: {version}"), &format!("Version: {version}+next")))
        .unwrap();
    let next = work.0.join("next.deb");
    tooling::run(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&unpacked).arg(&next));
    dpkg(&["--install", next.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), valid_env_text(), "an upgrade never overwrites it");
    assert_eq!(mode(&env_file), 0o600);
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains(&format!("Version: {version}+next")), "{status}");

    // Purge removes the conffile and the now empty /etc/open-cowork.
    dpkg(&["--purge", "open-cowork-gateway"]);
    assert!(!env_file.exists());
    assert!(!root.join("etc/open-cowork").exists());
    assert!(!root.join("usr/bin/open-cowork-gateway").exists());
}
