//! sd_notify (`READY=1`, `STOPPING=1`, `WATCHDOG=1`): a datagram to `$NOTIFY_SOCKET`, a no-op
//! when the variable is unset (not under systemd `Type=notify`, or on macOS).

use std::io;
use std::time::Duration;

/// Where systemd listens, resolved once at start.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<String>,
}

impl Notifier {
    pub fn from_env() -> Self {
        Self { socket: std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty()) }
    }

    pub fn disabled() -> Self {
        Self { socket: None }
    }

    /// Sends one state line; failures are returned for the caller to log, never fatal.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(path) = &self.socket else { return Ok(()) };
        send_datagram(path, state.as_bytes())
    }

    /// Half the watchdog interval systemd asked for, if it asked this process.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

#[cfg(unix)]
fn send_datagram(path: &str, payload: &[u8]) -> io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    #[cfg(target_os = "linux")]
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        return socket.send_to_addr(payload, &address).map(drop);
    }
    socket.send_to(payload, path).map(drop)
}

#[cfg(not(unix))]
fn send_datagram(_: &str, _: &[u8]) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("ocg-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier { socket: Some(path.to_string_lossy().into_owned()) };
        notifier.notify("READY=1").unwrap();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
        assert!(Notifier::disabled().notify("READY=1").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
