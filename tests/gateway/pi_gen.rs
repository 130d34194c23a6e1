//! The Raspberry Pi OS image stage (board/raspberry-pi-*/pi-gen/stage-open-cowork). pi-gen itself
//! needs network access to build an image, so its scripts run here against a temporary root
//! directory (ROOTFS_DIR) with pi-gen's `on_chroot`/`copy_previous` recorded instead of run; the
//! first-boot step runs for real against that root with the real binary's check-config.

use crate::support;
use crate::tooling;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::TempDir;
use tooling::ROOT;

fn stage() -> PathBuf {
    Path::new(ROOT).join("board/raspberry-pi-64/pi-gen/stage-open-cowork")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Runs a stage script the way pi-gen's build.sh does: bash, with the helper functions exported.
/// Here they append what they were given to `calls.log` beside the root.
fn run_stage_script(script: &Path, rootfs: &Path, env: &[(&str, &str)]) -> Output {
    let log = rootfs.with_file_name("calls.log");
    let wrapper = r#"
on_chroot() { { echo "on_chroot:"; cat; } >> "$CALLS_LOG"; }
copy_previous() { echo "copy_previous" >> "$CALLS_LOG"; mkdir -p "$ROOTFS_DIR"; }
export -f on_chroot copy_previous
exec "$0"
"#;
    let mut command = Command::new("bash");
    command.arg("-c").arg(wrapper).arg(script).env("ROOTFS_DIR", rootfs).env("CALLS_LOG", &log);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn calls(rootfs: &Path) -> String {
    std::fs::read_to_string(rootfs.with_file_name("calls.log")).unwrap_or_default()
}

#[test]
fn stage_installs_the_package_and_the_first_boot_step_into_the_root() {
    // Both Pi boards use one stage; the armhf .deb is picked by pi-gen's ARCH.
    let pi32 = Path::new(ROOT).join("board/raspberry-pi-32/pi-gen/stage-open-cowork");
    assert_eq!(std::fs::canonicalize(&pi32).unwrap(), std::fs::canonicalize(stage()).unwrap());

    let work = TempDir::new("pi-gen");
    // A copy of the stage, so a package can sit in files/ as an operator would put it there.
    let copy = work.0.join("stage-open-cowork");
    let status = Command::new("cp").arg("-a").arg(stage()).arg(&copy).status().unwrap();
    assert!(status.success());
    std::fs::write(copy.join("00-gateway/files/open-cowork-gateway_0.1.0-1_armhf.deb"), b"armhf package").unwrap();
    let rootfs = work.0.join("rootfs");

    // prerun.sh starts from the previous stage's root only when there is none yet.
    let prerun = run_stage_script(&copy.join("prerun.sh"), &rootfs, &[]);
    assert!(prerun.status.success(), "{prerun:?}");
    assert_eq!(calls(&rootfs), "copy_previous\n");
    let again = run_stage_script(&copy.join("prerun.sh"), &rootfs, &[]);
    assert!(again.status.success());
    assert_eq!(calls(&rootfs), "copy_previous\n", "an existing root is kept");

    let step = copy.join("00-gateway/00-run.sh");
    let missing = run_stage_script(&step, &rootfs, &[("ARCH", "arm64")]);
    assert!(!missing.status.success(), "no arm64 package: the stage must fail, not build an image without it");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("scripts/package arm64"));

    let run = run_stage_script(&step, &rootfs, &[("ARCH", "armhf")]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(std::fs::read(rootfs.join("tmp/open-cowork-gateway.deb")).unwrap(), b"armhf package");
    assert_eq!(mode(&rootfs.join("usr/local/sbin/open-cowork-gateway-firstboot")), 0o755);
    let unit = rootfs.join("etc/systemd/system/open-cowork-gateway-firstboot.service");
    assert_eq!(mode(&unit), 0o644);
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains("Before=open-cowork-gateway.service"),
        "the env file is in place before the gateway starts"
    );
    assert!(unit_text.contains("ConditionPathExists=|/boot/firmware/open-cowork-gateway.env"));
    assert!(unit_text.contains("WantedBy=multi-user.target"));

    // In the image's chroot: install the package, then enable the gateway and the first-boot step.
    let chroot = calls(&rootfs);
    let install = chroot.find("apt-get install -y --no-install-recommends /tmp/open-cowork-gateway.deb").unwrap();
    let enable =
        chroot.find("systemctl enable open-cowork-gateway.service open-cowork-gateway-firstboot.service").unwrap();
    assert!(install < enable, "{chroot}");

    // An explicit package path wins over files/.
    let explicit = work.0.join("explicit.deb");
    std::fs::write(&explicit, b"explicit").unwrap();
    let run =
        run_stage_script(&step, &rootfs, &[("ARCH", "arm64"), ("OPEN_COWORK_GATEWAY_DEB", explicit.to_str().unwrap())]);
    assert!(run.status.success());
    assert_eq!(std::fs::read(rootfs.join("tmp/open-cowork-gateway.deb")).unwrap(), b"explicit");
}

/// Runs the first-boot script against `root`, with the test build of the binary on PATH.
fn first_boot(root: &Path) -> Output {
    let bin = root.with_file_name("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("open-cowork-gateway");
    if !link.exists() {
        std::os::unix::fs::symlink(support::BINARY, &link).unwrap();
    }
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
    Command::new(stage().join("00-gateway/files/open-cowork-gateway-firstboot"))
        .arg(root)
        .env_clear()
        .env("PATH", path)
        .output()
        .unwrap()
}

fn valid_env() -> String {
    let mut text = String::from("# dropped on the boot partition\n");
    for (key, value) in support::base_env() {
        text.push_str(&format!("{key}={value}\n"));
    }
    text
}

#[test]
fn first_boot_moves_the_env_file_off_the_boot_partition_and_checks_it() {
    let work = TempDir::new("firstboot");
    let root = work.0.join("root");
    std::fs::create_dir_all(root.join("boot/firmware")).unwrap();

    // Nothing dropped: nothing to do.
    let idle = first_boot(&root);
    assert_eq!(idle.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&idle.stdout).contains("nothing to do"));
    assert!(!root.join("etc/open-cowork/gateway.env").exists());

    // A valid file on bookworm's /boot/firmware: moved, 0600, gone from FAT, check-config OK.
    let dropped = root.join("boot/firmware/open-cowork-gateway.env");
    std::fs::write(&dropped, valid_env()).unwrap();
    std::fs::set_permissions(&dropped, std::fs::Permissions::from_mode(0o755)).unwrap(); // FAT: everything is 0755
    let moved = first_boot(&root);
    let stdout = String::from_utf8_lossy(&moved.stdout);
    assert_eq!(moved.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&moved.stderr));
    let dest = root.join("etc/open-cowork/gateway.env");
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), valid_env());
    assert_eq!(mode(&dest), 0o600);
    assert_eq!(mode(&root.join("etc/open-cowork")), 0o750);
    assert!(!dropped.exists(), "the secrets must not stay on the boot partition");
    assert!(stdout.contains("<5>moved open-cowork-gateway.env"), "{stdout}");
    assert!(stdout.contains("<5>check-config: Configuration OK"), "{stdout}");
    assert!(
        std::fs::read_dir(root.join("etc/open-cowork")).unwrap().all(|e| {
            let name = e.unwrap().file_name();
            name == "gateway.env"
        }),
        "no temp file left behind"
    );

    // A rejected file on the older /boot: still moved off FAT (it holds secrets), the previous
    // configuration kept as gateway.env.previous, the failure logged at error priority, exit 1.
    let legacy = root.join("boot/open-cowork-gateway.env");
    std::fs::write(&legacy, "OPEN_COWORK_GATEWAY_SERVICE_TOKEN=occ_tok_abcdefghijkl_0123456789\n").unwrap();
    let rejected = first_boot(&root);
    let stdout = String::from_utf8_lossy(&rejected.stdout);
    assert_eq!(rejected.status.code(), Some(1), "{stdout}");
    assert!(!legacy.exists());
    assert_eq!(mode(&dest), 0o600);
    assert!(std::fs::read_to_string(&dest).unwrap().starts_with("OPEN_COWORK_GATEWAY_SERVICE_TOKEN="));
    let previous = root.join("etc/open-cowork/gateway.env.previous");
    assert_eq!(std::fs::read_to_string(&previous).unwrap(), valid_env());
    assert_eq!(mode(&previous), 0o600);
    assert!(stdout.contains("<3>check-config rejected"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("<3>    ") && l.contains("configuration error")), "{stdout}");
}
