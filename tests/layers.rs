//! The crate's layers only point down, and the core never names a channel kind.
//!
//! Layers, bottom to top: `util`, `time`, `shutdown`, `notify`, `signals` · `net` ·
//! `config` · `logging`, `metrics` · `cloud`, `channel` · `providers`, `render` · `runtime` ·
//! `http` · `app`, `devcloud`, `setup`, `doctor` · `cli`. A module may use modules of lower layers only;
//! modules of one layer do not use each other. Test modules (`#[cfg(test)] mod tests`) are left
//! out: a test may reach for anything, the dev Cloud included.
//!
//! The kind names (`telegram`, `slack`, …) and `ProviderKind` variants may appear only under
//! `providers/`, `config/` and the tools that are not part of the running gateway (`setup`, `cli`,
//! `devcloud`, `main`): a channel is added there without touching the core.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["util", "time", "shutdown", "notify", "signals"],
    &["net"],
    &["config"],
    &["logging", "metrics"],
    &["cloud", "channel"],
    &["providers", "render"],
    &["runtime"],
    &["http"],
    &["app", "devcloud", "setup", "doctor"],
    &["cli"],
];

/// Where a kind may not be named: the core.
const CORE: &[&str] = &["runtime", "http", "cloud", "render", "channel", "app"];

const KIND_WORDS: &[&str] = &["telegram", "slack", "discord", "whatsapp", "email", "e-mail"];
const KIND_VARIANTS: &[&str] =
    &["Telegram", "Slack", "Email", "Webhook", "Discord", "Whatsapp", "Signal", "Cli", "Fake"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's text without its unit-test module (`#[cfg(test)]`, maybe more attributes, then
/// `mod tests`).
fn without_tests(text: &str) -> &str {
    for (at, _) in text.match_indices("\n#[cfg(test)]\n") {
        let after = text[at + 1..].lines().skip(1).find(|line| !line.starts_with("#["));
        if after.is_some_and(|line| line.starts_with("mod tests")) {
            return &text[..at];
        }
    }
    text
}

/// `(top-level module, file text without tests)` for every file under `src/` but the binary.
fn sources() -> Vec<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            let module = relative.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
            if module == "main" || module == "lib" {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Some((module, relative, without_tests(&text).to_owned()))
        })
        .collect()
}

/// The crate modules a text refers to as `crate::<module>` (crate-root constants such as
/// `crate::VERSION` are not modules and belong to no layer).
fn referenced_modules(text: &str) -> Vec<String> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .filter(|name: &String| name.starts_with(|c: char| c.is_ascii_lowercase()))
        .collect()
}

#[test]
fn every_module_is_placed_in_a_layer() {
    for (module, relative, _) in sources() {
        assert!(layer_of(&module).is_some(), "{relative}: module `{module}` is in no layer of tests/layers.rs");
    }
}

#[test]
fn imports_only_point_down() {
    let mut violations = Vec::new();
    for (module, relative, text) in sources() {
        let Some(own) = layer_of(&module) else { continue };
        for used in referenced_modules(&text) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(_) => {
                    violations.push(format!("{relative}: `{module}` uses `crate::{used}`, which is not below it"))
                }
                None => violations.push(format!("{relative}: `crate::{used}` is in no layer")),
            }
        }
    }
    assert!(violations.is_empty(), "imports that point up or sideways:\n{}", violations.join("\n"));
}

#[test]
fn the_core_never_names_a_channel_kind() {
    let mut violations = Vec::new();
    for (module, relative, text) in sources() {
        if !CORE.contains(&module.as_str()) {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            let lower = line.to_ascii_lowercase();
            let word = KIND_WORDS.iter().find(|w| lower.contains(*w));
            let variant = KIND_VARIANTS.iter().find(|v| line.contains(&format!("ProviderKind::{v}")));
            if let Some(kind) = word.copied().or(variant.copied()) {
                violations.push(format!("{relative}:{}: names `{kind}`: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(violations.is_empty(), "channel kinds named in the core:\n{}", violations.join("\n"));
}

#[test]
fn the_checks_see_a_violation() {
    assert_eq!(referenced_modules("use crate::http::x; crate::util::y; crate::VERSION"), ["http", "util"]);
    assert_eq!(without_tests("a\n#[cfg(test)]\nmod tests {}"), "a");
    assert_eq!(without_tests("a\n#[cfg(test)]\n#[cfg(feature = \"x\")]\nmod tests {}"), "a");
    assert_eq!(without_tests("a\n#[cfg(test)]\nfn helper() {}"), "a\n#[cfg(test)]\nfn helper() {}");
    assert!(layer_of("runtime") > layer_of("providers"));
}
