//! The state file in the state directory: which session streams were open, so a restarted gateway
//! reopens them at once instead of waiting for the next inbound message. Cloud still owns the
//! cursors: each entry is looked up again (`findSessionByThread`) before its stream resumes, so
//! losing or corrupting the file loses no data. Written durably (fsync, rename, fsync of the
//! directory) with mode 0600, debounced and off the request path.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Weak;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use super::sessions::SessionStreams;
use crate::cloud::types::SessionBindingRecord;
use crate::util::durable::DebouncedFile;

const FILE_NAME: &str = "session-streams.json";
/// Changes within this long are written together.
const SAVE_DELAY: Duration = Duration::from_millis(500);

/// One open stream: enough to find its session binding again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenStreamEntry {
    pub session_binding_id: SmolStr,
    /// The gateway provider (config id) that renders it.
    pub provider_id: SmolStr,
    /// The Cloud provider id of the binding.
    pub provider: SmolStr,
    pub external_workspace_id: Option<String>,
    pub external_chat_id: String,
    pub external_thread_id: String,
}

impl OpenStreamEntry {
    pub fn new(binding: &SessionBindingRecord, provider_id: &str) -> Self {
        Self {
            session_binding_id: binding.binding_id.clone(),
            provider_id: provider_id.into(),
            provider: binding.provider.clone(),
            external_workspace_id: binding.external_workspace_id.clone(),
            external_chat_id: binding.external_chat_id.clone(),
            external_thread_id: binding.external_thread_id.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Contents {
    version: u32,
    streams: Vec<OpenStreamEntry>,
}

#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_directory(directory: &Path) -> Self {
        Self { path: directory.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved entries; a missing or unreadable file is an empty list (logged).
    pub fn load(&self, limit: usize) -> Vec<OpenStreamEntry> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the session state file; streams reopen on the next message");
                return Vec::new();
            }
        };
        match serde_json::from_str::<Contents>(&text) {
            Ok(contents) => contents.streams.into_iter().take(limit).collect(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "the session state file is not valid; ignoring it");
                Vec::new()
            }
        }
    }

    /// The debounced writer that keeps the file in step with `streams`.
    pub fn writer(&self, streams: Weak<RefCell<SessionStreams>>) -> DebouncedFile {
        let snapshot = move || {
            let streams = streams.upgrade().map(|s| s.borrow().entries()).unwrap_or_default();
            serde_json::to_vec(&Contents { version: 1, streams }).unwrap_or_default()
        };
        DebouncedFile::new(self.path.clone(), SAVE_DELAY, Box::new(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tolerance() {
        let dir = std::env::temp_dir().join(format!("ocg-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StateFile::in_directory(&dir);
        assert!(file.load(10).is_empty(), "missing file");
        let entry = OpenStreamEntry {
            session_binding_id: "sb".into(),
            provider_id: "fake".into(),
            provider: "cli".into(),
            external_workspace_id: None,
            external_chat_id: "c".into(),
            external_thread_id: "c".into(),
        };
        let contents = Contents { version: 1, streams: vec![entry.clone(), entry.clone()] };
        crate::util::durable::write_private(file.path(), &serde_json::to_vec(&contents).unwrap()).unwrap();
        assert_eq!(file.load(1), vec![entry]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(file.path(), "{broken").unwrap();
        assert!(file.load(10).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
