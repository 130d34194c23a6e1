//! Files that must survive a power cut (a Raspberry Pi loses power): written to a temporary file,
//! `fsync`ed, renamed over the old file, and the directory `fsync`ed so the rename itself is on
//! disk. Until all four steps are done the old file stays the one a restart reads.
//!
//! [`DebouncedFile`] keeps such writes off request paths: callers mark the state dirty, and one
//! task writes the newest snapshot a short delay later, on tokio's blocking pool, so a burst of
//! changes costs one write and an SD card's slow `fsync` never stalls the event loop.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

/// Replaces `path` with `bytes` durably, with mode 0600 (state files can hold interaction tokens).
/// A write that fails (a full disk, a read-only remount) removes its temporary file, so failures
/// do not pile up files.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let replace = || {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)
    };
    if let Err(error) = replace() {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    sync_directory(path)
}

/// Makes a rename in `path`'s directory durable.
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

/// Produces the bytes of the file's newest state when a write is due.
pub type Snapshot = Box<dyn Fn() -> Vec<u8>>;

/// A state file written in the background at most once per `delay` after a change.
#[derive(Clone)]
pub struct DebouncedFile {
    inner: Rc<Inner>,
}

struct Inner {
    path: PathBuf,
    delay: Duration,
    snapshot: Snapshot,
    dirty: Cell<bool>,
    /// Whether the writer task runs; it is spawned on the first change, inside the caller's
    /// `LocalSet`, so building a `DebouncedFile` needs no runtime.
    writer_started: Cell<bool>,
    wake: Notify,
}

impl DebouncedFile {
    pub fn new(path: PathBuf, delay: Duration, snapshot: Snapshot) -> Self {
        Self {
            inner: Rc::new(Inner {
                path,
                delay,
                snapshot,
                dirty: Cell::new(false),
                writer_started: Cell::new(false),
                wake: Notify::new(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Records that the state changed; the newest state is written within `delay`.
    pub fn mark_dirty(&self) {
        self.inner.dirty.set(true);
        if !self.inner.writer_started.replace(true) {
            tokio::task::spawn_local(write_when_dirty(Rc::clone(&self.inner)));
        }
        self.inner.wake.notify_one();
    }

    /// Writes a pending change at once, on the calling thread (at shutdown, when the process is
    /// about to exit and blocking is what we want).
    pub fn flush_now(&self) {
        if self.inner.dirty.replace(false) {
            write_logged(&self.inner.path, &(self.inner.snapshot)());
        }
    }
}

/// The writer task: sleeps until a change, waits out the delay so a burst becomes one write,
/// then writes the newest snapshot on the blocking pool. It lives as long as the runtime.
async fn write_when_dirty(inner: Rc<Inner>) {
    loop {
        if !inner.dirty.get() {
            inner.wake.notified().await;
            continue;
        }
        tokio::time::sleep(inner.delay).await;
        if !inner.dirty.replace(false) {
            continue;
        }
        let bytes = (inner.snapshot)();
        let path = inner.path.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || write_logged(&path, &bytes)).await {
            tracing::warn!(%error, "the state file writer stopped unexpectedly");
        }
    }
}

fn write_logged(path: &Path, bytes: &[u8]) {
    if let Err(error) = write_private(path, bytes) {
        tracing::warn!(path = %path.display(), %error, "cannot write a state file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocg-durable-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn write_private_replaces_the_file_with_mode_0600() {
        let dir = temp_dir("write");
        let path = dir.join("state.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!path.with_extension("tmp").exists(), "the temporary file was renamed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_burst_of_changes_is_one_write_of_the_newest_state() {
        let dir = temp_dir("debounce");
        let path = dir.join("state.json");
        let state = Rc::new(Cell::new(0u32));
        let snapshots = Rc::new(Cell::new(0u32));
        let file = {
            let (state, snapshots) = (Rc::clone(&state), Rc::clone(&snapshots));
            DebouncedFile::new(
                path.clone(),
                Duration::from_millis(200),
                Box::new(move || {
                    snapshots.set(snapshots.get() + 1);
                    state.get().to_string().into_bytes()
                }),
            )
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, async {
            for value in 1..=50 {
                state.set(value);
                file.mark_dirty();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(!path.exists(), "nothing is written on the caller's path");
            // The blocking write runs on a real thread: let paused time move until it lands.
            for _ in 0..200 {
                if std::fs::read(&path).map(|b| b == b"50").unwrap_or(false) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert_eq!(std::fs::read(&path).unwrap(), b"50");
        assert_eq!(snapshots.get(), 1, "fifty changes within the delay make one snapshot");
        state.set(51);
        file.inner.dirty.set(true);
        file.flush_now();
        assert_eq!(std::fs::read(&path).unwrap(), b"51", "flush_now writes a pending change at once");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
