//! The env file parser (`--env-file`, written by `setup` or by hand) never panics, every name it
//! returns is a valid variable name, and the quoting it documents round-trips: any one-line value
//! wrapped in single quotes, and any value at all written with the `\"`, `\\` and `\n` escapes
//! inside double quotes, read back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_cowork_gateway::config::env::parse_env_file;

fn valid_name(key: &str) -> bool {
    key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && key.bytes().next().is_some_and(|b| !b.is_ascii_digit())
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Ok(pairs) = parse_env_file(text) {
        assert!(pairs.len() <= text.lines().count());
        for (key, _) in &pairs {
            assert!(valid_name(key), "{key:?}");
        }
    }

    // The input as one value: escaped inside double quotes it must come back exactly.
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let file = format!("# written by the fuzzer\nexport KEY=\"{escaped}\"\n");
    assert_eq!(parse_env_file(&file), Ok(vec![("KEY".to_owned(), text.to_owned())]), "{file:?}");

    // Single quotes are literal: a value without a line break comes back as written.
    if !text.contains(['\n', '\r']) {
        let file = format!("KEY='{text}'\n");
        assert_eq!(parse_env_file(&file), Ok(vec![("KEY".to_owned(), text.to_owned())]), "{file:?}");
    }
});
