//! Short button ids: Telegram's `callback_data` holds at most 64 bytes and Cloud interaction
//! tokens are longer, so each button carries `b:<n>` and this table maps `n` back to the token.
//! With a state directory the table survives restarts (buttons sent before a restart still
//! work); it is written durably, debounced and off the send path, and holds interaction tokens,
//! hence mode 0600.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use crate::util::durable::DebouncedFile;

/// Button ids kept for mapping callbacks back to tokens.
const CAPACITY: usize = 10_000;
/// Prefix of the short `callback_data` ids.
const PREFIX: &str = "b:";
/// Buttons issued within this long are saved together.
const SAVE_DELAY: Duration = Duration::from_millis(500);

/// `(next id, [(id, token)])`, oldest first: the file format too.
type Entries = (u64, VecDeque<(u64, String)>);

/// The id → token table of one bot.
pub struct ButtonTable {
    entries: Rc<RefCell<Entries>>,
    file: Option<DebouncedFile>,
}

impl ButtonTable {
    /// The table saved at `path` (empty when missing or unreadable), kept in step with it; or an
    /// in-memory table without a path.
    pub fn open(path: Option<&Path>) -> Self {
        let entries = Rc::new(RefCell::new(path.map(load).unwrap_or_default()));
        let file = path.map(|path| {
            let source = Rc::downgrade(&entries);
            let snapshot = move || {
                let entries = source.upgrade().map(|e| e.borrow().clone()).unwrap_or_default();
                serde_json::to_vec(&entries).unwrap_or_default()
            };
            DebouncedFile::new(path.to_owned(), SAVE_DELAY, Box::new(snapshot))
        });
        Self { entries, file }
    }

    /// Stores `token` and returns the `callback_data` for its button.
    pub fn issue(&self, token: &str) -> String {
        let id = {
            let mut entries = self.entries.borrow_mut();
            entries.0 += 1;
            let id = entries.0;
            entries.1.push_back((id, token.to_owned()));
            if entries.1.len() > CAPACITY {
                entries.1.pop_front();
            }
            id
        };
        if let Some(file) = &self.file {
            file.mark_dirty();
        }
        format!("{PREFIX}{id}")
    }

    /// The token behind a button's `callback_data`; `None` for data that is not one of our ids,
    /// or an id that has aged out of the table.
    pub fn token(&self, callback_data: &str) -> Option<String> {
        let id = callback_data.strip_prefix(PREFIX)?.parse::<u64>().ok()?;
        self.entries.borrow().1.iter().find(|(n, _)| *n == id).map(|(_, token)| token.clone())
    }

    /// Writes a pending change now (at stop).
    pub fn flush(&self) {
        if let Some(file) = &self.file {
            file.flush_now();
        }
    }
}

/// Whether `callback_data` has the shape of one of our short ids (`b:<n>`), known or not.
pub fn is_short_id(callback_data: &str) -> bool {
    callback_data.strip_prefix(PREFIX).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The saved table; a missing or unreadable file is an empty table.
fn load(path: &Path) -> Entries {
    let Ok(text) = std::fs::read_to_string(path) else { return Entries::default() };
    match serde_json::from_str::<Entries>(&text) {
        Ok((next, mut entries)) => {
            while entries.len() > CAPACITY {
                entries.pop_front();
            }
            (next, entries)
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "ignoring an unreadable Telegram button table");
            Entries::default()
        }
    }
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
        let data = table.issue("apv:token-1");
        assert_eq!(data, "b:1");
        assert_eq!(table.token(&data).as_deref(), Some("apv:token-1"));
        assert_eq!(table.token("apv:raw"), None, "not one of our ids");
        assert_eq!(table.token("b:99"), None);
        assert!(is_short_id("b:99") && !is_short_id("apv:raw") && !is_short_id("b:") && !is_short_id("b:1x"));
        table.flush();
        let reopened = ButtonTable::open(Some(&path));
        assert_eq!(reopened.token("b:1").as_deref(), Some("apv:token-1"));
        assert_eq!(reopened.issue("den:token-2"), "b:2", "ids keep counting after a restart");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
