//! The crate's layers only point down, and the core never names a channel kind.
//!
//! Layers, bottom to top: `util`, `time`, `shutdown`, `notify`, `signals` · `net` ·
//! `config` · `logging`, `metrics` · `cloud`, `channel` · `providers`, `render` · `runtime` ·
//! `http` · `app`, `devcloud`, `setup`, `doctor` · `cli`. A module may use modules of lower layers only;
//! modules of one layer do not use each other. A name the crate root re-exports (`pub use
//! <module>::…` in `lib.rs`) counts as a use of its module, so the root is no way round the
//! rule. Test modules (`#[cfg(test)] mod tests`, inline or in a `tests.rs`) are left out: a
//! test may reach for anything, the dev Cloud included.
//!
//! The kind names (`telegram`, `slack`, …) may appear only in the core-free places: and more
//! strictly, a kind is named only in its own folder (`providers/<folder>/`, `providers/<folder>.rs`,
//! `config/providers/<folder>.rs`) and its entry in the table of kinds
//! (`providers/table_of_kinds.rs`), so a channel is added as one folder and one entry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{HashMap, HashSet};
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
            // A kind's `conformance.rs` is its side of the conformance battery: test code the
            // integration tests include, never compiled into the library; a `tests.rs` is a
            // module's unit tests kept in a file of their own.
            let test_code = relative.ends_with("/conformance.rs") || relative.ends_with("/tests.rs");
            if module == "main" || module == "lib" || test_code {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Some((module, relative, without_tests(&text).to_owned()))
        })
        .collect()
}

/// The crate root's re-exports, as `(name, module)`: `pub use providers::KINDS;` in
/// `lib.rs` makes `crate::KINDS` a way into `providers` as surely as
/// `crate::providers::KINDS`, so a lower layer could read an upper one through the root.
fn reexports_of(lib: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, keyword) in lib.match_indices("pub use ").chain(lib.match_indices("pub(crate) use ")) {
        let rest = &lib[at + keyword.len()..];
        let path = rest[..rest.find(';').unwrap_or(rest.len())].trim();
        let path = path.strip_prefix("crate::").unwrap_or(path);
        let module = path.split("::").next().unwrap_or(path).trim().to_owned();
        let names = match path.split_once('{') {
            Some((_, inside)) => inside.trim_end_matches('}').split(',').map(str::trim).collect(),
            None => vec![path],
        };
        for name in names.into_iter().filter(|name| !name.is_empty()) {
            let name = name.rsplit(" as ").next().unwrap_or(name);
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            found.push((name.to_owned(), module.clone()));
        }
    }
    found
}

fn root_reexports() -> Vec<(String, String)> {
    reexports_of(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap())
}

/// The crate modules a text refers to as `crate::<module>`, or through a re-export of the crate
/// root (`crate::KINDS` for `pub use providers::KINDS`). Crate-root items of its own, such
/// as `crate::VERSION`, are not modules and belong to no layer.
fn referenced_modules(text: &str, reexports: &[(String, String)]) -> Vec<String> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        })
        .filter_map(|name: String| match reexports.iter().find(|(reexported, _)| *reexported == name) {
            Some((_, module)) => Some(module.clone()),
            None => name.starts_with(|c: char| c.is_ascii_lowercase()).then_some(name),
        })
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
    let reexports = root_reexports();
    let mut violations = Vec::new();
    for (module, relative, text) in sources() {
        let Some(own) = layer_of(&module) else { continue };
        for used in referenced_modules(&text, &reexports) {
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
            if let Some(kind) = KIND_WORDS.iter().find(|w| lower.contains(*w)) {
                violations.push(format!("{relative}:{}: names `{kind}`: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(violations.is_empty(), "channel kinds named in the core:\n{}", violations.join("\n"));
}

/// The table of kinds as `(kind, folder)`: a folder's entry opens with `<folder> [always] {`, and
/// each of its kinds is a line `<kind> if "<feature>" …` (the bridges live in the webhook's folder).
fn table_of_kinds() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers/table_of_kinds.rs");
    let table = std::fs::read_to_string(path).unwrap();
    let mut kinds = Vec::new();
    let mut folder = String::new();
    for line in table.lines().map(str::trim).filter(|line| !line.starts_with("//")) {
        let mut rest = line;
        if let Some((head, after)) = line.split_once('{') {
            let head = head.split_whitespace().next().unwrap_or_default();
            if head != "kinds!" {
                folder = head.to_owned();
            }
            rest = after;
        }
        if let Some((kind, _)) = rest.split_once(" if \"") {
            kinds.push((kind.trim().to_owned(), folder.clone()));
        }
    }
    assert!(kinds.len() >= 5, "the table of kinds was not read: {kinds:?}");
    kinds
}

/// Kind names that are also words of the gateway's own (HTTP webhooks, Unix signals, the command
/// line, e-mail addresses, test doubles): for them only what can only mean the kind counts.
const AMBIGUOUS: &[&str] = &["webhook", "signal", "cli", "email", "fake"];

/// Files (or folders, by prefix) that may name a kind that is not theirs, and why.
const ALLOWED: &[(&str, &str, &str)] = &[
    ("providers/fake", "cli", "the fake provider stands in for the CLI channel"),
    ("config/providers/telegram.rs", "webhook", "Telegram's webhook mode"),
    ("providers/telegram/", "webhook", "Telegram's webhook mode"),
    ("config/mod.rs", "webhook", "timeouts.webhookDeliveryMs, the global attempt timeout of relay deliveries"),
    ("config/mod.rs", "fake", "OPEN_COWORK_GATEWAY_ALLOW_PUBLIC_FAKE_PROVIDER, the deployment-safety switch"),
    ("providers/mod.rs", "cli", "the factory's CLI output and input hooks (tests and the demo)"),
    ("providers/mod.rs", "fake", "the factory's record of fake channels (tests and the demo)"),
    ("providers/mod.rs", "webhook", "the factory's relay resolver and retry hooks (tests)"),
];

/// Splits `TelegramSettings`, `telegram_mode`, `OPEN_COWORK_GATEWAY_TELEGRAM_MODE` or
/// `--telegram-mode` into lower-case words.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for part in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut word = String::new();
        let chars: Vec<char> = part.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            if c.is_ascii_uppercase() && !word.is_empty() && (prev_lower || next_lower) {
                words.push(std::mem::take(&mut word).to_ascii_lowercase());
            }
            word.push(*c);
        }
        if !word.is_empty() {
            words.push(word.to_ascii_lowercase());
        }
    }
    words
}

/// The code of a file without comments, and its string literals, as `(code, strings)`.
fn code_and_strings(text: &str) -> (String, Vec<String>) {
    let (mut code, mut strings) = (String::new(), Vec::new());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].find('"').unwrap();
            let close = format!("\"{}", "#".repeat(hashes));
            let end = rest[hashes + 2..].find(&close).unwrap() + hashes + 2;
            strings.push(rest[hashes + 2..end].to_owned());
            i += end + close.len();
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            strings.push(rest[1..j].to_owned());
            i += j + 1;
        } else if rest.starts_with("'\"'") {
            i += 3;
        } else {
            let c = rest.chars().next().unwrap();
            code.push(c);
            i += c.len_utf8();
        }
    }
    (code, strings)
}

/// Whether a line only attaches a folder as a module (`pub mod telegram;`, maybe under
/// `#[cfg(feature = "telegram")]`): the folder is the kind's, so these lines do not count.
fn is_module_declaration(line: &str) -> bool {
    let line = line.trim();
    let declared = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod "));
    declared.is_some_and(|rest| rest.ends_with(';')) || line.starts_with("#[cfg(")
}

/// Where a file names kinds: `(kind, what)` for identifiers and literals that can only mean the
/// kind. Prose (a string with spaces) and module declarations do not count.
fn kinds_named(text: &str, kinds: &[(String, String)]) -> Vec<(String, String)> {
    let text: Vec<&str> = text.lines().filter(|line| !is_module_declaration(line)).collect();
    let (code, strings) = code_and_strings(&text.join("\n"));
    let mut found = Vec::new();
    let identifiers = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
    for identifier in identifiers.filter(|i| !i.is_empty()) {
        for (kind, _) in kinds {
            let camel = format!("{}{}", kind[..1].to_ascii_uppercase(), &kind[1..]);
            let names_it = if AMBIGUOUS.contains(&kind.as_str()) {
                identifier.contains(&format!("providers::{kind}"))
                    || identifier
                        .split("::")
                        .any(|part| part == format!("{camel}Settings") || part == format!("{camel}Provider"))
            } else {
                words(identifier).contains(kind)
            };
            if names_it {
                found.push((kind.clone(), identifier.to_owned()));
            }
        }
    }
    for literal in strings.iter().filter(|s| !s.contains(' ')) {
        let literal_words = words(literal);
        for (kind, _) in kinds {
            let names_it = if AMBIGUOUS.contains(&kind.as_str()) {
                literal == kind
                    || literal.starts_with(&format!("OPEN_COWORK_GATEWAY_{}_", kind.to_ascii_uppercase()))
                    || literal.starts_with(&format!("--{kind}-"))
            } else {
                literal_words.contains(kind)
            };
            if names_it {
                found.push((kind.clone(), format!("{literal:?}")));
            }
        }
    }
    found
}

/// Whether `relative` (a path under `src/`) is the home of the kind living in `folder`.
fn is_home(relative: &str, folder: &str) -> bool {
    relative.starts_with(&format!("providers/{folder}/"))
        || relative == format!("providers/{folder}.rs")
        || relative == format!("config/providers/{folder}.rs")
}

/// Every place under `src/` that names a kind outside that kind's home, the table and the allowed
/// exceptions.
fn kind_names_out_of_place(files: &[(String, String)]) -> Vec<String> {
    let kinds = table_of_kinds();
    let mut violations = Vec::new();
    for (relative, text) in files {
        if relative == "providers/table_of_kinds.rs" {
            continue;
        }
        for (kind, what) in kinds_named(text, &kinds) {
            let home = kinds.iter().filter(|(name, _)| *name == kind).any(|(_, folder)| is_home(relative, folder));
            let allowed = ALLOWED.iter().any(|(file, word, _)| relative.starts_with(file) && *word == kind);
            if !home && !allowed {
                violations.push(format!("{relative}: names the {kind} kind: {what}"));
            }
        }
    }
    violations.sort();
    violations.dedup();
    violations
}

#[test]
fn a_kind_is_named_only_in_its_folder_and_the_table() {
    let files: Vec<_> = sources().into_iter().map(|(_, relative, text)| (relative, text)).collect();
    let violations = kind_names_out_of_place(&files);
    assert!(violations.is_empty(), "channel kinds named outside their folder:\n{}", violations.join("\n"));
}

#[test]
fn the_kind_check_sees_a_kind_out_of_place() {
    let planted = |relative: &str, text: &str| kind_names_out_of_place(&[(relative.to_owned(), text.to_owned())]);
    assert_eq!(planted("runtime/x.rs", "let k = \"telegram\";").len(), 1);
    assert_eq!(planted("config/mod.rs", "use crate::config::providers::slack::SlackSettings;").len(), 1);
    assert_eq!(planted("setup.rs", "set(\"OPEN_COWORK_GATEWAY_EMAIL_FROM\", x);").len(), 1);
    assert_eq!(planted("devcloud/mod.rs", "const KINDS: [&str; 1] = [\"discord\"];").len(), 1);
    assert_eq!(planted("providers/webhook/kind.rs", "\"discord\" \"signal\" \"webhook\""), Vec::<String>::new());
    assert_eq!(
        planted("http/webhook.rs", "fn handle_webhook(signal: DrainSignal) {} // telegram"),
        Vec::<String>::new()
    );
    assert_eq!(planted("config/mod.rs", "\"configure Telegram credentials\""), Vec::<String>::new(), "prose");
    assert_eq!(planted("providers/mod.rs", "#[cfg(feature = \"slack\")]\npub mod slack;"), Vec::<String>::new());
    assert_eq!(
        words("OPEN_COWORK_GATEWAY_TELEGRAM_MODE TelegramSettings --slack-bot"),
        ["open", "cowork", "gateway", "telegram", "mode", "telegram", "settings", "slack", "bot"]
    );
}

#[test]
fn the_checks_see_a_violation() {
    assert_eq!(referenced_modules("use crate::http::x; crate::util::y; crate::VERSION", &[]), ["http", "util"]);
    let reexports = reexports_of(
        "pub use providers::KINDS;\npub use crate::config::{\n    Env,\n    secret::Secret as Hidden,\n};",
    );
    assert_eq!(
        reexports,
        [("KINDS", "providers"), ("Env", "config"), ("Hidden", "config")].map(|(n, m)| (n.to_owned(), m.to_owned()))
    );
    assert_eq!(
        referenced_modules("crate::KINDS.iter(); crate::Hidden::new(); crate::VERSION", &reexports),
        ["providers", "config"]
    );
    assert_eq!(without_tests("a\n#[cfg(test)]\nmod tests {}"), "a");
    assert_eq!(without_tests("a\n#[cfg(test)]\n#[cfg(feature = \"x\")]\nmod tests {}"), "a");
    assert_eq!(without_tests("a\n#[cfg(test)]\nfn helper() {}"), "a\n#[cfg(test)]\nfn helper() {}");
    assert!(layer_of("runtime") > layer_of("providers"));
}

/// Every word of every Rust file under `src/`, `tests/` and `fuzz/` (line comments left out),
/// with the files it appears in.
fn files_by_word() -> HashMap<String, HashSet<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "fuzz"] {
        if root.join(dir).is_dir() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    let mut by_word: HashMap<String, HashSet<PathBuf>> = HashMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()) {
                by_word.entry(word.to_owned()).or_default().insert(path.clone());
            }
        }
    }
    by_word
}

/// The names of a file's module-level `pub` functions, constants and statics (not `pub(crate)`,
/// not items inside an `impl` or an inline module). Types are left to rustc: a type a `pub`
/// function returns is used wherever the function is, which a word search cannot see, and the
/// `private_interfaces` lint already refuses a type less visible than the function that shows it.
fn module_level_pub_items(text: &str) -> Vec<String> {
    const ITEMS: &[&str] = &["fn ", "async fn ", "const fn ", "const ", "static "];
    text.lines()
        .filter_map(|line| line.strip_prefix("pub "))
        .filter_map(|rest| ITEMS.iter().find_map(|item| rest.strip_prefix(item)))
        .filter_map(|rest| rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_module_level_pub_item_is_used_outside_its_file() {
    let by_word = files_by_word();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut unused = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for name in module_level_pub_items(&text) {
            if !by_word.get(&name).is_some_and(|files| files.iter().any(|file| file != &path)) {
                unused.push(format!("{}: pub {name}", path.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(unused.is_empty(), "pub items no other file uses (make them private):\n{}", unused.join("\n"));
}

#[test]
fn the_pub_item_check_reads_only_module_level_items() {
    let text = "pub fn open() {}\npub(crate) fn near() {}\npub const LIMIT: u8 = 1;\npub struct Kept;\nimpl Kept {\n    pub fn inner() {}\n}\npub async fn later() {}";
    assert_eq!(module_level_pub_items(text), ["open", "LIMIT", "later"]);
}
