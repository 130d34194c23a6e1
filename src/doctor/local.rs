//! The checks that need no network: the state directory takes a file, the listener's port is free.

use std::io::ErrorKind;

use super::DoctorCheck;
use crate::config::Config;

/// Writes and removes a probe file in the state directory.
pub fn state_dir(config: &Config) -> DoctorCheck {
    let Some(dir) = &config.state_dir else {
        return DoctorCheck::pass("state directory", "none configured: nothing is kept across restarts");
    };
    let name = format!("state directory {}", dir.display());
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"doctor\n").and_then(|()| std::fs::remove_file(&probe)) {
        Ok(()) => DoctorCheck::pass(name, "writable"),
        Err(error) => DoctorCheck::fail(
            name,
            format!("not writable ({error}): create it and give it to the user the gateway runs as (systemd: StateDirectory=)."),
        ),
    }
}

/// Binds the configured listener address once and lets it go.
pub fn port(config: &Config) -> DoctorCheck {
    let (host, port) = (config.server.host.as_str(), config.server.port);
    let name = format!("listener {host}:{port}");
    if port == 0 {
        return DoctorCheck::pass(name, "port 0: the system picks a free one");
    }
    match std::net::TcpListener::bind((host, port)) {
        Ok(_) => DoctorCheck::pass(name, "free"),
        Err(error) if error.kind() == ErrorKind::AddrInUse => DoctorCheck::fail(
            name,
            "in use: is the gateway already running? Stop it (or choose another OPEN_COWORK_GATEWAY_PORT) and run doctor again.",
        ),
        Err(error) => DoctorCheck::fail(name, format!("cannot listen ({error}): check OPEN_COWORK_GATEWAY_HOST.")),
    }
}
