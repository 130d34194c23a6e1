//! Kubernetes (deploy/kubernetes) and Compose (deploy/compose): every shard overlay renders with
//! `kubectl kustomize` into one single-replica Recreate Deployment with its own bindings and
//! Secret, the probes, the drain-aware grace period and the locked-down pod; the shards never share
//! a binding; and the configuration each one hands the gateway passes `check-config`. The Compose
//! file binds loopback only, runs read-only and checks health with the binary's probe.

use crate::support;
use crate::tooling;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use tooling::{has_tool, require, run, ROOT};

/// YAML (one or more documents) to JSON through python3's yaml module, which CI installs
/// (python3-yaml): the crate itself has no YAML parser and needs none.
fn yaml_documents(text: &str) -> Vec<Value> {
    let script = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with the yaml module (apt-get install python3-yaml)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn has_yaml() -> bool {
    has_tool("python3", &["-c", "import yaml"])
}

/// "48Mi" → bytes.
fn quantity(text: &str) -> u64 {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let factor = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unexpected unit {other}"),
    };
    number.parse::<u64>().unwrap() * factor
}

/// The values a shard's Secret would hold, by key (placeholders in the shape check-config wants).
fn placeholder_secret(key: &str) -> &'static str {
    match key {
        k if k.ends_with("SERVICE_TOKEN") => "occ_tok_abcdefghijkl_0123456789",
        k if k.ends_with("ADMIN_TOKEN") => "admin-0123456789abcdefghij",
        k if k.ends_with("TELEGRAM_BOT_TOKEN") => "123456789:AAbbccddeeffgghhiijjkkllmmnnoopp",
        k if k.ends_with("WEBHOOK_SECRET") => "tg-secret-0123456789",
        other => panic!("no placeholder for secret key {other}"),
    }
}

fn check_config(env: &BTreeMap<String, String>) -> std::process::Output {
    let dir = support::TempDir::new("deploy-check");
    let state = dir.0.join("state");
    std::fs::create_dir(&state).unwrap();
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The state directory is a volume in the pod; here a scratch directory stands in.
    pairs.retain(|(k, _)| *k != "OPEN_COWORK_GATEWAY_STATE_DIR");
    let state_text = state.to_str().unwrap().to_owned();
    pairs.push(("OPEN_COWORK_GATEWAY_STATE_DIR", &state_text));
    support::command(&dir.0, &pairs).arg("check-config").output().unwrap()
}

#[test]
#[ignore = "needs kubectl (kustomize) and python3's yaml module; .ci/run installs them and runs this"]
fn every_shard_overlay_renders_one_locked_down_single_replica_gateway() {
    require(has_tool("kubectl", &["version", "--client"]), "kubectl", "apt-get install kubernetes-client");
    require(has_yaml(), "python3's yaml module", "apt-get install python3-yaml");
    let overlays = Path::new(ROOT).join("deploy/kubernetes/overlays");
    let mut shards: Vec<String> =
        std::fs::read_dir(&overlays).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    shards.sort();
    assert!(shards.len() >= 2, "at least two example shards: {shards:?}");

    let version = env!("CARGO_PKG_VERSION");
    let mut bindings_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for shard in &shards {
        let dir = overlays.join(shard);
        let rendered = run(Command::new("kubectl").arg("kustomize").arg(&dir));
        let documents = yaml_documents(&rendered);
        let of_kind =
            |kind: &str| -> Vec<&Value> { documents.iter().filter(|d| d["kind"] == kind).collect::<Vec<_>>() };

        let deployments = of_kind("Deployment");
        assert_eq!(deployments.len(), 1, "{shard}: one Deployment per shard");
        let deployment = deployments[0];
        assert!(names.insert(deployment["metadata"]["name"].as_str().unwrap().to_owned()), "{shard}: unique name");
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 1, "{shard}: two pods would own one shard's streams");
        assert_eq!(spec["strategy"]["type"], "Recreate", "{shard}: an upgrade never runs two pods");
        assert_eq!(spec["selector"]["matchLabels"]["open-cowork.org/shard"], shard.as_str());

        let pod = &spec["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532, "the image's numeric user");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let container = &containers[0];
        assert_eq!(container["image"], format!("registry.example.com/open-cowork/open-cowork-gateway:{version}"));
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
        let mounts: Vec<&str> =
            container["volumeMounts"].as_array().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
        assert_eq!(mounts, ["/var/lib/open-cowork-gateway"], "the only writable path: the state volume");

        // Resources from scripts/bench: 39 MB RSS with 1,000 open session streams fits the
        // request, and the limit sits above it.
        let resources = &container["resources"];
        let request = quantity(resources["requests"]["memory"].as_str().unwrap());
        let limit = quantity(resources["limits"]["memory"].as_str().unwrap());
        assert!(request >= 39_000_000 && limit > request, "{shard}: {resources}");
        assert!(resources["requests"]["cpu"].is_string() && resources["limits"]["cpu"].is_string());

        // Settings: the shard's ConfigMap plus its Secret, which the overlay names.
        let env_from = container["envFrom"].as_array().unwrap();
        let secret = env_from.iter().find_map(|e| e["secretRef"]["name"].as_str()).unwrap();
        assert_eq!(secret, format!("open-cowork-gateway-{shard}"));
        let config_map_name = env_from.iter().find_map(|e| e["configMapRef"]["name"].as_str()).unwrap();
        let config_map = of_kind("ConfigMap").into_iter().find(|c| c["metadata"]["name"] == config_map_name).unwrap();
        let mut env: BTreeMap<String, String> = config_map["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(env["OPEN_COWORK_GATEWAY_INSTANCE_ID"], shard.as_str());
        assert_eq!(env["OPEN_COWORK_GATEWAY_HOST"], "0.0.0.0");
        let drain_ms: u64 = env["OPEN_COWORK_GATEWAY_SHUTDOWN_DRAIN_TIMEOUT_MS"].parse().unwrap();
        let grace_s = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace_s * 1000 >= drain_ms + 10_000, "{shard}: grace {grace_s} s must exceed the drain {drain_ms} ms");

        let bindings: Vec<(&String, &String)> =
            env.iter().filter(|(k, _)| k.ends_with("_CHANNEL_BINDING_ID")).collect();
        assert!(!bindings.is_empty(), "{shard}: the overlay sets its channel bindings");
        for (_, binding) in bindings {
            if let Some(other) = bindings_seen.insert(binding.clone(), shard.clone()) {
                panic!("binding {binding} is served by both {other} and {shard}");
            }
        }

        // The Secret's keys as the overlay documents them; with placeholders, check-config passes.
        let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
        let keys: Vec<&str> =
            kustomization.split("--from-literal=").skip(1).map(|rest| rest.split('=').next().unwrap()).collect();
        assert!(keys.contains(&"OPEN_COWORK_GATEWAY_SERVICE_TOKEN"), "{shard}: {keys:?}");
        for key in keys {
            env.insert(key.to_owned(), placeholder_secret(key).to_owned());
        }
        let checked = check_config(&env);
        assert_eq!(checked.status.code(), Some(0), "{shard}: {}", String::from_utf8_lossy(&checked.stderr));

        // Network: the base policy allows DNS and Cloud only; the shard's channel policy adds
        // HTTPS to its chat platform. Both select exactly this shard's pods.
        let policies = of_kind("NetworkPolicy");
        assert_eq!(policies.len(), 2, "{shard}");
        for policy in &policies {
            assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["open-cowork.org/shard"], shard.as_str());
            assert!(policy["spec"]["policyTypes"].as_array().unwrap().contains(&Value::from("Egress")));
        }
        let base = policies.iter().find(|p| p["metadata"]["name"] == format!("open-cowork-gateway-{shard}")).unwrap();
        let egress = base["spec"]["egress"].as_array().unwrap();
        assert_eq!(egress.len(), 2, "DNS and Cloud only: {egress:?}");
        let ports: BTreeSet<u64> = egress
            .iter()
            .flat_map(|rule| rule["ports"].as_array().unwrap().iter().map(|p| p["port"].as_u64().unwrap()))
            .collect();
        assert_eq!(ports, BTreeSet::from([53, 443]));
    }
}

#[test]
#[ignore = "needs python3's yaml module; .ci/run installs it and runs this"]
fn compose_file_binds_loopback_read_only_with_a_probe_health_check() {
    require(has_yaml(), "python3's yaml module", "apt-get install python3-yaml");
    let dir = Path::new(ROOT).join("deploy/compose");
    let compose = &yaml_documents(&std::fs::read_to_string(dir.join("compose.yaml")).unwrap())[0];
    let services = compose["services"].as_object().unwrap();
    assert_eq!(services.len(), 1);
    let gateway = &services["gateway"];
    for port in gateway["ports"].as_array().unwrap() {
        assert!(port.as_str().unwrap().starts_with("127.0.0.1:"), "published on loopback only: {port}");
    }
    assert_eq!(gateway["read_only"], true);
    assert_eq!(gateway["restart"], "unless-stopped");
    assert_eq!(gateway["user"], "65532:65532");
    assert_eq!(gateway["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(gateway["env_file"], serde_json::json!(["gateway.env"]));
    assert_eq!(gateway["stop_signal"], "SIGTERM");
    let grace: u64 = gateway["stop_grace_period"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    assert!(grace > 10, "above the 10 s default drain");
    let test: Vec<&str> =
        gateway["healthcheck"]["test"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(&test[..3], ["CMD", "/open-cowork-gateway", "probe"]);
    assert_eq!(
        gateway["image"],
        format!("registry.example.com/open-cowork/open-cowork-gateway:{}", env!("CARGO_PKG_VERSION"))
    );
    let volumes: Vec<&str> = gateway["volumes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(volumes, ["state:/var/lib/open-cowork-gateway"]);

    // The example env file plus the service's environment is a configuration check-config accepts.
    let mut env = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("gateway.env.example")).unwrap().lines() {
        if let Some((key, value)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            env.insert(key.to_owned(), value.to_owned());
        }
    }
    env.insert("OPEN_COWORK_GATEWAY_TELEGRAM_BOT_TOKEN".into(), placeholder_secret("TELEGRAM_BOT_TOKEN").into());
    env.insert("OPEN_COWORK_GATEWAY_SERVICE_TOKEN".into(), placeholder_secret("SERVICE_TOKEN").into());
    env.insert("OPEN_COWORK_GATEWAY_ADMIN_TOKEN".into(), placeholder_secret("ADMIN_TOKEN").into());
    for (key, value) in gateway["environment"].as_object().unwrap() {
        env.insert(key.clone(), value.as_str().unwrap().to_owned());
    }
    let checked = check_config(&env);
    assert_eq!(checked.status.code(), Some(0), "{}", String::from_utf8_lossy(&checked.stderr));
}
