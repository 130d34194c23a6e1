//! Host and URL tests shared by configuration checks and operator authorization (spec §1.3).

use http::Uri;

/// `isLoopbackHost`: `localhost`, `127.0.0.1`, `::1`, `[::1]` or any `127.a.b.c` with 1–3 digit
/// parts. Exact and case-sensitive, so `127.attacker.example` is not loopback.
pub fn is_loopback_host(host: &str) -> bool {
    if matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") {
        return true;
    }
    let Some(rest) = host.strip_prefix("127.") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `isPublicBindHost`: the wildcard addresses and any non-loopback host are a public bind.
pub fn is_public_bind_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    matches!(host.as_str(), "0.0.0.0" | "::" | "[::]") || !is_loopback_host(&host)
}

/// An absolute `http:`/`https:` URL split into the parts the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    /// Lower-cased host; IPv6 keeps its brackets, as JavaScript's `URL.hostname` does.
    pub host: String,
}

/// Why a string is not an HTTP(S) URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    Unparseable,
    NotHttp,
}

/// Parses an absolute URL and requires the `http` or `https` scheme and a host.
pub fn parse_http_url(text: &str) -> Result<HttpUrl, UrlProblem> {
    let uri: Uri = text.trim().parse().map_err(|_| UrlProblem::Unparseable)?;
    let scheme = uri.scheme_str().ok_or(UrlProblem::Unparseable)?.to_ascii_lowercase();
    let host = uri.host().filter(|h| !h.is_empty()).ok_or(UrlProblem::Unparseable)?.to_ascii_lowercase();
    match scheme.as_str() {
        "https" => Ok(HttpUrl { https: true, host }),
        "http" => Ok(HttpUrl { https: false, host }),
        _ => Err(UrlProblem::NotHttp),
    }
}

/// Why a URL cannot be a public HTTPS address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicUrlProblem {
    Invalid,
    NotHttps,
    Loopback,
}

/// A public base URL: parses, uses `https:`, and is not loopback. Returns the value with
/// trailing `/` removed.
pub fn normalize_public_https_url(text: &str) -> Result<String, PublicUrlProblem> {
    let url = match parse_http_url(text) {
        Ok(url) => url,
        Err(UrlProblem::NotHttp) => return Err(PublicUrlProblem::NotHttps),
        Err(UrlProblem::Unparseable) => return Err(PublicUrlProblem::Invalid),
    };
    if !url.https {
        return Err(PublicUrlProblem::NotHttps);
    }
    if is_loopback_host(&url.host) {
        return Err(PublicUrlProblem::Loopback);
    }
    Ok(text.trim().trim_end_matches('/').to_owned())
}

/// A URL accepted for branding links: `https:` always, `mailto:` where allowed.
pub fn is_branding_url(text: &str, allow_mailto: bool) -> bool {
    if allow_mailto {
        if let Some(address) = text.strip_prefix("mailto:") {
            return !address.trim().is_empty();
        }
    }
    matches!(parse_http_url(text), Ok(HttpUrl { https: true, .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "127.0.0.1", "127.1.22.255", "::1", "[::1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "127.attacker.example",
            "LOCALHOST",
            "127.0.0",
            "127.0.0.1.2",
            "127.0.0.1234",
            "10.0.0.1",
            "::ffff:127.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn public_bind_hosts() {
        assert!(is_public_bind_host("0.0.0.0"));
        assert!(is_public_bind_host(" [::] "));
        assert!(is_public_bind_host("192.168.1.5"));
        assert!(!is_public_bind_host("127.0.0.1"));
        assert!(!is_public_bind_host("localhost"));
    }

    #[test]
    fn public_urls() {
        assert_eq!(
            normalize_public_https_url("https://gw.example.com/base/"),
            Ok("https://gw.example.com/base".into())
        );
        assert_eq!(normalize_public_https_url("http://gw.example.com"), Err(PublicUrlProblem::NotHttps));
        assert_eq!(normalize_public_https_url("ftp://gw.example.com"), Err(PublicUrlProblem::NotHttps));
        assert_eq!(normalize_public_https_url("https://127.0.0.1:8443"), Err(PublicUrlProblem::Loopback));
        assert_eq!(normalize_public_https_url("https://[::1]/"), Err(PublicUrlProblem::Loopback));
        assert_eq!(normalize_public_https_url("not a url"), Err(PublicUrlProblem::Invalid));
    }

    #[test]
    fn branding_urls() {
        assert!(is_branding_url("https://example.com/support", false));
        assert!(!is_branding_url("mailto:help@example.com", false));
        assert!(is_branding_url("mailto:help@example.com", true));
        assert!(!is_branding_url("http://example.com", true));
    }
}
