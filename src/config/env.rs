//! The environment the configuration is read from: a snapshot of the process environment,
//! optionally completed by an env file (`--env-file`: how launchd or a wrapper supplies env-only
//! settings), plus the value-parsing helpers shared by env and JSON values.
//!
//! The process environment is never modified: the env file only fills a map that the resolver
//! reads, so tests can build an [`Env`] by hand.

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

/// An env file larger than this is refused: it is a handful of `KEY=value` lines.
const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// The variables configuration is resolved from.
#[derive(Debug, Default, Clone)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Snapshot of the process environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Raw value, untrimmed.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Spec "String": trimmed, and empty counts as unset.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.raw(name).and_then(non_blank)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Adds the env file's variables that the environment does not already define: values in the
    /// real environment win, so an operator can override one line without editing the file.
    pub fn merge_env_file(&mut self, path: &Path, allow_insecure: bool) -> Result<(), ConfigError> {
        let shown = path.display();
        let metadata = std::fs::metadata(path).map_err(|e| {
            ConfigError::new(format!("Cannot read env file {shown} (--env-file / OPEN_COWORK_GATEWAY_ENV_FILE): {e}."))
        })?;
        if !metadata.is_file() {
            return Err(ConfigError::new(format!("Env file {shown} is not a regular file.")));
        }
        if metadata.len() > MAX_ENV_FILE_BYTES {
            return Err(ConfigError::new(format!(
                "Env file {shown} is larger than 1 MiB; it should hold KEY=value lines only."
            )));
        }
        check_env_file_mode(path, &metadata, allow_insecure)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("Cannot read env file {shown}: {e}.")))?;
        for (key, value) in parse_env_file(&text).map_err(|e| ConfigError::new(format!("Env file {shown} {e}")))? {
            self.vars.entry(key).or_insert(value);
        }
        Ok(())
    }
}

#[cfg(unix)]
fn check_env_file_mode(path: &Path, metadata: &std::fs::Metadata, allow_insecure: bool) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o066 != 0 && !allow_insecure {
        return Err(ConfigError::new(format!(
            "Env file {} has mode {mode:03o}: it holds secrets and must not be readable or writable by group or others. \
             Run `chmod 600 {}` or pass --allow-insecure-env-file.",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_env_file_mode(_: &Path, _: &std::fs::Metadata, _: bool) -> Result<(), ConfigError> {
    Ok(())
}

/// Parses `KEY=VALUE` lines: blank lines and `#` comments are skipped, an optional `export `
/// prefix is accepted, and a value may be wrapped in single quotes (literal) or double quotes
/// (`\"`, `\\` and `\n` escapes). Unquoted values are trimmed. The error names the line.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {number}: expected KEY=value."));
        };
        let key = key.trim();
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || key.as_bytes()[0].is_ascii_digit()
        {
            return Err(format!("line {number}: {key:?} is not a valid variable name."));
        }
        let value = unquote(value.trim()).map_err(|e| format!("line {number} ({key}): {e}."))?;
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

fn unquote(value: &str) -> Result<String, &'static str> {
    if let Some(rest) = value.strip_prefix('\'') {
        return rest.strip_suffix('\'').map(str::to_owned).ok_or("unterminated single quote");
    }
    let Some(rest) = value.strip_prefix('"') else {
        return Ok(value.to_owned());
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                return if chars.as_str().trim().is_empty() {
                    Ok(out)
                } else {
                    Err("text after the closing double quote")
                };
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other @ ('"' | '\\')) => out.push(other),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            other => out.push(other),
        }
    }
    Err("unterminated double quote")
}

/// Spec "String": trimmed; empty or whitespace-only counts as unset.
pub fn non_blank(value: &str) -> Option<&str> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// Spec "Boolean" for a string: `true|1|yes` / `false|0|no`, case-insensitive; anything else is
/// `None` so the caller falls through to the next layer.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// A JavaScript `Number(x)` that is an integer: `"42"`, `" 42 "`, `"1e3"`, but not `"1.5"`,
/// `"abc"` or `"Infinity"`.
pub fn parse_integer(value: &str) -> Option<i64> {
    let trimmed = value.trim();
    if let Ok(n) = trimmed.parse::<i64>() {
        return Some(n);
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    let float = trimmed.parse::<f64>().ok()?;
    (float.is_finite() && float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_comments_and_quotes() {
        let text = "# comment\n\nA=1\nexport B = two words \nC='it''s'\nD=\"line\\nnext \\\"q\\\"\"\nE=\nF='# not a comment'\n";
        let pairs = parse_env_file(text).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "it''s".into()),
                ("D".into(), "line\nnext \"q\"".into()),
                ("E".into(), "".into()),
                ("F".into(), "# not a comment".into()),
            ]
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        assert_eq!(parse_env_file("A=1\nnot a pair\n").unwrap_err(), "line 2: expected KEY=value.");
        assert!(parse_env_file("1A=x").unwrap_err().starts_with("line 1:"));
        assert!(parse_env_file("A='open").unwrap_err().contains("unterminated single quote"));
        assert!(parse_env_file("A=\"open").unwrap_err().contains("unterminated double quote"));
        assert!(parse_env_file("A=\"x\" tail").unwrap_err().contains("after the closing"));
    }

    #[test]
    fn real_environment_wins_over_env_file() {
        let dir = std::env::temp_dir().join(format!("ocg-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.env");
        std::fs::write(&path, "A=file\nB=file\n").unwrap();
        let mut env = Env::from_pairs([("A", "real")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = env.merge_env_file(&path, false).unwrap_err();
            assert!(refused.to_string().contains("chmod 600"), "{refused}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        env.merge_env_file(&path, false).unwrap();
        assert_eq!(env.raw("A"), Some("real"));
        assert_eq!(env.raw("B"), Some("file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn value_helpers() {
        assert_eq!(non_blank("  x "), Some("x"));
        assert_eq!(non_blank(" \t"), None);
        assert_eq!(parse_bool(" YES "), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_integer(" 42 "), Some(42));
        assert_eq!(parse_integer("1e3"), Some(1000));
        assert_eq!(parse_integer("-5"), Some(-5));
        assert_eq!(parse_integer("1.5"), None);
        assert_eq!(parse_integer("abc"), None);
        assert_eq!(parse_integer("Infinity"), None);
    }
}
