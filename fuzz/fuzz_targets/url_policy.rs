//! The outbound URL policy never panics, and whatever it accepts is consistent: a non-local
//! accepted URL is HTTPS, carries no credentials, and (without the private switch) never names a
//! blocked or metadata address literal; every answer set it pins passes the range checks.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::net::url_policy::{check_answers, check_delivery_url, is_blocked, is_metadata, UrlPolicy};

fuzz_target!(|input: &[u8]| {
    let policy = UrlPolicy::default();
    if let Ok(text) = std::str::from_utf8(input) {
        if let Ok(url) = check_delivery_url(text, &policy) {
            if !url.local {
                assert_eq!(url.uri.scheme_str(), Some("https"));
                if let Ok(literal) = url.host.parse::<IpAddr>() {
                    assert!(!is_blocked(literal) && !is_metadata(literal), "{text}");
                }
            }
            assert!(!url.uri.authority().is_some_and(|a| a.as_str().contains('@')));
        }
    }
    // Interpret the bytes as a list of IPv6 answers (IPv4 as mapped forms).
    let answers: Vec<IpAddr> = input
        .chunks_exact(16)
        .map(|chunk| {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(chunk);
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        })
        .collect();
    if let Ok(url) = check_delivery_url("https://relay.example.com/in", &policy) {
        if let Ok(first) = check_answers(&url, &policy, &answers) {
            assert_eq!(Some(&first), answers.first());
            assert!(answers.iter().all(|a| !is_blocked(*a) && !is_metadata(*a)));
        }
    }
});
