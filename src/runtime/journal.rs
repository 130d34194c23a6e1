//! The inbound journal: a webhook is answered as soon as Cloud has claimed its event, before the
//! prompt runs (so a platform with a short answer deadline gets it in one Cloud round trip), and from
//! then on the platform will not send it again. Cloud keeps the claim but not the message, so a
//! gateway killed between the answer and the prompt would lose it. The journal closes that gap:
//! each such message is written durably (one file per event, `fsync`ed, in
//! `<state dir>/inbound/`) before the answer and removed once its pipeline has ended; at start the
//! files left behind are queued again. The replay claims the event, finds this gateway's own
//! unfinished claim and takes it over, and the prompt's idempotency key (the event id) keeps Cloud
//! from prompting twice if the killed process got that far.
//!
//! Without a state directory there is no journal and the gap stays (README, "Inbound queue").

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::channel::InboundMessage;
use crate::util::durable::write_private;

/// Files read back at start at most (the ingress queue and the chats in flight hold far fewer).
const MAX_REPLAYED: usize = 4096;

/// One journaled message.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    provider_id: SmolStr,
    message: InboundMessage,
}

/// Answered-but-unprompted webhook messages on disk.
pub struct InboundJournal {
    directory: PathBuf,
    /// Event ids with a file, so the end of a pipeline removes only what exists.
    recorded: RefCell<HashSet<String>>,
    /// Event ids whose pipeline failed for a passing reason (Cloud unreachable, rate limited):
    /// still on disk, queued again a while later by [`InboundJournal::take_stranded`]'s caller.
    stranded: RefCell<Vec<String>>,
}

impl InboundJournal {
    /// The journal in `<state_dir>/inbound`.
    pub fn in_state_directory(state_dir: &Path) -> Self {
        Self { directory: state_dir.join("inbound"), recorded: RefCell::default(), stranded: RefCell::default() }
    }

    /// Event ids are Cloud's (`channel_provider_event_` and hex); anything else is not a name
    /// to put in a path.
    fn path_of(&self, event_id: &str) -> Option<PathBuf> {
        let safe = !event_id.is_empty()
            && event_id.len() <= 128
            && event_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        safe.then(|| self.directory.join(format!("{event_id}.json")))
    }

    /// Writes the message durably before its webhook is answered.
    pub async fn record(&self, event_id: &str, provider_id: &str, message: &InboundMessage) -> std::io::Result<()> {
        let path = self.path_of(event_id).ok_or_else(|| std::io::Error::other("event id is not a file name"))?;
        let entry = Entry { provider_id: provider_id.into(), message: message.clone() };
        let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        let directory = self.directory.clone();
        // On the blocking pool: an SD card's fsync must not stall the event loop.
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&directory)?;
            write_private(&path, &bytes)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.recorded.borrow_mut().insert(event_id.to_owned());
        Ok(())
    }

    /// Whether the journal holds this event (recorded by this process or left by the last one).
    pub fn holds(&self, event_id: &str) -> bool {
        self.recorded.borrow().contains(event_id)
    }

    /// Removes the event's file once its pipeline has ended. A removal lost to a power cut only
    /// replays an event Cloud already holds as processed: the claim answers duplicate.
    pub fn forget(&self, event_id: &str) {
        if !self.recorded.borrow_mut().remove(event_id) {
            return;
        }
        if let Some(path) = self.path_of(event_id) {
            tokio::task::spawn_blocking(move || {
                if let Err(error) = std::fs::remove_file(&path) {
                    if error.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(%error, path = %path.display(), "an inbound journal file could not be removed; it replays at the next start as a duplicate");
                    }
                }
            });
        }
    }

    /// Marks a journaled event whose pipeline failed for a passing reason, to be queued again.
    pub fn strand(&self, event_id: &str) {
        let mut stranded = self.stranded.borrow_mut();
        if self.holds(event_id) && !stranded.iter().any(|id| id == event_id) {
            stranded.push(event_id.to_owned());
        }
    }

    /// The stranded messages, read back from their files (and no longer marked).
    pub fn take_stranded(&self) -> Vec<(String, SmolStr, InboundMessage)> {
        let ids = std::mem::take(&mut *self.stranded.borrow_mut());
        ids.into_iter()
            .filter(|id| self.holds(id))
            .filter_map(|id| {
                let entry = read_entry(&self.path_of(&id)?).ok()?;
                Some((id, entry.provider_id, entry.message))
            })
            .collect()
    }

    /// The messages a previous process answered but did not finish, oldest first. Unreadable
    /// files are reported and set aside (renamed `.bad`), never fatal.
    pub fn left_behind(&self) -> Vec<(String, SmolStr, InboundMessage)> {
        let Ok(listing) = std::fs::read_dir(&self.directory) else { return Vec::new() };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = listing
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .map(|path| (std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), path))
            .collect();
        files.sort();
        let mut replay = Vec::new();
        for (_, path) in files.into_iter().take(MAX_REPLAYED) {
            let Some(event_id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).map_err(|e| e.to_string()));
            match read {
                Ok(entry) if self.path_of(&event_id).is_some() => {
                    self.recorded.borrow_mut().insert(event_id.clone());
                    replay.push((event_id, entry.provider_id, entry.message));
                }
                Ok(_) | Err(_) => {
                    let detail = read.err().unwrap_or_else(|| "not an event id".into());
                    tracing::warn!(path = %path.display(), %detail, "an inbound journal file is unreadable; set aside as .bad");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        replay
    }
}

fn read_entry(path: &Path) -> Result<Entry, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocg-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn a_recorded_message_is_left_behind_until_forgotten() {
        let dir = directory("roundtrip");
        let journal = InboundJournal::in_state_directory(&dir);
        let mut message = InboundMessage::text_for_tests("m-1", "hello");
        message.interaction =
            Some(crate::channel::InteractionRef { id: "i".into(), token: "t".into(), kind: "button" });
        journal.record("channel_provider_event_abc", "fake", &message).await.unwrap();
        assert!(journal.holds("channel_provider_event_abc"));

        // A new process reads it back, whole.
        let next = InboundJournal::in_state_directory(&dir);
        let left = next.left_behind();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, "channel_provider_event_abc");
        assert_eq!(left[0].1, "fake");
        assert_eq!(left[0].2, message);

        // A passing failure strands it; it is read back once, then no longer marked.
        next.strand("channel_provider_event_abc");
        next.strand("channel_provider_event_abc");
        next.strand("channel_provider_event_unknown");
        let stranded = next.take_stranded();
        assert_eq!(stranded.len(), 1, "marked once, and only what the journal holds");
        assert_eq!(stranded[0].2, message);
        assert!(next.take_stranded().is_empty());

        next.forget("channel_provider_event_abc");
        // The removal runs on the blocking pool.
        for _ in 0..100 {
            if InboundJournal::in_state_directory(&dir).left_behind().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(InboundJournal::in_state_directory(&dir).left_behind().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn unsafe_event_ids_and_unreadable_files_are_refused() {
        let dir = directory("unsafe");
        let journal = InboundJournal::in_state_directory(&dir);
        let message = InboundMessage::text_for_tests("m", "x");
        assert!(journal.record("../escape", "fake", &message).await.is_err());
        std::fs::create_dir_all(dir.join("inbound")).unwrap();
        std::fs::write(dir.join("inbound/channel_provider_event_x.json"), b"{not json").unwrap();
        assert!(journal.left_behind().is_empty());
        assert!(dir.join("inbound/channel_provider_event_x.bad").exists(), "set aside, not read again");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
