//! Operator authorization (upstream's `isAdminRequest`): the admin token as a bearer token or in
//! `x-open-cowork-gateway-admin-token`, or the loopback bypass when it is allowed.

use crate::util::ct::constant_time_equal;
use std::net::IpAddr;

use http::header::{AUTHORIZATION, HOST};
use http::HeaderMap;

use crate::config::urls::is_loopback_host;
use crate::config::Config;

const ADMIN_TOKEN_HEADER: &str = "x-open-cowork-gateway-admin-token";
const PROXY_HEADERS: [&str; 4] = ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];

/// [`is_admin_request`] for a whole request head: on the loopback bypass an absolute-form target
/// (`GET http://host/metrics`) must name a loopback host, the one the `Host` header names, so a
/// request meant for another host cannot pass as a local operator.
pub fn is_admin_head(config: &Config, headers: &HeaderMap, uri: &http::Uri, remote: Option<IpAddr>) -> bool {
    if config.server.admin_token.is_none() {
        if let Some(authority) = uri.authority() {
            let named = host_name(authority.as_str());
            let host = headers.get(HOST).and_then(|v| v.to_str().ok()).map(host_name);
            if !is_loopback_host(named) || host.is_some_and(|h| !h.eq_ignore_ascii_case(named)) {
                return false;
            }
        }
    }
    is_admin_request(config, headers, remote)
}

/// Whether an admin token was presented at all (a wrong one counts as a guess).
pub fn presents_token(headers: &HeaderMap) -> bool {
    presented_token(headers).is_some_and(|token| !token.is_empty())
}

/// Whether the request may use operator endpoints. `remote` is the socket peer address.
fn is_admin_request(config: &Config, headers: &HeaderMap, remote: Option<IpAddr>) -> bool {
    match &config.server.admin_token {
        Some(token) => presented_token(headers).is_some_and(|presented| constant_time_equal(presented, token.expose())),
        None => config.server.allow_loopback_operator_bypass && is_loopback_bypass_request(config, headers, remote),
    }
}

/// A `Bearer` authorization wins over the dedicated header, even when it is wrong.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if value.len() >= 7 && value[..7].eq_ignore_ascii_case("bearer ") {
            return Some(value[7..].trim());
        }
    }
    headers.get(ADMIN_TOKEN_HEADER).and_then(|v| v.to_str().ok())
}

fn is_loopback_bypass_request(config: &Config, headers: &HeaderMap, remote: Option<IpAddr>) -> bool {
    if !is_loopback_host(&config.server.host) || config.server.public_base_url.is_some() {
        return false;
    }
    if PROXY_HEADERS.iter().any(|name| headers.contains_key(*name)) {
        return false;
    }
    // The peer address as Node prints it: an IPv4-mapped IPv6 address is not loopback.
    let Some(remote) = remote else { return false };
    if !is_loopback_host(&remote.to_string()) {
        return false;
    }
    let host_header = match headers.get(HOST) {
        Some(value) => match value.to_str() {
            Ok(text) => host_name(text).to_owned(),
            Err(_) => return false,
        },
        None => config.server.host.clone(),
    };
    is_loopback_host(&host_header)
}

/// The hostname of a `Host` header or URI authority: user info dropped, `[v6]` kept whole,
/// otherwise the part before `:`.
fn host_name(host: &str) -> &str {
    let host = host.rsplit_once('@').map_or(host, |(_, after)| after);
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absolute_form_target_must_name_the_loopback_listener_on_the_bypass() {
        let config = config(None, true, &[]);
        let loopback_host = headers(&[("host", "127.0.0.1:8790")]);
        let uri = |text: &str| text.parse::<http::Uri>().unwrap();
        assert!(is_admin_head(&config, &loopback_host, &uri("/metrics"), LOOPBACK));
        assert!(is_admin_head(&config, &loopback_host, &uri("http://127.0.0.1:8790/metrics"), LOOPBACK));
        assert!(!is_admin_head(&config, &loopback_host, &uri("http://evil.example/metrics"), LOOPBACK));
        assert!(!is_admin_head(&config, &loopback_host, &uri("http://localhost:8790/metrics"), LOOPBACK));
        assert!(presents_token(&headers(&[("authorization", "Bearer guess")])));
        assert!(!presents_token(&headers(&[])));
    }
    use crate::config::{resolve, Env};
    use http::HeaderValue;

    fn config(admin_token: Option<&str>, bypass: bool, extra: &[(&str, &str)]) -> Config {
        let mut env = Env::from_pairs([
            ("OPEN_COWORK_CLOUD_BASE_URL", "http://127.0.0.1:1"),
            ("OPEN_COWORK_GATEWAY_SERVICE_TOKEN", "occ_a_b"),
            ("OPEN_COWORK_GATEWAY_ENABLE_FAKE_PROVIDER", "true"),
        ]);
        if let Some(token) = admin_token {
            env.set("OPEN_COWORK_GATEWAY_ADMIN_TOKEN", token);
        }
        if bypass {
            env.set("OPEN_COWORK_GATEWAY_ALLOW_LOOPBACK_OPERATOR_BYPASS", "true");
        }
        for (k, v) in extra {
            env.set(*k, *v);
        }
        resolve(&serde_json::json!({}), &env, crate::config::test_kinds()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn token_by_bearer_or_header() {
        let config = config(Some("admin-secret-1"), false, &[]);
        assert!(is_admin_request(&config, &headers(&[("authorization", "Bearer admin-secret-1")]), LOOPBACK));
        assert!(is_admin_request(&config, &headers(&[("authorization", "bEaReR   admin-secret-1  ")]), LOOPBACK));
        assert!(is_admin_request(
            &config,
            &headers(&[("x-open-cowork-gateway-admin-token", "admin-secret-1")]),
            LOOPBACK
        ));
        assert!(!is_admin_request(&config, &headers(&[]), LOOPBACK));
        assert!(!is_admin_request(&config, &headers(&[("authorization", "Bearer wrong")]), LOOPBACK));
        assert!(!is_admin_request(&config, &headers(&[("authorization", "Basic admin-secret-1")]), LOOPBACK));
    }

    #[test]
    fn wrong_bearer_beats_a_correct_header() {
        let config = config(Some("admin-secret-1"), false, &[]);
        let request =
            headers(&[("authorization", "Bearer wrong"), ("x-open-cowork-gateway-admin-token", "admin-secret-1")]);
        assert!(!is_admin_request(&config, &request, LOOPBACK));
    }

    #[test]
    fn a_non_bearer_authorization_falls_back_to_the_header() {
        let config = config(Some("admin-secret-1"), false, &[]);
        let request =
            headers(&[("authorization", "Basic xyz"), ("x-open-cowork-gateway-admin-token", "admin-secret-1")]);
        assert!(is_admin_request(&config, &request, LOOPBACK));
    }

    #[test]
    fn bypass_is_never_consulted_when_a_token_is_configured() {
        let config = config(Some("admin-secret-1"), true, &[]);
        assert!(!is_admin_request(&config, &headers(&[("host", "127.0.0.1:8790")]), LOOPBACK));
    }

    #[test]
    fn constant_time_compare_rules() {
        assert!(constant_time_equal("abc", "abc"));
        assert!(!constant_time_equal("", ""));
        assert!(!constant_time_equal("abc", "abcd"));
        assert!(!constant_time_equal("abd", "abc"));
    }

    #[test]
    fn loopback_bypass_conditions() {
        let config = config(None, true, &[]);
        let ok = headers(&[("host", "127.0.0.1:8790")]);
        assert!(is_admin_request(&config, &ok, LOOPBACK));
        assert!(is_admin_request(&config, &headers(&[("host", "localhost")]), LOOPBACK));
        assert!(is_admin_request(&config, &headers(&[("host", "[::1]:8790")]), Some("::1".parse().unwrap())));
        assert!(is_admin_request(&config, &headers(&[]), LOOPBACK), "no Host header uses the configured host");
        for proxy in PROXY_HEADERS {
            assert!(!is_admin_request(&config, &headers(&[("host", "127.0.0.1"), (proxy, "x")]), LOOPBACK), "{proxy}");
        }
        assert!(!is_admin_request(&config, &ok, None), "unknown peer fails closed");
        assert!(!is_admin_request(&config, &ok, Some("10.1.2.3".parse().unwrap())));
        assert!(
            !is_admin_request(&config, &ok, Some("::ffff:127.0.0.1".parse().unwrap())),
            "IPv4-mapped is not loopback"
        );
        assert!(!is_admin_request(&config, &headers(&[("host", "127.attacker.example")]), LOOPBACK));
        assert!(!is_admin_request(&config, &headers(&[("host", "gateway.example.com:8790")]), LOOPBACK));
    }

    #[test]
    fn without_token_or_bypass_nobody_is_admin() {
        // Only reachable through resolve() with the bypass; check the bypass flag is required.
        let mut config = config(None, true, &[]);
        config.server.allow_loopback_operator_bypass = false;
        assert!(!is_admin_request(&config, &headers(&[("host", "127.0.0.1")]), LOOPBACK));
    }
}
