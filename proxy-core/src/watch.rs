//! Changes to a few files (the config, the certificates), seen through their directories'
//! inotify events on the runtime's own IO driver: no thread of its own.
//!
//! Why not the `notify` crate: it reads inotify on a thread of its own, and a second thread
//! costs every request. glibc runs its malloc without the arena lock, and system calls
//! without their cancellation bookkeeping, only while a process has one thread, and it
//! never goes back once a thread has existed. With `notify`'s thread beside it, a
//! one-worker sidecar paid 20 locked instructions and 290 instructions more per request
//! (callgrind; README, Performance).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
use tokio::sync::mpsc;

/// What one directory event says, as [`may_change`] needs it.
#[derive(Clone, Copy, Debug)]
pub struct DirEvent<'a> {
    /// It may have changed content: not only an open, a read or a close without writing.
    pub change: bool,
    /// The entry it is about; `None` when it names none.
    pub name: Option<&'a OsStr>,
    /// Events were lost (the queue overflowed): anything may have changed.
    pub rescan: bool,
}

/// What is asked of inotify: every kind of event that may change what a file reads.
const WATCHED: WatchMask = WatchMask::MODIFY
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// The same kinds, as events report them (inotify's `IN_*` bits in both).
const CHANGES: EventMask = EventMask::from_bits_truncate(WATCHED.bits());

/// The directories holding `files` (each once).
pub fn dirs_of(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            f.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned()
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Watch the directories of `files`: the receiver gets `()` for each event that may have
/// changed one of them ([`may_change`]). The events come through the tokio runtime this is
/// called in; the watch ends when the receiver is dropped. An error names the directory
/// that cannot be watched.
pub fn files(files: Vec<PathBuf>) -> io::Result<mpsc::UnboundedReceiver<()>> {
    let inotify = Inotify::init()?;
    for dir in dirs_of(&files) {
        inotify
            .watches()
            .add(&dir, WATCHED)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    }
    let mut events = inotify.into_event_stream(vec![0u8; 4096])?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = tx.closed() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(e)) => {
                    let seen = DirEvent {
                        change: e.mask.intersects(CHANGES),
                        name: e.name.as_deref(),
                        rescan: e.mask.contains(EventMask::Q_OVERFLOW),
                    };
                    if may_change(&seen, &files) && tx.send(()).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read file change events any more");
                    return;
                }
                None => return,
            }
        }
    });
    Ok(rx)
}

/// An event in a watched directory that may have changed one of `files` (all in that
/// directory): a change to one of them, to the file a symlinked one points at in the same
/// directory, or to a `..`-named entry (Kubernetes swaps a volume's `..data` symlink); or
/// a change that names no file, or lost events, since those may hide anything.
///
/// Writes to the directory's other files are passed over: without this, a log written
/// beside a config file re-read that file after each burst of writes.
pub fn may_change(event: &DirEvent<'_>, files: &[PathBuf]) -> bool {
    if event.rescan {
        return true;
    }
    if !event.change {
        return false;
    }
    let Some(name) = event.name else {
        return true;
    };
    if name.as_encoded_bytes().starts_with(b"..")
        || files.iter().any(|f| f.file_name() == Some(name))
    {
        return true;
    }
    // Only for events no name matched: one `readlink` per file.
    files
        .iter()
        .filter_map(|f| link_target_name(f))
        .any(|t| t.as_os_str() == name)
}

/// The name a symlink at `file` points to, when that is an entry of the same directory
/// (`config.yaml -> config-v2.yaml`): editing the target changes what `file` reads.
fn link_target_name(file: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(file).ok()?;
    let same_dir = match target.parent() {
        None => true,
        Some(p) if p.as_os_str().is_empty() || p == Path::new(".") => true,
        Some(p) => Some(p) == file.parent(),
    };
    if same_dir {
        target.file_name().map(PathBuf::from)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn change(name: &str) -> DirEvent<'_> {
        DirEvent {
            change: true,
            name: Some(OsStr::new(name)),
            rescan: false,
        }
    }

    #[test]
    fn only_changes_that_may_be_the_files_count() {
        let files = [PathBuf::from("/etc/sidecar/config.yaml")];
        assert!(may_change(&change("config.yaml"), &files));
        assert!(may_change(&change("..data"), &files), "a volume's swap");
        assert!(!may_change(&change("access.log"), &files));
        assert!(!may_change(&change("config.yaml.bak"), &files));
        let read = DirEvent {
            change: false,
            ..change("config.yaml")
        };
        assert!(!may_change(&read, &files), "a read, ours included");
        let nameless = DirEvent {
            name: None,
            ..change("x")
        };
        assert!(may_change(&nameless, &files));
        let lost = DirEvent {
            change: false,
            name: None,
            rescan: true,
        };
        assert!(may_change(&lost, &files));
    }

    #[test]
    fn a_symlinked_files_target_in_the_same_directory_counts() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("config-v2.yaml");
        std::fs::write(&target, "a").unwrap();
        let link = dir.path().join("config.yaml");
        std::os::unix::fs::symlink("config-v2.yaml", &link).unwrap();
        assert!(may_change(&change("config-v2.yaml"), &[link]));
    }

    /// The whole path: inotify's events through the runtime's IO driver, filtered.
    #[tokio::test(flavor = "current_thread")]
    async fn a_change_to_the_file_is_reported_and_a_write_beside_it_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "a").unwrap();
        let mut rx = files(vec![file.clone()]).unwrap();
        // The other file's events first, then exactly one of the file's own (a change of
        // its mode is one IN_ATTRIB): had any of the first passed, it would come first and
        // the file's own would still be due after it.
        std::fs::write(dir.path().join("other.log"), "x").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions();
        std::fs::set_permissions(&file, mode).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got, Ok(Some(())), "the file's change is reported");
        let none = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(none.is_err(), "a write beside the file is not reported");
    }
}
