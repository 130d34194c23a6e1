//! Host and URL tests shared by configuration checks and operator authorization.

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
pub(crate) fn is_public_bind_host(host: &str) -> bool {
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

/// Why a string is not an acceptable HTTP(S) URL, in the order `parse_http_url` finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    Unparseable,
    NotHttp,
    /// `user:password@` (or just `user@`) before the host.
    Credentials,
    /// A port that is not a number from 1 to 65535.
    BadPort,
}

/// Parses an absolute URL and requires the `http` or `https` scheme, a host, no userinfo and, if a
/// port is given, one from 1 to 65535.
///
/// Userinfo is refused for every URL the gateway is configured with: a configured URL is shown by
/// `/health`, `/diagnostics` and `check-config --print`, and the HTTP client logs the URL's
/// authority (userinfo included) at debug level while never sending it as basic auth. Refusing it
/// here is the one place that keeps a password out of all of them.
///
/// `http::Uri` accepts any port text and only reports it as absent, so the port is checked here:
/// otherwise `https://cloud.example.com:99999` would load and every request would go to port 443.
pub(crate) fn parse_http_url(text: &str) -> Result<HttpUrl, UrlProblem> {
    let uri: Uri = text.trim().parse().map_err(|_| UrlProblem::Unparseable)?;
    let scheme = uri.scheme_str().ok_or(UrlProblem::Unparseable)?.to_ascii_lowercase();
    let authority = uri.authority().ok_or(UrlProblem::Unparseable)?.as_str();
    let host = uri.host().filter(|h| !h.is_empty()).ok_or(UrlProblem::Unparseable)?.to_ascii_lowercase();
    let https = match scheme.as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(UrlProblem::NotHttp),
    };
    if authority.contains('@') {
        return Err(UrlProblem::Credentials);
    }
    if !port_is_valid(authority) {
        return Err(UrlProblem::BadPort);
    }
    Ok(HttpUrl { https, host })
}

/// The port of a userinfo-free authority (`host`, `host:port`, `[v6]` or `[v6]:port`) is absent,
/// empty (the scheme's default, as WHATWG reads it) or a number from 1 to 65535. Port 0 is
/// refused: nothing can be reached there.
fn port_is_valid(authority: &str) -> bool {
    let after_host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => authority.find(':').map_or("", |colon| &authority[colon..]),
    };
    let Some(port) = after_host.strip_prefix(':') else {
        return after_host.is_empty();
    };
    port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0))
}

/// The scheme, host and port of a URL (`https://cloud.example.com:8443`), without its path: what an
/// unauthenticated answer may show of a configured URL. Text that is no URL gives an empty string.
pub(crate) fn origin(text: &str) -> String {
    match text.trim().parse::<Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                let authority = authority.as_str();
                let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, after)| after);
                format!("{}://{}", scheme.to_ascii_lowercase(), host_and_port.to_ascii_lowercase())
            }
            _ => String::new(),
        },
        Err(_) => String::new(),
    }
}

/// Why a URL cannot be a public HTTPS address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicUrlProblem {
    /// Unparseable, with userinfo, or with a bad port: the configuration checks name the last
    /// two through `parse_http_url` first, so their messages can say what to fix.
    Invalid,
    NotHttps,
    Loopback,
}

/// A public base URL: parses, uses `https:`, has no userinfo and a valid port, and is not
/// loopback. Returns the value with trailing `/` removed.
pub(crate) fn normalize_public_https_url(text: &str) -> Result<String, PublicUrlProblem> {
    let url = parse_http_url(text).map_err(|problem| match problem {
        UrlProblem::NotHttp => PublicUrlProblem::NotHttps,
        UrlProblem::Unparseable | UrlProblem::Credentials | UrlProblem::BadPort => PublicUrlProblem::Invalid,
    })?;
    if !url.https {
        return Err(PublicUrlProblem::NotHttps);
    }
    if is_loopback_host(&url.host) {
        return Err(PublicUrlProblem::Loopback);
    }
    Ok(text.trim().trim_end_matches('/').to_owned())
}

/// A URL accepted for branding links: `https:` always, `mailto:` where allowed.
pub(crate) fn is_branding_url(text: &str, allow_mailto: bool) -> bool {
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
    fn an_origin_is_scheme_host_and_port_only() {
        assert_eq!(origin("https://Cloud.example.com:8443/api/v1?x=1#f"), "https://cloud.example.com:8443");
        assert_eq!(origin("http://127.0.0.1:8787"), "http://127.0.0.1:8787");
        assert_eq!(origin("https://u:pw@cloud.example.com/p"), "https://cloud.example.com");
        assert_eq!(origin("not a url"), "");
    }

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
        assert_eq!(normalize_public_https_url("https://u:p@gw.example.com"), Err(PublicUrlProblem::Invalid));
        assert_eq!(normalize_public_https_url("https://gw.example.com:0"), Err(PublicUrlProblem::Invalid));
    }

    #[test]
    fn userinfo_is_refused_in_any_form() {
        for url in [
            "https://user:pass@cloud.example.com",
            "https://user@cloud.example.com/base",
            "https://:pass@cloud.example.com",
            "http://user:pass@127.0.0.1:8787",
            "https://user%40x:p%3Ass@cloud.example.com:8443",
            "https://u:p@[::1]:443",
        ] {
            assert_eq!(parse_http_url(url), Err(UrlProblem::Credentials), "{url}");
        }
        // An `@` after the authority is part of the path, not userinfo.
        assert!(parse_http_url("https://cloud.example.com/a@b").is_ok());
    }

    #[test]
    fn ports_must_be_1_to_65535() {
        for url in [
            "https://c.example.com:1",
            "https://c.example.com:65535/x",
            "https://c.example.com:/",
            "http://127.0.0.1:8787",
            "https://[::1]:8443",
            "https://[2001:db8::1]/",
        ] {
            assert!(parse_http_url(url).is_ok(), "{url}");
        }
        for url in [
            "https://c.example.com:99999",
            "https://c.example.com:65536",
            "https://c.example.com:0",
            "https://c.example.com:00",
            "https://c.example.com:http",
            "https://c.example.com:-1",
            "https://c.example.com:1:2",
            "https://[::1]:0",
            "https://[::1]x",
        ] {
            let problem = parse_http_url(url);
            assert!(matches!(problem, Err(UrlProblem::BadPort | UrlProblem::Unparseable)), "{url}: {problem:?}");
        }
        assert_eq!(parse_http_url("https://c.example.com:99999"), Err(UrlProblem::BadPort));
        assert_eq!(parse_http_url("https://c.example.com:0"), Err(UrlProblem::BadPort));
    }

    #[test]
    fn branding_urls() {
        assert!(is_branding_url("https://example.com/support", false));
        assert!(!is_branding_url("mailto:help@example.com", false));
        assert!(is_branding_url("mailto:help@example.com", true));
        assert!(!is_branding_url("http://example.com", true));
        assert!(!is_branding_url("https://user:pass@example.com/support", false), "/health shows branding");
    }
}
