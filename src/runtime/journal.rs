//! The inbound journal: with a state directory, a webhook's message is written here durably (one
//! file per platform event, `fsync`ed, in `<state dir>/inbound/`) as soon as it is parsed and
//! authenticated, and the webhook is answered right then; the Cloud claim, the prompt and the
//! rendering follow in the chat's turn. From the answer on the platform will not send it again,
//! and Cloud holds nothing of it until the claim, so the file is what survives a kill or a power
//! cut: it is removed once the message's pipeline has ended, and at start the files left behind
//! are queued again. A replayed message that the killed process had already claimed finds this
//! gateway's own unfinished claim and takes it over, and the prompt's idempotency key (the event
//! id) keeps Cloud from prompting twice if the killed process got that far.
//!
//! Files are named by a digest of the channel and the platform's event id, so a platform's
//! redelivery of a message still on disk finds it and is absorbed. A write that fails removes its
//! temporary file; temporary files a power cut left behind are removed at start.
//!
//! Without a state directory there is no journal: a webhook is answered once Cloud has claimed
//! its event (README, "Inbound queue").

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::channel::InboundMessage;
use crate::util::durable::write_private;

/// Files read back at start at most (the ingress queue and the chats in flight hold far fewer).
const MAX_REPLAYED: usize = 4096;
/// Hex digits of a file name: 128 bits of the digest.
const KEY_DIGITS: usize = 32;

/// One journaled message.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    provider_id: SmolStr,
    message: InboundMessage,
}

/// How a [`InboundJournal::record`] came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Written now: this gateway owns the message.
    Written,
    /// The journal already holds this event (a platform's redelivery): nothing was written.
    AlreadyHeld,
}

/// The journal's name for a message: a digest of the channel that received it and the platform's
/// event id, so the same event is the same file however often the platform sends it.
pub fn key_of(provider_id: &str, message: &InboundMessage) -> String {
    let mut input = Vec::with_capacity(provider_id.len() + 64);
    input.extend_from_slice(provider_id.as_bytes());
    input.push(0);
    input.extend_from_slice(message.provider_event_id().as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut key = crate::util::hex::encode(digest.as_ref());
    key.truncate(KEY_DIGITS);
    key
}

/// Answered-but-unfinished webhook messages on disk.
pub struct InboundJournal {
    directory: PathBuf,
    /// Keys with a file (or one being written), and that file, so the end of a pipeline removes
    /// only what exists and a redelivery is recognised while its file is being written.
    recorded: RefCell<HashMap<String, PathBuf>>,
    /// Keys whose pipeline failed for a passing reason (Cloud unreachable, rate limited): still on
    /// disk, queued again a while later by [`InboundJournal::take_stranded`]'s caller.
    stranded: RefCell<Vec<String>>,
}

impl InboundJournal {
    /// The journal in `<state_dir>/inbound`.
    pub fn in_state_directory(state_dir: &Path) -> Self {
        Self { directory: state_dir.join("inbound"), recorded: RefCell::default(), stranded: RefCell::default() }
    }

    /// Keys are [`key_of`]'s hex (or, for files an earlier version wrote, Cloud's event ids);
    /// anything else is not a name to put in a path.
    fn path_of(&self, key: &str) -> Option<PathBuf> {
        let safe = !key.is_empty()
            && key.len() <= 128
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        safe.then(|| self.directory.join(format!("{key}.json")))
    }

    /// Writes the message durably before its webhook is answered, unless the journal already
    /// holds it. The key is taken before the write starts, so a redelivery arriving meanwhile is
    /// recognised; a failed write gives it back and leaves no file.
    pub async fn record(&self, key: &str, provider_id: &str, message: &InboundMessage) -> std::io::Result<Recorded> {
        let path = self.path_of(key).ok_or_else(|| std::io::Error::other("journal key is not a file name"))?;
        if self.holds(key) {
            return Ok(Recorded::AlreadyHeld);
        }
        let entry = Entry { provider_id: provider_id.into(), message: message.clone() };
        let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        self.recorded.borrow_mut().insert(key.to_owned(), path.clone());
        let directory = self.directory.clone();
        // On the blocking pool: an SD card's fsync must not stall the event loop.
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&directory)?;
            write_private(&path, &bytes)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written);
        if let Err(error) = written {
            self.recorded.borrow_mut().remove(key);
            return Err(error);
        }
        Ok(Recorded::Written)
    }

    /// Whether the journal holds this key (recorded by this process or left by the last one).
    pub fn holds(&self, key: &str) -> bool {
        self.recorded.borrow().contains_key(key)
    }

    /// Removes the message's file once its pipeline has ended. A removal lost to a power cut only
    /// replays an event Cloud already holds as processed: the claim answers duplicate.
    pub fn forget(&self, key: &str) {
        let Some(path) = self.recorded.borrow_mut().remove(key) else { return };
        tokio::task::spawn_blocking(move || {
            if let Err(error) = std::fs::remove_file(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(%error, path = %path.display(), "an inbound journal file could not be removed; it replays at the next start as a duplicate");
                }
            }
        });
    }

    /// Marks a journaled message whose pipeline failed for a passing reason, to be queued again.
    pub fn strand(&self, key: &str) {
        let mut stranded = self.stranded.borrow_mut();
        if self.holds(key) && !stranded.iter().any(|id| id == key) {
            stranded.push(key.to_owned());
        }
    }

    /// The stranded messages, read back from their files (and no longer marked).
    pub fn take_stranded(&self) -> Vec<(String, SmolStr, InboundMessage)> {
        let keys = std::mem::take(&mut *self.stranded.borrow_mut());
        keys.into_iter()
            .filter_map(|key| {
                let path = self.recorded.borrow().get(&key).cloned()?;
                let entry = read_entry(&path).ok()?;
                Some((key, entry.provider_id, entry.message))
            })
            .collect()
    }

    /// The messages a previous process answered but did not finish, oldest first, each under its
    /// [`key_of`]. Unreadable files are reported and set aside (renamed `.bad`), never fatal;
    /// temporary files of writes a power cut interrupted are removed.
    pub fn left_behind(&self) -> Vec<(String, SmolStr, InboundMessage)> {
        let Ok(listing) = std::fs::read_dir(&self.directory) else { return Vec::new() };
        let paths: Vec<PathBuf> = listing.filter_map(Result::ok).map(|entry| entry.path()).collect();
        for stray in paths.iter().filter(|path| path.extension().is_some_and(|e| e == "tmp")) {
            if let Err(error) = std::fs::remove_file(stray) {
                tracing::warn!(%error, path = %stray.display(), "a temporary inbound journal file could not be removed");
            }
        }
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = paths
            .into_iter()
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .map(|path| (std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), path))
            .collect();
        files.sort();
        let mut replay = Vec::new();
        for (_, path) in files.into_iter().take(MAX_REPLAYED) {
            let named = path.file_stem().and_then(|s| s.to_str()).is_some_and(|stem| self.path_of(stem).is_some());
            let read =
                read_entry(&path).and_then(|entry| if named { Ok(entry) } else { Err("not a journal name".into()) });
            match read {
                Ok(entry) => {
                    let key = key_of(&entry.provider_id, &entry.message);
                    if self.holds(&key) {
                        // Two files of one event (an earlier version's name and this one's):
                        // one replay; the other file goes with it.
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    self.recorded.borrow_mut().insert(key.clone(), path);
                    replay.push((key, entry.provider_id, entry.message));
                }
                Err(detail) => {
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

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("inbound"))
            .map(|listing| {
                listing.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_recorded_message_is_left_behind_until_forgotten() {
        let dir = directory("roundtrip");
        let journal = InboundJournal::in_state_directory(&dir);
        let mut message = InboundMessage::text_for_tests("m-1", "hello");
        message.interaction =
            Some(crate::channel::InteractionRef { id: "i".into(), token: "t".into(), kind: "button" });
        let key = key_of("fake", &message);
        assert_eq!(journal.record(&key, "fake", &message).await.unwrap(), Recorded::Written);
        assert!(journal.holds(&key));
        // The platform sends it again: the journal already has it.
        assert_eq!(journal.record(&key, "fake", &message).await.unwrap(), Recorded::AlreadyHeld);
        assert_ne!(key, key_of("other", &message), "the channel is part of the name");

        // A new process reads it back, whole, under the same key.
        let next = InboundJournal::in_state_directory(&dir);
        let left = next.left_behind();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, key);
        assert_eq!(left[0].1, "fake");
        assert_eq!(left[0].2, message);

        // A passing failure strands it; it is read back once, then no longer marked.
        next.strand(&key);
        next.strand(&key);
        next.strand("0123456789abcdef0123456789abcdef");
        let stranded = next.take_stranded();
        assert_eq!(stranded.len(), 1, "marked once, and only what the journal holds");
        assert_eq!(stranded[0].2, message);
        assert!(next.take_stranded().is_empty());

        next.forget(&key);
        // The removal runs on the blocking pool.
        for _ in 0..100 {
            if files_in(&dir).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(InboundJournal::in_state_directory(&dir).left_behind().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_named_by_an_earlier_version_replays_under_its_key() {
        let dir = directory("earlier");
        let message = InboundMessage::text_for_tests("m-2", "older");
        std::fs::create_dir_all(dir.join("inbound")).unwrap();
        let entry = Entry { provider_id: "fake".into(), message: message.clone() };
        std::fs::write(dir.join("inbound/channel_provider_event_abc.json"), serde_json::to_vec(&entry).unwrap())
            .unwrap();
        let journal = InboundJournal::in_state_directory(&dir);
        let left = journal.left_behind();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, key_of("fake", &message));
        journal.forget(&left[0].0);
        for _ in 0..100 {
            if files_in(&dir).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(files_in(&dir).is_empty(), "forgetting the key removes the file it was read from");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn unsafe_keys_and_unreadable_files_are_refused() {
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

    #[tokio::test]
    async fn a_failing_write_leaves_no_file_and_gives_its_key_back() {
        let dir = directory("failing");
        let journal = InboundJournal::in_state_directory(&dir);
        let message = InboundMessage::text_for_tests("m-3", "no room");
        let key = key_of("fake", &message);
        // A directory where the file should go: the temporary file is written and synced, and
        // the rename over it fails, as a full disk fails a write after the file was created.
        std::fs::create_dir_all(dir.join("inbound").join(format!("{key}.json"))).unwrap();
        assert!(journal.record(&key, "fake", &message).await.is_err());
        assert!(!journal.holds(&key), "a redelivery may try again");
        assert_eq!(files_in(&dir), [format!("{key}.json")], "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stray_temporary_files_are_removed_at_start() {
        let dir = directory("stray");
        std::fs::create_dir_all(dir.join("inbound")).unwrap();
        std::fs::write(dir.join("inbound/0123456789abcdef0123456789abcdef.tmp"), b"").unwrap();
        std::fs::write(dir.join("inbound/notes.txt"), b"kept").unwrap();
        assert!(InboundJournal::in_state_directory(&dir).left_behind().is_empty());
        assert_eq!(files_in(&dir), ["notes.txt"], "only the temporary file goes");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
