//! The configuration text parsers (env file, JSONC) never panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::config::env::parse_env_file;
use open_cowork_gateway::config::file::parse_jsonc;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = parse_env_file(text);
        let _ = parse_jsonc(text);
    }
});
