//! The one outbound HTTP(S) client: hyper-util's pooled client over hyper-rustls with the ring
//! provider, webpki roots plus an optional private CA (`OPEN_COWORK_GATEWAY_CA_FILE`), HTTP/1.1
//! keep-alive, and HTTP/2 over TLS (ALPN) when the `http2` cargo feature is on. Plain `http:` is
//! accepted only where configuration allowed it (loopback or the insecure flag), which the
//! configuration checks enforce before a URL gets here.
//!
//! Two clients are built from one TLS setup: [`build_client`] for calls (pooled, and shared with
//! the providers) and [`build_stream_client`] for the per-chat session streams. Kept apart so
//! that, over HTTP/2, hundreds of long-lived session streams multiplexed on one connection can
//! never fill the peer's concurrent-stream limit in front of a claim, a prompt or an ack.
//!
//! Every client of the process (these two, and the webhook relays' pinned client) shares one
//! `tls_config` per trust set: one root store and one resumption cache, so a session stream
//! resumes the TLS session a call to the same Cloud began instead of a full handshake.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The shared client type. Cloning is cheap and shares the connection pool.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("OPEN_COWORK_GATEWAY_CA_FILE {path}: {detail}")]
    CaFile { path: String, detail: String },
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

/// Reads the PEM certificates of a private CA file; at least one is required.
pub(crate) fn load_ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpsError> {
    let error = |detail: String| HttpsError::CaFile { path: path.display().to_string(), detail };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(format!("cannot be read as PEM: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(format!("holds an invalid certificate: {e}")))?;
    if certificates.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(certificates)
}

/// Read buffer of a session stream's HTTP/1.1 connection. hyper starts at 8 KiB and grows for
/// bulk bodies; an SSE stream carries small frames, and with a thousand chats open the buffer is
/// the one per-stream cost the client lets us size. A response head must fit in it, so it stays
/// well above what Cloud and a proxy in front of it send (a few hundred bytes of headers).
const STREAM_READ_BUFFER: usize = 4096;

/// Idle connections the calls client keeps per host. Cloud's transport lets no more calls than
/// this be in flight at once, so a burst reuses them instead of opening (and, over the idle cap,
/// closing again) a connection and its TLS handshake per call. 32: as many as the webhook
/// receipts the runtime lets claim at once, so a burst of them never queues behind its own slots.
pub(crate) const CALL_CONNECTIONS: usize = 32;

/// What a client carries, which decides its pool and buffers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Traffic {
    /// Request/response calls and the delivery stream: pooled, default buffers.
    Calls,
    /// Session streams: over HTTP/1.1 a connection lives as long as its stream (a stream is
    /// dropped mid-body, which leaves nothing to reuse), so at most one is kept idle; over
    /// HTTP/2 that one pooled entry is the shared connection every stream rides on.
    Streams,
}

/// Builds the client for calls: public roots, plus the certificates of `ca_file` when given.
pub fn build_client(ca_file: Option<&Path>) -> Result<HttpsClient, HttpsError> {
    build(ca_file, Traffic::Calls)
}

/// Builds the client for session streams (same roots and TLS settings as [`build_client`]).
pub fn build_stream_client(ca_file: Option<&Path>) -> Result<HttpsClient, HttpsError> {
    build(ca_file, Traffic::Streams)
}

/// TLS resumption entries of the shared configuration: rustls keeps up to 8 TLS 1.3 tickets per
/// server, so 64 hold 8 servers (Cloud, a platform or two, webhook relays). One table for the
/// process rather than one per client (rustls' default table holds 256 entries).
const RESUMPTION_ENTRIES: usize = 64;

/// Trust sets whose configuration is kept for the next client: in a running gateway one (public
/// roots plus `OPEN_COWORK_GATEWAY_CA_FILE`, or public roots alone); the oldest goes first.
const SHARED_CONFIGS: usize = 4;

/// The configurations built so far, by the private CA certificates they trust besides the public
/// roots. Each client clones one (a shallow copy: the root store and the resumption cache stay
/// shared behind their `Arc`s) and sets its own ALPN on the copy.
static SHARED: Mutex<Vec<(Vec<CertificateDer<'static>>, Arc<ClientConfig>)>> = Mutex::new(Vec::new());

/// The process's TLS client configuration for the public roots plus the certificates of
/// `ca_file`: ring, rustls' safe default versions, no client certificate, no ALPN (each client
/// sets its own), and a resumption cache shared by every client built from it.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, HttpsError> {
    let extra = match ca_file {
        Some(path) => load_ca_certificates(path)?,
        None => Vec::new(),
    };
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, config)) = shared.iter().find(|(certificates, _)| *certificates == extra) {
        return Ok(Arc::clone(config));
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in extra.iter().cloned() {
        let path = ca_file.map(|p| p.display().to_string()).unwrap_or_default();
        roots.add(certificate).map_err(|e| HttpsError::CaFile { path, detail: e.to_string() })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.resumption = rustls::client::Resumption::in_memory_sessions(RESUMPTION_ENTRIES);
    let tls = Arc::new(tls);
    if shared.len() == SHARED_CONFIGS {
        shared.remove(0);
    }
    shared.push((extra, Arc::clone(&tls)));
    Ok(tls)
}

fn build(ca_file: Option<&Path>, traffic: Traffic) -> Result<HttpsClient, HttpsError> {
    let tls = ClientConfig::clone(&*tls_config(ca_file)?);
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    // TCP keep-alive probes (idle 30 s like Cloud's own socket, then every 10 s, 3 tries) let the
    // kernel fail a connection whose peer vanished without FIN or RST. Pooled connections are
    // then not handed out dead, and a silent connection errors within about a minute instead of
    // the kernel default of two hours; streams still have their faster byte-level silence limit.
    http.set_keepalive(Some(Duration::from_secs(30)));
    http.set_keepalive_interval(Some(Duration::from_secs(10)));
    http.set_keepalive_retries(Some(3));
    let connector = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1();
    // With `http2`, ALPN offers h2 and http/1.1 and the client follows what TLS negotiated: a
    // Cloud that speaks HTTP/2 carries every request of this client on one connection.
    #[cfg(feature = "http2")]
    let connector = connector.enable_http2();
    let connector = connector.wrap_connector(http);
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(60));
    match traffic {
        Traffic::Calls => builder.pool_max_idle_per_host(CALL_CONNECTIONS),
        Traffic::Streams => builder.pool_max_idle_per_host(1).http1_read_buf_exact_size(STREAM_READ_BUFFER),
    };
    // An HTTP/2 connection carries many requests, so a dead one costs them all: ping it while
    // idle too (20 s, answer within 10 s), the HTTP/2 counterpart of the TCP keep-alive above.
    #[cfg(feature = "http2")]
    builder
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Duration::from_secs(20))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .http2_keep_alive_while_idle(true);
    Ok(builder.build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("ocg-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = load_ca_certificates(&empty).unwrap_err().to_string();
        assert!(error.starts_with("OPEN_COWORK_GATEWAY_CA_FILE"), "{error}");
        assert!(load_ca_certificates(&dir.join("missing.pem")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_configuration_per_trust_set() {
        let public = tls_config(None).unwrap();
        assert!(Arc::ptr_eq(&public, &tls_config(None).unwrap()), "a second client shares the first one's");
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email/ca.pem");
        let private = tls_config(Some(&ca)).unwrap();
        assert!(!Arc::ptr_eq(&public, &private), "a private CA is a trust set of its own");
        assert!(Arc::ptr_eq(&private, &tls_config(Some(&ca)).unwrap()));
    }

    #[tokio::test]
    async fn builds_with_public_roots() {
        assert!(build_client(None).is_ok());
        assert!(build_stream_client(None).is_ok());
    }
}
