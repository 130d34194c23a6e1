//! The JSON layers: central Open Cowork config files (JSONC, `gateway` section,
//! allow-listed `{env:NAME}` placeholders), the gateway-only file, and the inline JSON, deep-merged
//! lowest to highest, each checked against the file contract.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::env::Env;
use super::ConfigError;

/// A configuration file larger than this is refused rather than read into memory.
const MAX_CONFIG_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Keys upstream drops while merging (prototype-pollution guards); dropped here for parity.
const FORBIDDEN_KEYS: [&str; 3] = ["__proto__", "constructor", "prototype"];

fn invalid(source: &str, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(format!("Invalid gateway config JSON from {source}: {detail}"))
}

/// Loads and merges every layer. `gateway_file` is `--config`, else `OPEN_COWORK_GATEWAY_CONFIG`.
pub fn load_raw_gateway(env: &Env, cwd: &Path, gateway_file: Option<&Path>) -> Result<Value, ConfigError> {
    let mut merged = Value::Object(Map::new());
    for path in central_candidates(env, cwd) {
        if path.is_file() {
            let layer = read_central_file(&path, env)?;
            deep_merge(&mut merged, layer);
        }
    }
    let env_file = env.string("OPEN_COWORK_GATEWAY_CONFIG").map(PathBuf::from);
    if let Some(path) = gateway_file.map(Path::to_path_buf).or(env_file) {
        let source = path.display().to_string();
        let text = read_bounded(&path).map_err(|e| invalid(&source, e))?;
        let value = parse_jsonc(&text).map_err(|e| invalid(&source, e))?;
        deep_merge(&mut merged, checked_gateway_object(value, &source)?);
    }
    if let Some(inline) = env.string("OPEN_COWORK_GATEWAY_CONFIG_JSON") {
        let source = "OPEN_COWORK_GATEWAY_CONFIG_JSON";
        let value: Value = serde_json::from_str(inline).map_err(|e| invalid(source, e))?;
        deep_merge(&mut merged, checked_gateway_object(value, source)?);
    }
    Ok(merged)
}

/// Candidate central files in upstream's order, duplicates removed keeping the first occurrence.
fn central_candidates(env: &Env, cwd: &Path) -> Vec<PathBuf> {
    const NAMES: [&str; 4] = ["config.jsonc", "config.json", "open-cowork.config.jsonc", "open-cowork.config.json"];
    let mut list = vec![cwd.join("open-cowork.config.jsonc"), cwd.join("open-cowork.config.json")];
    for var in ["OPEN_COWORK_CONFIG_DIR", "OPEN_COWORK_DOWNSTREAM_ROOT"] {
        if let Some(dir) = env.string(var) {
            list.extend(NAMES.iter().map(|name| Path::new(dir).join(name)));
        }
    }
    if let Some(path) = env.string("OPEN_COWORK_CONFIG_PATH") {
        let base = path.strip_suffix(".jsonc").or_else(|| path.strip_suffix(".json")).unwrap_or(path);
        list.push(PathBuf::from(format!("{base}.jsonc")));
        list.push(PathBuf::from(format!("{base}.json")));
    }
    let mut unique: Vec<PathBuf> = Vec::with_capacity(list.len());
    for path in list {
        if !unique.contains(&path) {
            unique.push(path);
        }
    }
    unique
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if metadata.len() > MAX_CONFIG_FILE_BYTES {
        return Err("the file is larger than 4 MiB".into());
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the file: {e}"))
}

fn read_central_file(path: &Path, env: &Env) -> Result<Value, ConfigError> {
    let source = path.display().to_string();
    let text = read_bounded(path).map_err(|e| invalid(&source, e))?;
    let Value::Object(mut top) = parse_jsonc(&text).map_err(|e| invalid(&source, e))? else {
        return Err(invalid(&source, "the top level must be an object."));
    };
    let allowed: Vec<String> = match top.get("allowedEnvPlaceholders") {
        Some(Value::Array(names)) => names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let mut gateway = top.remove("gateway").unwrap_or(Value::Null);
    substitute_placeholders(&mut gateway, env, &allowed)
        .map_err(|name| invalid(&source, format!("environment placeholder {name} is not allowlisted.")))?;
    checked_gateway_object(gateway, &source)
}

/// Replaces `{env:NAME}` in every string of the value. Returns the first name that is not in the
/// allowlist.
fn substitute_placeholders(value: &mut Value, env: &Env, allowed: &[String]) -> Result<(), String> {
    match value {
        Value::String(text) if text.contains("{env:") => *text = substitute_in_text(text, env, allowed)?,
        Value::Array(items) => items.iter_mut().try_for_each(|item| substitute_placeholders(item, env, allowed))?,
        Value::Object(map) => map.values_mut().try_for_each(|item| substitute_placeholders(item, env, allowed))?,
        _ => {}
    }
    Ok(())
}

fn substitute_in_text(text: &str, env: &Env, allowed: &[String]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        let name_len = after.bytes().take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_').count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'}') {
            let name = &after[..name_len];
            if !allowed.iter().any(|a| a == name) {
                return Err(name.to_owned());
            }
            out.push_str(env.raw(name).unwrap_or(""));
            rest = &after[name_len + 1..];
        } else {
            out.push_str("{env:");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The file contract checked on every layer: no `cloud` key, no `timeouts.cloudRequestMs`, and a
/// non-object counts as `{}`.
fn checked_gateway_object(value: Value, source: &str) -> Result<Value, ConfigError> {
    let Value::Object(map) = value else {
        return Ok(Value::Object(Map::new()));
    };
    if map.contains_key("cloud") {
        return Err(invalid(source, "gateway cloud connection settings must use deployment environment variables."));
    }
    if map.get("timeouts").and_then(|t| t.get("cloudRequestMs")).is_some() {
        return Err(invalid(source, "cloudRequestMs must use OPEN_COWORK_GATEWAY_CLOUD_REQUEST_TIMEOUT_MS."));
    }
    Ok(Value::Object(map))
}

/// Objects merge key by key, everything else (arrays included) replaces the lower value.
fn deep_merge(lower: &mut Value, higher: Value) {
    match (lower, higher) {
        (Value::Object(lower_map), Value::Object(higher_map)) => {
            for (key, value) in higher_map {
                if FORBIDDEN_KEYS.contains(&key.as_str()) {
                    continue;
                }
                match lower_map.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => deep_merge(existing, value),
                    _ => {
                        lower_map.insert(key, strip_forbidden(value));
                    }
                }
            }
        }
        (lower, higher) => *lower = strip_forbidden(higher),
    }
}

fn strip_forbidden(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|key, _| !FORBIDDEN_KEYS.contains(&key.as_str()));
        for child in map.values_mut() {
            *child = strip_forbidden(std::mem::take(child));
        }
    }
    value
}

/// Parses JSON with comments (`//`, `/* */`) and trailing commas.
pub fn parse_jsonc(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(&strip_jsonc(text))
}

/// Blanks comments (keeping line numbers for parser messages) and drops trailing commas; string
/// literals are copied untouched.
fn strip_jsonc(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                out.extend_from_slice(&bytes[start..i]);
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        out.push(b'\n');
                    }
                    i += 1;
                }
                i = (i + 2).min(bytes.len());
            }
            b',' => {
                if !matches!(next_significant(bytes, i + 1), Some(b'}') | Some(b']')) {
                    out.push(b',');
                }
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    // Only whole ASCII tokens were removed, so the remaining bytes are still valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// The next byte that is neither whitespace nor inside a comment.
fn next_significant(bytes: &[u8], mut i: usize) -> Option<u8> {
    loop {
        match (bytes.get(i)?, bytes.get(i + 1)) {
            (b, _) if b.is_ascii_whitespace() => i += 1,
            (b'/', Some(b'/')) => i += bytes[i..].iter().position(|b| *b == b'\n')?,
            (b'/', Some(b'*')) => i += 2 + bytes[i + 2..].windows(2).position(|w| w == b"*/")? + 2,
            (b, _) => return Some(*b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonc_comments_and_trailing_commas() {
        let text = "{\n // line\n \"a\": \"x // not a comment\", /* block\n */ \"b\": [1, 2,],\n \"c\": {\"d\": \"\\\"/*\",},\n}";
        assert_eq!(parse_jsonc(text).unwrap(), json!({"a": "x // not a comment", "b": [1, 2], "c": {"d": "\"/*"}}));
    }

    #[test]
    fn trailing_comma_before_a_comment_is_dropped() {
        assert_eq!(parse_jsonc("[1, // last\n]").unwrap(), json!([1]));
    }

    #[test]
    fn deep_merge_replaces_arrays_and_drops_prototype_keys() {
        let mut lower = json!({"server": {"host": "a", "port": 1}, "providers": [1, 2]});
        deep_merge(
            &mut lower,
            json!({"server": {"port": 2, "__proto__": {"x": 1}}, "providers": [3], "constructor": 1}),
        );
        assert_eq!(lower, json!({"server": {"host": "a", "port": 2}, "providers": [3]}));
    }

    #[test]
    fn placeholders_need_the_allowlist() {
        let env = Env::from_pairs([("TOKEN_A", "value-a")]);
        let allowed = vec!["TOKEN_A".to_owned(), "UNSET".to_owned()];
        assert_eq!(substitute_in_text("x {env:TOKEN_A} {env:UNSET}!", &env, &allowed).unwrap(), "x value-a !");
        assert_eq!(substitute_in_text("{env:lower} {env:", &env, &allowed).unwrap(), "{env:lower} {env:");
        assert_eq!(substitute_in_text("{env:OTHER}", &env, &allowed).unwrap_err(), "OTHER");
    }

    #[test]
    fn central_files_merge_in_order_and_contract_is_checked() {
        let dir = std::env::temp_dir().join(format!("ocg-central-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("open-cowork.config.jsonc"),
            "{\"allowedEnvPlaceholders\": [\"HOST_X\"], \"gateway\": {\"server\": {\"host\": \"{env:HOST_X}\", \"port\": 1,},}}",
        )
        .unwrap();
        std::fs::write(dir.join("config.json"), "{\"gateway\": {\"server\": {\"port\": 2}}}").unwrap();
        let env = Env::from_pairs([("HOST_X", "10.0.0.1"), ("OPEN_COWORK_CONFIG_DIR", dir.to_str().unwrap())]);
        let merged = load_raw_gateway(&env, &dir, None).unwrap();
        assert_eq!(merged, json!({"server": {"host": "10.0.0.1", "port": 2}}));

        std::fs::write(dir.join("config.json"), "{\"gateway\": {\"cloud\": {}}}").unwrap();
        let err = load_raw_gateway(&env, &dir, None).unwrap_err().to_string();
        assert!(err.ends_with("gateway cloud connection settings must use deployment environment variables."), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
