//! Short button ids: a platform's button payload is small (Telegram's `callback_data` holds 64
//! bytes, a bridge's button token as much) and Cloud interaction tokens are longer, so each button
//! carries `b:<start>.<n>` and this table maps it back to the token.
//!
//! `<start>` is random for each process start: without a state directory a new process can never
//! issue an id that an old message still carries, so a press on a button from before a restart
//! can never approve a newer request that happens to get the same number; it is "expired"
//! instead. With a state directory the table survives restarts (buttons sent before a restart
//! still work); it is written durably, debounced and off the send path, and holds interaction
//! tokens, hence mode 0600.
//!
//! Once a decision on a message's buttons succeeded, every button of that message is settled
//! with the outcome, so a second press is answered "already answered" without another Cloud call.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::channel::Button;
use crate::util::durable::DebouncedFile;

/// Button ids kept for mapping presses back to tokens.
const CAPACITY: usize = 10_000;
/// Prefix of the short ids.
const PREFIX: &str = "b:";
/// Length of the per-start part of an id.
const START_CHARS: usize = 6;
/// Buttons issued within this long are saved together.
const SAVE_DELAY: Duration = Duration::from_millis(500);

/// One issued button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    id: String,
    token: String,
    /// The buttons of one message share this number.
    message: u64,
    /// Set once a decision on the message succeeded: what it was (`Approved`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
}

/// The table, as kept and as saved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Entries {
    /// The last message number issued.
    messages: u64,
    entries: VecDeque<Entry>,
}

/// What a pressed button's payload stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pressed {
    /// One of ours, still open: the token to resolve and the message it belongs to.
    Open { token: String, message: u64 },
    /// One of ours whose message was already decided, with the outcome.
    Answered(String),
    /// Shaped like one of ours but unknown: issued by another start, or aged out.
    Expired,
    /// Not a short id at all (buttons of older versions carried the token itself).
    Foreign,
}

/// The id → token table of one channel.
pub struct ButtonTable {
    start: String,
    next: std::cell::Cell<u64>,
    entries: Rc<RefCell<Entries>>,
    file: Option<DebouncedFile>,
}

impl ButtonTable {
    /// The table saved at `path` (empty when missing or unreadable), kept in step with it; or an
    /// in-memory table without a path.
    pub fn open(path: Option<&Path>) -> Self {
        let entries = path.map(load).unwrap_or_default();
        let start = loop {
            let candidate = random_start();
            let taken = entries.entries.iter().any(|e| e.id.starts_with(&format!("{PREFIX}{candidate}.")));
            if !taken {
                break candidate;
            }
        };
        let entries = Rc::new(RefCell::new(entries));
        let file = path.map(|path| {
            let source = Rc::downgrade(&entries);
            let snapshot = move || {
                let entries = source.upgrade().map(|e| e.borrow().clone()).unwrap_or_default();
                serde_json::to_vec(&entries).unwrap_or_default()
            };
            DebouncedFile::new(path.to_owned(), SAVE_DELAY, Box::new(snapshot))
        });
        Self { start, next: std::cell::Cell::new(0), entries, file }
    }

    /// Stores the tokens of one message's buttons; returns the message's number and the ids, in
    /// order.
    pub fn issue(&self, tokens: &[&str]) -> (u64, Vec<String>) {
        let issued = {
            let mut entries = self.entries.borrow_mut();
            entries.messages += 1;
            let message = entries.messages;
            let mut ids = Vec::with_capacity(tokens.len());
            for token in tokens {
                self.next.set(self.next.get() + 1);
                let id = format!("{PREFIX}{}.{}", self.start, self.next.get());
                entries.entries.push_back(Entry { id: id.clone(), token: (*token).to_owned(), message, outcome: None });
                ids.push(id);
            }
            while entries.entries.len() > CAPACITY {
                entries.entries.pop_front();
            }
            (message, ids)
        };
        self.mark_dirty();
        issued
    }

    /// What a pressed button's payload stands for.
    pub fn pressed(&self, payload: &str) -> Pressed {
        if !is_short_id(payload) {
            return Pressed::Foreign;
        }
        let entries = self.entries.borrow();
        match entries.entries.iter().find(|e| e.id == payload) {
            Some(Entry { outcome: Some(outcome), .. }) => Pressed::Answered(outcome.clone()),
            Some(entry) => Pressed::Open { token: entry.token.clone(), message: entry.message },
            None => Pressed::Expired,
        }
    }

    /// Records the outcome of a decision on `message`: its buttons answer "already answered" from
    /// now on. Returns an id of the message's, for an outcome button that answers the same.
    pub fn settle(&self, message: u64, outcome: &str) -> Option<String> {
        let id = {
            let mut entries = self.entries.borrow_mut();
            let mut id = None;
            for entry in entries.entries.iter_mut().filter(|e| e.message == message) {
                entry.outcome = Some(outcome.to_owned());
                id.get_or_insert_with(|| entry.id.clone());
            }
            id
        };
        self.mark_dirty();
        id
    }

    /// Writes a pending change now (at stop).
    pub fn flush(&self) {
        if let Some(file) = &self.file {
            file.flush_now();
        }
    }

    fn mark_dirty(&self) {
        if let Some(file) = &self.file {
            file.mark_dirty();
        }
    }
}

/// Marks the line of a button message that says what to type instead of pressing; an expired
/// button's notice points at it (or repeats it, where the platform sends the text back).
pub const COMMANDS_HINT: &str = "Or type: ";

/// The commands that do what a message's buttons do, one per distinct action and token:
/// `/approve <token> · /deny <token>`. `None` when no button carries a known action.
pub fn commands_for(rows: &[Vec<Button>]) -> Option<String> {
    let mut commands: Vec<String> = Vec::new();
    for button in rows.iter().flatten() {
        let token = button.token.as_str();
        let command = if let Some(rest) = token.strip_prefix("apv:") {
            format!("/approve {rest}")
        } else if let Some(rest) = token.strip_prefix("den:") {
            format!("/deny {rest}")
        } else if let Some(rest) = token.strip_prefix("rej:") {
            format!("/reject {rest}")
        } else if let Some((_, rest)) = token.strip_prefix("ans:").and_then(|r| r.split_once(':')) {
            format!("/answer {rest} <answer>")
        } else {
            continue;
        };
        if !commands.contains(&command) {
            commands.push(command);
        }
    }
    (!commands.is_empty()).then(|| commands.join(" \u{b7} "))
}

/// `text` with the commands line under it, when the two fit in `max_utf16` UTF-16 units (the
/// unit Telegram and the relays count in); else `text` as it is.
pub fn with_commands_line(text: &str, rows: &[Vec<Button>], max_utf16: usize) -> String {
    let length = |text: &str| text.encode_utf16().count();
    match commands_for(rows) {
        Some(commands) if length(text) + 2 + length(COMMANDS_HINT) + length(&commands) <= max_utf16 => {
            format!("{text}\n\n{COMMANDS_HINT}{commands}")
        }
        _ => text.to_owned(),
    }
}

/// Whether `payload` has the shape of one of our short ids (`b:<start>.<n>`, or `b:<n>` as
/// issued by earlier versions), known or not.
fn is_short_id(payload: &str) -> bool {
    payload.strip_prefix(PREFIX).is_some_and(|rest| {
        let number = rest.rsplit_once('.').map_or(rest, |(start, n)| if start.is_empty() { "" } else { n });
        !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.')
    })
}

/// The per-start part of the ids: lower-case letters and digits.
fn random_start() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..START_CHARS).map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())])).collect()
}

/// The table as earlier versions saved it: `(next id, [(id, token)])`. Their ids were never
/// reused while the file lived, so they stay valid as `b:<n>`.
type Legacy = (u64, VecDeque<(u64, String)>);

/// The saved table; a missing or unreadable file is an empty table.
fn load(path: &Path) -> Entries {
    let Ok(text) = std::fs::read_to_string(path) else { return Entries::default() };
    let mut entries = match serde_json::from_str::<Entries>(&text) {
        Ok(entries) => entries,
        Err(error) => match serde_json::from_str::<Legacy>(&text) {
            Ok((next, legacy)) => Entries {
                messages: next,
                entries: legacy
                    .into_iter()
                    .map(|(n, token)| Entry { id: format!("{PREFIX}{n}"), token, message: n, outcome: None })
                    .collect(),
            },
            Err(_) => {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable button table");
                Entries::default()
            }
        },
    };
    while entries.entries.len() > CAPACITY {
        entries.entries.pop_front();
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_map_back_to_tokens_and_survive_a_reopen() {
        tokio::task::LocalSet::new().run_until(round_trip()).await;
    }

    async fn round_trip() {
        let dir = std::env::temp_dir().join(format!("ocg-buttons-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("buttons.json");
        let table = ButtonTable::open(Some(&path));
        let (_, ids) = table.issue(&["apv:token-1", "den:token-1"]);
        assert!(ids[0].starts_with("b:") && ids[0].ends_with(".1") && ids[0].len() <= 64, "{ids:?}");
        assert!(matches!(table.pressed(&ids[1]), Pressed::Open { ref token, .. } if token == "den:token-1"));
        assert_eq!(table.pressed("apv:raw"), Pressed::Foreign, "not one of our ids");
        assert_eq!(table.pressed("b:99"), Pressed::Expired);
        assert!(is_short_id("b:99") && is_short_id("b:x1y2z3.7") && !is_short_id("apv:raw"));
        assert!(!is_short_id("b:") && !is_short_id("b:1x") && !is_short_id("b:.1") && !is_short_id("b:a."));
        table.flush();
        let reopened = ButtonTable::open(Some(&path));
        assert!(matches!(reopened.pressed(&ids[0]), Pressed::Open { ref token, .. } if token == "apv:token-1"));
        let (_, newer) = reopened.issue(&["apv:token-2"]);
        assert_ne!(newer[0].split('.').next(), ids[0].split('.').next(), "a new start has its own ids");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_start_never_reissues_an_old_id() {
        let before = ButtonTable::open(None);
        let (_, old) = before.issue(&["apv:old"]);
        let after = ButtonTable::open(None);
        let (_, new) = after.issue(&["apv:new"]);
        assert_ne!(old, new);
        assert_eq!(after.pressed(&old[0]), Pressed::Expired, "the old message's button approves nothing new");
    }

    #[test]
    fn a_settled_message_answers_every_button() {
        let table = ButtonTable::open(None);
        let (issued, ids) = table.issue(&["apv:t", "den:t"]);
        let Pressed::Open { message, .. } = table.pressed(&ids[0]) else { panic!("open") };
        assert_eq!(message, issued);
        assert_eq!(table.settle(message, "Approved").as_deref(), Some(ids[0].as_str()));
        assert_eq!(table.pressed(&ids[1]), Pressed::Answered("Approved".into()));
    }

    #[test]
    fn a_table_saved_by_an_earlier_version_still_maps() {
        let dir = std::env::temp_dir().join(format!("ocg-buttons-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("buttons.json");
        std::fs::write(&path, r#"[3,[[3,"apv:legacy"]]]"#).unwrap();
        let table = ButtonTable::open(Some(&path));
        assert!(matches!(table.pressed("b:3"), Pressed::Open { ref token, .. } if token == "apv:legacy"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
