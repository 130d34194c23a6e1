//! The container image (deploy/container/Containerfile): built with podman from the musl cross
//! builds for amd64 and arm64, its root filesystem holds the binary and the state directory and
//! nothing else (no shell), the binary answers `version` from that root, and the image config
//! carries the numeric user, SIGTERM, the state volume and a curl-free health check.
//! Podman here can build images but not run containers, so the test runs the binary from the
//! mounted image root (chrooted into it when the test runs as root).

use crate::tooling;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use tooling::{cross_binary, has_tool, is_root, require, run, ROOT};

const ARCHES: [(&str, &str); 2] = [("amd64", "x86_64-unknown-linux-musl"), ("arm64", "aarch64-unknown-linux-musl")];

/// Untags the test's images, and unmounts them, however the test ends. Untag only (`rmi` without
/// --force): the same layers give the operator's own `scripts/container` images the same IDs.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("podman").args(["image", "unmount", image]).output();
            let _ = Command::new("podman").args(["rmi", image]).output();
        }
    }
}

/// A blob of an OCI archive, by digest.
fn archive_blob(archive: &Path, digest: &str) -> Value {
    let member = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    serde_json::from_str(&run(Command::new("tar").arg("-xOf").arg(archive).arg(member))).unwrap()
}

fn listing(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if path.is_dir() && !path.is_symlink() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
#[ignore = "needs podman and the musl cross builds; .ci/run installs and builds them and runs this"]
fn container_image_builds_for_both_architectures_and_runs_from_its_root() {
    require(has_tool("podman", &["--version"]), "podman", "apt-get install podman");
    for (arch, triple) in ARCHES {
        let how = format!("scripts/cross-build {triple} (scripts/container builds it)");
        require(cross_binary(triple).exists(), &format!("the {arch} musl build"), &how);
    }
    let tag = format!("localhost/open-cowork-gateway-test:{}", std::process::id());
    let _images = Images(ARCHES.iter().map(|(arch, _)| format!("{tag}-{arch}")).collect());

    // The script: stages both architectures, builds one image each and writes the
    // multi-architecture image (an OCI image index) as an archive.
    run(Command::new(Path::new(ROOT).join("scripts/container")).args(["--no-build", "--tag", &tag]));
    let archive =
        Path::new(ROOT).join(format!("target/container/open-cowork-gateway-{}.oci.tar", env!("CARGO_PKG_VERSION")));
    let index: Value =
        serde_json::from_str(&run(Command::new("tar").arg("-xOf").arg(&archive).arg("index.json"))).unwrap();
    let list = archive_blob(&archive, index["manifests"][0]["digest"].as_str().unwrap());
    let mut platforms: Vec<&str> =
        list["manifests"].as_array().unwrap().iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    platforms.sort_unstable();
    assert_eq!(platforms, ["amd64", "arm64"], "{list}");

    for (arch, _) in ARCHES {
        let image = format!("{tag}-{arch}");
        let inspect: serde_json::Value =
            serde_json::from_str(&run(Command::new("podman").args(["image", "inspect", &image]))).unwrap();
        let image_info = &inspect[0];
        assert_eq!(image_info["Architecture"], arch);
        let config = &image_info["Config"];
        assert_eq!(config["User"], "65532:65532", "a numeric non-root user");
        assert_eq!(config["StopSignal"], "SIGTERM");
        assert!(config["Volumes"].get("/var/lib/open-cowork-gateway").is_some(), "{config}");
        assert_eq!(config["Entrypoint"], serde_json::json!(["/open-cowork-gateway"]));
        let env: Vec<&str> = config["Env"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(env.contains(&"OPEN_COWORK_GATEWAY_STATE_DIR=/var/lib/open-cowork-gateway"), "{env:?}");
        let health: Vec<&str> =
            image_info["Healthcheck"]["Test"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(&health[..3], ["CMD", "/open-cowork-gateway", "probe"], "exec form, no shell, no curl");

        let mount = run(Command::new("podman").args(["image", "mount", &image])).trim().to_owned();
        let root = Path::new(&mount);
        assert_eq!(
            listing(root),
            ["open-cowork-gateway", "var", "var/lib", "var/lib/open-cowork-gateway"],
            "only the binary and the state directory: no shell, no libc"
        );
        let state = std::fs::metadata(root.join("var/lib/open-cowork-gateway")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&state), 65532, "the state volume is the runtime user's");

        // The binary answers `version` from the image's own root filesystem.
        let binary = root.join("open-cowork-gateway");
        let version = match arch {
            "amd64" if is_root() => {
                Some(run(Command::new("chroot").arg(root).args(["/open-cowork-gateway", "version"])))
            }
            "amd64" => Some(run(Command::new(&binary).arg("version"))),
            _ if has_tool("qemu-aarch64-static", &["--version"]) => {
                Some(run(Command::new("qemu-aarch64-static").arg(&binary).arg("version")))
            }
            _ => None,
        };
        let triple = if arch == "amd64" { "x86_64-unknown-linux-musl" } else { "aarch64-unknown-linux-musl" };
        match version {
            Some(version) => {
                assert_eq!(version.trim(), format!("open-cowork-gateway {} ({triple})", env!("CARGO_PKG_VERSION")))
            }
            None => eprintln!("qemu-aarch64-static is missing: the arm64 image's binary was not run"),
        }

        if arch == "amd64" && is_root() {
            // The health check command itself, run in the image root: nothing listens, so exit 1.
            let probe = Command::new("chroot")
                .arg(root)
                .args(["/open-cowork-gateway", "probe", "--url", "http://127.0.0.1:9", "--timeout-ms", "500"])
                .output()
                .unwrap();
            assert_eq!(probe.status.code(), Some(1), "{probe:?}");
        }
        run(Command::new("podman").args(["image", "unmount", &image]));
    }
}

#[test]
fn containerfile_keeps_its_promises() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("deploy/container/Containerfile")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    assert!(lines.iter().any(|l| l.trim() == "FROM scratch"), "static binary on scratch");
    assert!(!lines.iter().any(|l| l.trim_start().starts_with("RUN")), "no RUN: no shell at build or run time");
    assert!(lines.iter().any(|l| l.trim() == "USER 65532:65532"));
    assert!(lines.iter().any(|l| l.trim() == "STOPSIGNAL SIGTERM"));
    assert!(!text.contains("curl") || text.contains("no curl"), "the health check uses the binary's probe");
}
