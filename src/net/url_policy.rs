//! The outbound URL safety policy of the generic webhook and the bridges (docs/webhook-protocol.md): a
//! relay URL comes from configuration, but the name in it is resolved by DNS the operator may not
//! control, so a URL that was safe at start can later point into the machine's own network.
//!
//! Two stages, both fail-closed:
//! - [`check_delivery_url`] needs no DNS and runs with the configuration, so a bad URL stops
//!   `check-config` and start-up (exit 78);
//! - [`resolve_pinned`] runs before **every** attempt: it resolves the host through an
//!   injectable [`Resolver`], checks every answer, and returns the one address the connection is
//!   then pinned to. [`PinnedClient`] connects only there (hyper never resolves the name a second
//!   time), while TLS still verifies the certificate against the original host name.
//!
//! Ranges are compared on parsed addresses (`std::net`), not on text prefixes, which closes the
//! gaps upstream's text matching left open (IPv4-compatible IPv6, 6to4, Teredo, site-local, the
//! 6to4 relay range) and its false match of `2001:db80::` as documentation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The resolver could not answer now (`EAI_AGAIN`, a server failure): worth retrying.
    Temporary(String),
    /// The name does not exist, or has no address.
    NotFound,
}

/// Resolves a host name to all its addresses, in the resolver's order. Injected so tests never
/// leave loopback and can script answers (a rebinding name, a mixed public/private answer).
/// Its futures run on the gateway's single thread, so they need not be `Send`.
#[async_trait(?Send)]
pub trait Resolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError>;
}

/// The system resolver (`getaddrinfo` through tokio's `lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait(?Send)]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        match tokio::net::lookup_host((host, port)).await {
            Ok(addresses) => Ok(addresses.map(|a| a.ip()).collect()),
            Err(error) => {
                // getaddrinfo's EAI_AGAIN reads "Temporary failure in name resolution"; a
                // missing name is final.
                let text = error.to_string();
                let lower = text.to_ascii_lowercase();
                if lower.contains("temporary") || lower.contains("try again") || lower.contains("servfail") {
                    Err(ResolveError::Temporary(text))
                } else {
                    Err(ResolveError::NotFound)
                }
            }
        }
    }
}

/// What the operator allowed beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `deliveryUrlAllowedHosts`, normalised (trimmed, no brackets, lower case); empty = any host.
    /// `*.example.com` matches any deeper name, never the apex.
    pub allowed_hosts: Vec<String>,
    /// `allowPrivateDelivery`: private and reserved ranges are allowed (cloud metadata never is).
    pub allow_private: bool,
}

impl UrlPolicy {
    pub fn new(allowed_hosts: &[String], allow_private: bool) -> Self {
        let allowed_hosts = allowed_hosts
            .iter()
            .map(|h| strip_brackets(h.trim()).to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Self { allowed_hosts, allow_private }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts.is_empty()
            || self.allowed_hosts.iter().any(|entry| match entry.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') => host.len() > suffix.len() && host.ends_with(suffix),
                _ => entry == host,
            })
    }
}

/// A delivery URL that passed [`check_delivery_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUrl {
    /// The URL requested: normalised host, fragment dropped, query kept.
    pub uri: Uri,
    /// The host without brackets, lower case (an IP literal in its canonical form).
    pub host: String,
    pub port: u16,
    /// `localhost`, `127.0.0.1` or `::1`: the development exception (plain `http:` allowed,
    /// private answers allowed, a public answer refused).
    pub local: bool,
}

/// A refusal, with upstream's message. `temporary` marks resolver failures worth retrying; every
/// other refusal is permanent (dead-lettered, not counted toward the circuit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: &'static str,
    pub temporary: bool,
}

const fn refuse(message: &'static str) -> PolicyError {
    PolicyError { message, temporary: false }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// The development exception: exactly these three hosts (`127.0.0.2`, `localhost.` and
/// `*.localhost` are not local).
fn is_local_host(host: &str) -> bool {
    matches!(strip_brackets(host.trim()).to_ascii_lowercase().as_str(), "localhost" | "127.0.0.1" | "::1")
}

/// A URL scheme as RFC 3986 writes one: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    text.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// WHATWG's IPv4 host parser: a host whose last label is a number is an IPv4 address in one of
/// the legacy forms (`0x7f.1`, `2130706433`, `0177.0.0.1`) or not a valid URL at all. `Ok(None)`
/// is a domain name.
fn whatwg_ipv4(host: &str) -> Result<Option<Ipv4Addr>, ()> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    let number = |part: &str| -> Option<u64> {
        if part.is_empty() {
            return None;
        }
        let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
        if digits.is_empty() {
            return Some(0);
        }
        if digits.len() > 20 {
            return Some(u64::MAX);
        }
        u64::from_str_radix(digits, radix).ok()
    };
    let Some(last) = parts.last() else { return Ok(None) };
    let last_is_number = number(last).is_some();
    if !last_is_number {
        return Ok(None);
    }
    if parts.len() > 4 {
        return Err(());
    }
    let numbers: Vec<u64> = parts.iter().map(|p| number(p)).collect::<Option<_>>().ok_or(())?;
    let (init, last) = numbers.split_at(numbers.len() - 1);
    if init.iter().any(|n| *n > 255) || last[0] >= 256u64.pow(5 - numbers.len() as u32) {
        return Err(());
    }
    let mut value = last[0];
    for (index, n) in init.iter().enumerate() {
        value += n << (8 * (3 - index));
    }
    Ok(Some(Ipv4Addr::from(value as u32)))
}

/// The configuration-time check, in upstream's order: parse (with WHATWG's IPv4 forms), scheme,
/// `https` unless local, no
/// credentials, then for non-local hosts the allowlist, cloud metadata (always) and private IP
/// literals (unless allowed). The fragment is dropped; the query is kept.
pub fn check_delivery_url(text: &str, policy: &UrlPolicy) -> Result<DeliveryUrl, PolicyError> {
    const INVALID: PolicyError = refuse("Webhook delivery URL is not a valid URL");
    let text = text.trim();
    // The scheme is read before the rest, so `file:///x` or `ftp:x` is told what to use rather
    // than that it is no URL (http::Uri cannot parse every scheme's form).
    let https = match text.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase()).as_deref() {
        Some("https") => true,
        Some("http") => false,
        Some(scheme) if is_scheme(scheme) => return Err(refuse("Webhook delivery URL must use http or https")),
        _ => return Err(INVALID),
    };
    let without_fragment = text.split_once('#').map_or(text, |(before, _)| before);
    let uri: Uri = without_fragment.parse().map_err(|_| INVALID)?;
    let authority = uri.authority().ok_or(INVALID)?.clone();
    // Credentials are named before anything else about the host, whatever the scheme.
    if authority.as_str().contains('@') {
        return Err(refuse("Webhook delivery URL must not include embedded credentials"));
    }
    let raw_host = uri.host().filter(|h| !h.is_empty()).ok_or(INVALID)?.to_ascii_lowercase();
    // Port text http::Uri would silently drop (`:99999`) makes the URL invalid, as WHATWG says.
    let after_host = authority.as_str().rsplit_once(']').map_or(authority.as_str(), |(_, rest)| rest);
    let after_host = after_host.rsplit_once('@').map_or(after_host, |(_, rest)| rest);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        if !port.is_empty() && port.parse::<u16>().is_err() {
            return Err(INVALID);
        }
    }
    let host = if raw_host.starts_with('[') {
        let address: Ipv6Addr = strip_brackets(&raw_host).parse().map_err(|_| INVALID)?;
        address.to_string()
    } else {
        match whatwg_ipv4(&raw_host).map_err(|_| INVALID)? {
            Some(address) => address.to_string(),
            None => raw_host.clone(),
        }
    };
    let local = is_local_host(&host);
    if !https && !local {
        return Err(refuse("Webhook delivery URL must use https unless it targets localhost"));
    }
    if !local {
        if !policy.host_allowed(&host) {
            return Err(refuse("Webhook delivery URL host is not allowed"));
        }
        let literal: Option<IpAddr> = host.parse().ok();
        if matches!(host.as_str(), "metadata.google.internal" | "metadata") || literal.is_some_and(is_metadata) {
            return Err(refuse("Webhook delivery URL must not target a cloud metadata endpoint"));
        }
        if !policy.allow_private && literal.is_some_and(is_blocked) {
            return Err(refuse("Webhook delivery URL must not target a private or reserved IP literal"));
        }
    }
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let authority = match uri.port_u16() {
        Some(port) => format!("{shown_host}:{port}"),
        None => shown_host,
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let scheme = if https { "https" } else { "http" };
    let uri: Uri = format!("{scheme}://{authority}{path}").parse().map_err(|_| INVALID)?;
    Ok(DeliveryUrl { uri, host, port, local })
}

/// The IPv4 address an IPv6 address carries, for the forms that reach IPv4 hosts: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but still routed by some stacks),
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002:aabb:ccdd::/48`).
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = address.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, _, _] if !address.is_unspecified() && !address.is_loopback() => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        _ => None,
    }
}

fn ipv4_blocked(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    a == 0                                          // "this network"
        || a == 10                                  // private
        || (a == 100 && (64..128).contains(&b))     // carrier-grade NAT
        || a == 127                                 // loopback
        || (a == 169 && b == 254)                   // link-local, incl. IMDS
        || (a == 172 && (16..32).contains(&b))      // private
        || (a == 192 && b == 0 && c == 0)           // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)           // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)         // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168)                   // private
        || (a == 198 && (b == 18 || b == 19))       // benchmarking
        || (a == 198 && b == 51 && c == 100)        // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)         // TEST-NET-3
        || a >= 224 // multicast, reserved, broadcast
}

/// A private, loopback, link-local, CGNAT, multicast, documentation, benchmark or reserved
/// address, IPv6 forms that embed an IPv4 address judged by that address.
pub fn is_blocked(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => ipv4_blocked(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return ipv4_blocked(v4);
            }
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00                       // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80                       // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0                       // site-local fec0::/10 (deprecated)
                || (s[0] & 0xff00) == 0xff00                       // multicast
                || (s[0] == 0x2001 && s[1] == 0x0db8)              // documentation
                || (s[0] == 0x2001 && s[1] == 0)                   // Teredo: tunnels to anywhere
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only 100::/64
        }
    }
}

/// A cloud metadata endpoint: blocked even with `allowPrivateDelivery`.
pub fn is_metadata(address: IpAddr) -> bool {
    const IMDS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
    match address {
        IpAddr::V4(v4) => v4 == IMDS,
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) || embedded_ipv4(v6) == Some(IMDS),
    }
}

/// The address to connect to for this attempt: an IP literal is judged as it is, a name is resolved
/// (a resolver that cannot answer now is a retryable network error). Every answer is checked; one
/// bad answer refuses the whole set. The caller bounds this with the attempt's timeout.
pub async fn resolve_pinned(
    url: &DeliveryUrl,
    policy: &UrlPolicy,
    resolver: &dyn Resolver,
) -> Result<SocketAddr, PolicyError> {
    let allow_private = policy.allow_private || url.local;
    if let Ok(literal) = url.host.parse::<IpAddr>() {
        if is_metadata(literal) {
            return Err(refuse("Webhook delivery URL targets a cloud metadata endpoint"));
        }
        if url.local && !is_blocked(literal) {
            return Err(refuse("Webhook delivery URL localhost resolved to a public address"));
        }
        if is_blocked(literal) && !allow_private {
            return Err(refuse("Webhook delivery URL resolved to a private or reserved address"));
        }
        return Ok(SocketAddr::new(literal, url.port));
    }
    let answers = match resolver.resolve(&url.host, url.port).await {
        Ok(answers) => answers,
        Err(ResolveError::Temporary(_)) => {
            return Err(PolicyError { message: "Webhook delivery network error", temporary: true })
        }
        Err(ResolveError::NotFound) => return Err(refuse("Webhook delivery URL host cannot be resolved")),
    };
    check_answers(url, policy, &answers).map(|address| SocketAddr::new(address, url.port))
}

/// Checks a resolver's answers (metadata never, private only when allowed, a local host only to
/// private addresses) and picks the first.
pub fn check_answers(url: &DeliveryUrl, policy: &UrlPolicy, answers: &[IpAddr]) -> Result<IpAddr, PolicyError> {
    let allow_private = policy.allow_private || url.local;
    let first = *answers.first().ok_or(refuse("Webhook delivery URL host cannot be resolved"))?;
    if answers.iter().any(|a| is_metadata(*a)) {
        return Err(refuse("Webhook delivery URL resolved to a cloud metadata endpoint"));
    }
    if !allow_private && answers.iter().any(|a| is_blocked(*a)) {
        return Err(refuse("Webhook delivery URL resolved to a private or reserved address"));
    }
    if url.local && answers.iter().any(|a| !is_blocked(*a)) {
        return Err(refuse("Webhook delivery URL localhost resolved to a public address"));
    }
    Ok(first)
}

/// hyper's resolver for one request: answers only for the checked host, and only with the checked
/// address, so the connection goes exactly where the policy looked.
#[derive(Clone)]
struct PinnedResolver {
    host: Arc<str>,
    address: SocketAddr,
}

/// The HTTP client asked for a name other than the one checked.
#[derive(Debug, thiserror::Error)]
#[error("Webhook delivery URL host changed during request")]
pub struct HostChanged;

impl tower_service::Service<Name> for PinnedResolver {
    type Response = std::iter::Once<SocketAddr>;
    type Error = HostChanged;
    type Future = std::future::Ready<Result<Self::Response, HostChanged>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), HostChanged>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let same = strip_brackets(name.as_str()).eq_ignore_ascii_case(&self.host);
        std::future::ready(if same { Ok(std::iter::once(self.address)) } else { Err(HostChanged) })
    }
}

/// Sends one request over a fresh connection to a pinned address: no pool (one connection per
/// request, as upstream), no redirects (hyper never follows them), TLS against the URL's
/// host name.
#[derive(Clone)]
pub struct PinnedClient {
    tls: Arc<rustls::ClientConfig>,
}

/// The connector of one pinned request.
type PinnedConnector = hyper_rustls::HttpsConnector<HttpConnector<PinnedResolver>>;

impl PinnedClient {
    /// A client trusting the public web roots (the shared TLS configuration of `net::https`).
    pub fn new() -> Result<Self, String> {
        Ok(Self { tls: crate::net::https::tls_config(None).map_err(|e| e.to_string())? })
    }

    /// A client trusting the public web roots and the certificates of `ca_file` (the gateway's
    /// `OPEN_COWORK_GATEWAY_CA_FILE`), so a relay behind a private CA can be reached.
    pub fn with_ca_file(ca_file: &std::path::Path) -> Result<Self, String> {
        Ok(Self { tls: crate::net::https::tls_config(Some(ca_file)).map_err(|e| e.to_string())? })
    }

    /// Sends `request` (its URI the checked URL) to `address`.
    pub async fn send(
        &self,
        url: &DeliveryUrl,
        address: SocketAddr,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let client: Client<PinnedConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(self.connector(url, address));
        client.request(request).await
    }

    /// Connects to `address` and, for `https`, completes the TLS handshake against the URL's
    /// host, without sending a request (`doctor`).
    pub async fn connect(&self, url: &DeliveryUrl, address: SocketAddr) -> Result<(), String> {
        use tower_service::Service;
        let mut connector = self.connector(url, address);
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await.map_err(|e| e.to_string())?;
        connector.call(url.uri.clone()).await.map(drop).map_err(|e| e.to_string())
    }

    fn connector(&self, url: &DeliveryUrl, address: SocketAddr) -> PinnedConnector {
        let mut http = HttpConnector::new_with_resolver(PinnedResolver { host: url.host.as_str().into(), address });
        http.enforce_http(false);
        http.set_nodelay(true);
        // A pinned address has no other address to fall back to.
        http.set_happy_eyeballs_timeout(None);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_blocked_range_and_its_neighbours() {
        // (address, blocked?) — each range's first and last address, and a public neighbour.
        let table = [
            ("0.0.0.0", true),
            ("0.255.255.255", true),
            ("1.0.0.0", false),
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("100.63.255.255", false),
            ("100.64.0.0", true),
            ("100.127.255.255", true),
            ("100.128.0.0", false),
            ("127.0.0.1", true),
            ("127.255.255.255", true),
            ("169.254.0.0", true),
            ("169.254.169.254", true),
            ("169.255.0.0", false),
            ("172.15.255.255", false),
            ("172.16.0.0", true),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("192.0.0.1", true),
            ("192.0.1.0", false),
            ("192.0.2.1", true),
            ("192.88.99.1", true),
            ("192.168.0.1", true),
            ("192.169.0.0", false),
            ("198.17.255.255", false),
            ("198.18.0.0", true),
            ("198.19.255.255", true),
            ("198.20.0.0", false),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("203.0.114.0", false),
            ("223.255.255.255", false),
            ("224.0.0.1", true),
            ("239.255.255.255", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("8.8.8.8", false),
            ("93.184.216.34", false),
            // IPv6
            ("::", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:7f00:1", true),
            ("::ffff:10.1.2.3", true),
            ("::ffff:8.8.8.8", false),
            ("::127.0.0.1", true),
            ("::7f00:1", true),
            ("::8.8.8.8", false),
            ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b::169.254.169.254", true),
            ("64:ff9b::808:808", false),
            ("2002:0a00:0001::1", true),
            ("2002:0808:0808::1", false),
            ("fc00::1", true),
            ("fdff:ffff::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("2001:db8::1", true),
            ("2001:db80::1", false),
            ("2001::1", true),
            ("100::1", true),
            ("2606:4700:4700::1111", false),
            ("2a00:1450::1", false),
        ];
        for (address, blocked) in table {
            assert_eq!(is_blocked(ip(address)), blocked, "{address}");
        }
    }

    #[test]
    fn metadata_addresses_in_every_form() {
        for address in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"] {
            assert!(is_metadata(ip(address)), "{address}");
        }
        assert!(!is_metadata(ip("8.8.8.8")));
        assert!(!is_metadata(ip("169.254.169.253")));
    }

    fn check(text: &str) -> Result<DeliveryUrl, &'static str> {
        check_delivery_url(text, &UrlPolicy::default()).map_err(|e| e.message)
    }

    #[test]
    fn construction_checks_in_the_spec_order() {
        assert_eq!(check("not a url").unwrap_err(), "Webhook delivery URL is not a valid URL");
        assert_eq!(check("https://h.example.com:99999/").unwrap_err(), "Webhook delivery URL is not a valid URL");
        assert_eq!(check("ftp://h.example.com/").unwrap_err(), "Webhook delivery URL must use http or https");
        assert_eq!(check("file:///etc/passwd").unwrap_err(), "Webhook delivery URL must use http or https");
        assert_eq!(
            check("http://user:pass@h.example.com/").unwrap_err(),
            "Webhook delivery URL must not include embedded credentials",
            "credentials are named before the https rule"
        );
        assert_eq!(
            check("http://h.example.com/").unwrap_err(),
            "Webhook delivery URL must use https unless it targets localhost"
        );
        assert_eq!(
            check("http://127.0.0.2/").unwrap_err(),
            "Webhook delivery URL must use https unless it targets localhost"
        );
        assert_eq!(
            check("https://u:p@h.example.com/").unwrap_err(),
            "Webhook delivery URL must not include embedded credentials"
        );
        assert_eq!(
            check("http://u:p@localhost:3000/").unwrap_err(),
            "Webhook delivery URL must not include embedded credentials"
        );
        for metadata in ["https://metadata.google.internal/", "https://169.254.169.254/", "https://[fd00:ec2::254]/"] {
            assert_eq!(check(metadata).unwrap_err(), "Webhook delivery URL must not target a cloud metadata endpoint");
        }
        for private in [
            "https://10.0.0.1/",
            "https://0xa.1/",
            "https://167772161/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::127.0.0.1]/",
        ] {
            assert_eq!(
                check(private).unwrap_err(),
                "Webhook delivery URL must not target a private or reserved IP literal",
                "{private}"
            );
        }
        let allowed = UrlPolicy { allow_private: true, ..UrlPolicy::default() };
        assert!(check_delivery_url("https://10.0.0.1/", &allowed).is_ok());
        assert_eq!(
            check_delivery_url("https://169.254.169.254/", &allowed).unwrap_err().message,
            "Webhook delivery URL must not target a cloud metadata endpoint",
            "metadata stays blocked with allowPrivateDelivery"
        );
        let url = check("http://LOCALHOST:3000/gateway?x=1#frag").unwrap();
        assert_eq!(
            (url.uri.to_string().as_str(), url.host.as_str(), url.port, url.local),
            ("http://localhost:3000/gateway?x=1", "localhost", 3000, true)
        );
        let url = check("https://127.attacker.example/gateway").unwrap();
        assert!(!url.local, "three labels are a name, not an IPv4 literal");
        assert_eq!(check("https://0x7f.1.2.3.4/").unwrap_err(), "Webhook delivery URL is not a valid URL");
        assert!(check("https://0x7f.1/").unwrap().local, "WHATWG turns 0x7f.1 into 127.0.0.1, which is local");
    }

    #[test]
    fn allowlist_matches_exact_hosts_and_deeper_wildcards() {
        let policy = UrlPolicy::new(&["*.example.com".into(), " [::1] ".into(), "Exact.Example.Org".into()], false);
        assert!(check_delivery_url("https://bridge.example.com/gateway", &policy).is_ok());
        assert!(check_delivery_url("https://a.b.example.com/", &policy).is_ok());
        assert!(check_delivery_url("https://exact.example.org/", &policy).is_ok());
        for refused in ["https://bridge.example.test/gateway", "https://example.com/", "https://x.exact.example.org/"] {
            assert_eq!(
                check_delivery_url(refused, &policy).unwrap_err().message,
                "Webhook delivery URL host is not allowed",
                "{refused}"
            );
        }
    }

    struct Answers(Result<Vec<IpAddr>, ResolveError>);

    #[async_trait(?Send)]
    impl Resolver for Answers {
        async fn resolve(&self, _: &str, _: u16) -> Result<Vec<IpAddr>, ResolveError> {
            self.0.clone()
        }
    }

    async fn pin(
        url: &str,
        policy: &UrlPolicy,
        answers: Result<Vec<&str>, ResolveError>,
    ) -> Result<SocketAddr, PolicyError> {
        let url = check_delivery_url(url, policy).unwrap();
        let resolver = Answers(answers.map(|list| list.into_iter().map(ip).collect()));
        resolve_pinned(&url, policy, &resolver).await
    }

    #[tokio::test]
    async fn every_answer_is_checked_and_the_first_is_pinned() {
        let strict = UrlPolicy::default();
        let open = UrlPolicy { allow_private: true, ..UrlPolicy::default() };
        let url = "https://relay.example.com/in";
        assert_eq!(
            pin(url, &strict, Ok(vec!["93.184.216.34", "8.8.8.8"])).await.unwrap(),
            "93.184.216.34:443".parse().unwrap()
        );
        let mixed = pin(url, &strict, Ok(vec!["93.184.216.34", "10.1.2.3"])).await.unwrap_err();
        assert_eq!(mixed.message, "Webhook delivery URL resolved to a private or reserved address");
        let mapped = pin(url, &strict, Ok(vec!["::ffff:192.168.1.1"])).await.unwrap_err();
        assert_eq!(mapped.message, "Webhook delivery URL resolved to a private or reserved address");
        assert!(pin(url, &open, Ok(vec!["10.1.2.3"])).await.is_ok());
        let metadata = pin(url, &open, Ok(vec!["8.8.8.8", "169.254.169.254"])).await.unwrap_err();
        assert_eq!(metadata.message, "Webhook delivery URL resolved to a cloud metadata endpoint");
        let rebound = pin("http://localhost:3000/gateway", &strict, Ok(vec!["93.184.216.34"])).await.unwrap_err();
        assert_eq!(rebound.message, "Webhook delivery URL localhost resolved to a public address");
        assert!(pin("http://localhost:3000/gateway", &strict, Ok(vec!["127.0.0.1", "::1"])).await.is_ok());
        let none = pin(url, &strict, Ok(vec![])).await.unwrap_err();
        assert_eq!(none.message, "Webhook delivery URL host cannot be resolved");
        let missing = pin(url, &strict, Err(ResolveError::NotFound)).await.unwrap_err();
        assert!(!missing.temporary);
        let again = pin(url, &strict, Err(ResolveError::Temporary("EAI_AGAIN".into()))).await.unwrap_err();
        assert!(again.temporary, "a temporary resolver failure is a network error, retried");
        let name = "https://127.attacker.example/gateway";
        assert!(pin(name, &strict, Ok(vec!["127.0.0.1"])).await.is_err());
        assert!(pin(name, &strict, Ok(vec!["93.184.216.34"])).await.is_ok());
    }

    #[test]
    fn the_pinned_resolver_answers_only_for_the_checked_host() {
        use tower_service::Service;
        let address: SocketAddr = "93.184.216.34:443".parse().unwrap();
        let mut resolver = PinnedResolver { host: "relay.example.com".into(), address };
        let answer = resolver.call("relay.example.com".parse().unwrap()).into_inner().unwrap();
        assert_eq!(answer.collect::<Vec<_>>(), [address]);
        assert!(resolver.call("other.example.com".parse().unwrap()).into_inner().is_err());
    }
}
