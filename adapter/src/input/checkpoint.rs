//! Where each followed file stands, kept in a state file across restarts.
//!
//! The output thread commits a file's offset only after the records before it were
//! accepted, and writes the whole state atomically (temporary file, fsync, rename, fsync of
//! the directory), so after a crash the file names either the old or the new state, never a
//! torn one. A file is recognised again by its identity: device and inode plus a
//! fingerprint of its first line, which catches an inode the file system reused for a new
//! file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The identity of a followed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    /// xxh3 of the file's first line (at most [`FINGERPRINT_BYTES`]).
    pub fingerprint: u64,
}

/// Bytes of a file's start that make its fingerprint (fewer when its first line is shorter).
pub const FINGERPRINT_BYTES: usize = 256;
/// Bytes before a committed offset whose hash recognises the same content in a copy.
pub const TAIL_HASH_BYTES: usize = 256;

impl FileKey {
    /// The id prefix records of this file carry: `dev:ino:fingerprint`.
    pub fn identity(&self) -> String {
        format!("{:x}-{:x}-{:016x}", self.dev, self.ino, self.fingerprint)
    }
}

/// One file's committed position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: FileKey,
    /// The path it was last seen at (informational; identity decides).
    pub path: String,
    pub offset: u64,
    pub tail_hash: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    files: Vec<Entry>,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read the state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the state file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write the state file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Committed offsets, shared between the output (which commits) and the tailer (which
/// reads them to start and to report the lag).
#[derive(Debug, Clone)]
pub struct Checkpoints {
    path: PathBuf,
    entries: Arc<Mutex<HashMap<FileKey, Entry>>>,
}

impl Checkpoints {
    /// Opens (creating the directory) and loads `dir/checkpoints.json`.
    pub fn open(dir: &Path) -> Result<Checkpoints, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("checkpoints.json");
        let entries = match fs::read(&path) {
            Ok(bytes) => {
                let state: StateFile =
                    serde_json::from_slice(&bytes).map_err(|err| CheckpointError::Invalid {
                        path: path.clone(),
                        reason: err.to_string(),
                    })?;
                state.files.into_iter().map(|e| (e.key, e)).collect()
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(source) => return Err(CheckpointError::Read { path, source }),
        };
        Ok(Checkpoints {
            path,
            entries: Arc::new(Mutex::new(entries)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, Entry>> {
        // A panic while holding this lock leaves a consistent map (single inserts/removes).
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &FileKey) -> Option<Entry> {
        self.lock().get(key).cloned()
    }

    /// Every committed entry (to recognise a file that changed inode, such as a copy).
    pub fn all(&self) -> Vec<Entry> {
        self.lock().values().cloned().collect()
    }

    /// Applies delivered marks; returns whether anything changed.
    pub fn apply(&self, marks: &[crate::pipeline::Mark]) -> bool {
        let mut entries = self.lock();
        let mut changed = false;
        for mark in marks {
            match mark.offset {
                Some(offset) => {
                    let entry = Entry {
                        key: mark.key,
                        path: mark.path.clone(),
                        offset,
                        tail_hash: mark.tail_hash,
                    };
                    if entries.get(&mark.key) != Some(&entry) {
                        entries.insert(mark.key, entry);
                        changed = true;
                    }
                }
                None => changed |= entries.remove(&mark.key).is_some(),
            }
        }
        changed
    }

    /// Writes the state file atomically.
    pub fn save(&self) -> Result<(), CheckpointError> {
        let mut files: Vec<Entry> = self.all();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let state = StateFile { version: 1, files };
        let bytes = serde_json::to_vec_pretty(&state).unwrap_or_default();
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Mark;

    #[test]
    fn committed_offsets_survive_a_reopen_and_forgotten_files_go() {
        let dir = std::env::temp_dir().join(format!("adapter-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let key = FileKey {
            dev: 1,
            ino: 2,
            fingerprint: 3,
        };
        let cp = Checkpoints::open(&dir).expect("open");
        let mark = |offset| Mark {
            key,
            path: "/x.log".into(),
            offset,
            tail_hash: 9,
        };
        assert!(cp.apply(&[mark(Some(10))]));
        assert!(!cp.apply(&[mark(Some(10))]));
        cp.save().expect("save");
        let again = Checkpoints::open(&dir).expect("reopen");
        assert_eq!(again.get(&key).map(|e| e.offset), Some(10));
        assert!(again.apply(&[mark(None)]));
        again.save().expect("save");
        assert!(Checkpoints::open(&dir).expect("reopen").all().is_empty());
        fs::write(dir.join("checkpoints.json"), b"{nope").expect("write");
        assert!(matches!(
            Checkpoints::open(&dir),
            Err(CheckpointError::Invalid { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
