//! The client source used as the rate-limit key: the socket address, or the
//! forwarded client when the peer is a trusted proxy.

use std::net::IpAddr;

use http::HeaderMap;

/// A parsed CIDR block. Entries that do not parse are dropped: upstream lets them never match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `v6/n`, or a bare address (full-length prefix).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_match(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_match(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_match(network: &[u8], ip: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if network[..full] != ip[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        network[full] & mask == ip[full] & mask
    }
}

/// Parses an address as proxies write it: `[v6]:port`, `v4:port`, a `%zone` suffix, and
/// IPv4-mapped IPv6 turned into IPv4.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let host = if let Some(rest) = text.strip_prefix('[') {
        rest.split(']').next()?
    } else if text.matches(':').count() == 1 {
        text.split(':').next()?
    } else {
        text
    };
    let host = host.split('%').next()?;
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The rate-limit source for a request from `peer`.
pub fn resolve_client_source(peer: IpAddr, headers: &HeaderMap, trust_proxy_headers: bool, trusted: &[Cidr]) -> String {
    let peer = peer.to_canonical();
    let peer_trusted = trust_proxy_headers && !trusted.is_empty() && trusted.iter().any(|c| c.contains(peer));
    if !peer_trusted {
        return peer.to_string();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let forwarded = header("forwarded").map(|value| {
        value
            .split(',')
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    key.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"').to_owned())
                })
            })
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
    });
    let xff = header("x-forwarded-for").map(|value| value.split(',').map(|v| v.trim().to_owned()).collect::<Vec<_>>());
    let from_forwarded = forwarded.and_then(|chain| resolve_chain(&chain, trusted));
    let from_xff = xff.and_then(|chain| resolve_chain(&chain, trusted));
    match (from_forwarded, from_xff) {
        (Some(a), Some(b)) if a != b => peer.to_string(),
        (Some(ip), _) | (None, Some(ip)) => ip.to_string(),
        (None, None) => peer.to_string(),
    }
}

/// Right to left, the first hop that is not a trusted proxy; the leftmost if all are trusted.
/// Any unparseable hop discards the chain.
fn resolve_chain(chain: &[String], trusted: &[Cidr]) -> Option<IpAddr> {
    let hops: Vec<IpAddr> = chain.iter().map(|hop| parse_ip(hop)).collect::<Option<_>>()?;
    hops.iter().rev().find(|ip| !trusted.iter().any(|c| c.contains(**ip))).or(hops.first()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().filter_map(|c| Cidr::parse(c)).collect()
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()), "versions must match");
        assert!(Cidr::parse("192.168.1.7").unwrap().contains("192.168.1.7".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/12").unwrap().contains("10.15.255.255".parse().unwrap()));
        assert!(!Cidr::parse("10.0.0.0/12").unwrap().contains("10.16.0.0".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "nonsense"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ip_forms() {
        assert_eq!(parse_ip("[2001:DB8::1]:443"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_ip("203.0.113.9:1234"), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(parse_ip("fe80::1%eth0"), Some("fe80::1".parse().unwrap()));
        assert_eq!(parse_ip("::ffff:192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(parse_ip("unknown"), None);
        assert_eq!(parse_ip("2001:db8:0:0:0:0:0:1").unwrap().to_string(), "2001:db8::1");
    }

    #[test]
    fn trusted_proxy_resolves_xff() {
        let trusted = cidrs(&["127.0.0.0/8"]);
        let a =
            resolve_client_source(LOCAL, &headers(&[("x-forwarded-for", "203.0.113.10, 127.0.0.2")]), true, &trusted);
        let b = resolve_client_source(LOCAL, &headers(&[("x-forwarded-for", "198.51.100.7")]), true, &trusted);
        assert_eq!(a, "203.0.113.10");
        assert_eq!(b, "198.51.100.7");
        let all_trusted =
            resolve_client_source(LOCAL, &headers(&[("x-forwarded-for", "127.0.0.9, 127.0.0.2")]), true, &trusted);
        assert_eq!(all_trusted, "127.0.0.9");
    }

    #[test]
    fn untrusted_peer_ignores_spoofed_headers() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        for spoof in ["1.1.1.1", "2.2.2.2"] {
            assert_eq!(
                resolve_client_source(LOCAL, &headers(&[("x-forwarded-for", spoof)]), true, &trusted),
                "127.0.0.1"
            );
        }
        assert_eq!(
            resolve_client_source(LOCAL, &headers(&[("x-forwarded-for", "1.1.1.1")]), false, &cidrs(&["127.0.0.0/8"])),
            "127.0.0.1"
        );
        assert_eq!(resolve_client_source(LOCAL, &headers(&[("x-forwarded-for", "1.1.1.1")]), true, &[]), "127.0.0.1");
    }

    #[test]
    fn forwarded_header_and_disagreement() {
        let trusted = cidrs(&["127.0.0.0/8"]);
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https, for=127.0.0.3")]);
        assert_eq!(resolve_client_source(LOCAL, &forwarded, true, &trusted), "2001:db8::7");
        let disagree = headers(&[("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "198.51.100.2")]);
        assert_eq!(resolve_client_source(LOCAL, &disagree, true, &trusted), "127.0.0.1");
        let agree = headers(&[("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(resolve_client_source(LOCAL, &agree, true, &trusted), "198.51.100.1");
        let garbage = headers(&[("x-forwarded-for", "198.51.100.1, _hidden")]);
        assert_eq!(resolve_client_source(LOCAL, &garbage, true, &trusted), "127.0.0.1");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(resolve_client_source(mapped, &headers(&[]), true, &trusted), "127.0.0.1");
    }
}
