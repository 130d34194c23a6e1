//! Routing and strict percent-decoding never panic, and decoded parameters are valid UTF-8
//! without a stray escape.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::http::client_ip::parse_ip;
use open_cowork_gateway::http::router::route;
use open_cowork_gateway::util::percent::percent_decode;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = route(&Method::POST, text);
        let _ = route(&Method::GET, text);
        let _ = percent_decode(text);
        let _ = parse_ip(text);
    }
});
