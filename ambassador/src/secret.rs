//! Secrets: a type that never prints its value, and the sources a secret is read from
//! (`value`, `env`, `file`). A file source is watched and re-read when it changes, including
//! Kubernetes' swap of the `..data` symlink in a mounted Secret, so a rotation needs no restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret value. Debug, Display and Serialize print `<redacted>`; only `expose` gives the
/// value, at the one place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Where a secret comes from: `{value: ...}`, `{env: NAME}` or `{file: /path}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "lowercase",
    try_from = "SourceFields",
    into = "SourceFields"
)]
pub enum SecretSource {
    /// Inline in the config (fine for tests; prefer env or file).
    Value(Secret),
    /// An environment variable, read at start.
    Env(String),
    /// A file, re-read when it changes; one trailing newline is ignored.
    File(PathBuf),
}

/// The YAML form of a source: a mapping with exactly one of the three keys (YAML documents
/// read through serde_norway give enums only as tags, which operators do not write).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
}

impl TryFrom<SourceFields> for SecretSource {
    type Error = &'static str;
    fn try_from(f: SourceFields) -> Result<SecretSource, &'static str> {
        match (f.value, f.env, f.file) {
            (Some(v), None, None) => Ok(SecretSource::Value(v)),
            (None, Some(e), None) => Ok(SecretSource::Env(e)),
            (None, None, Some(p)) => Ok(SecretSource::File(p)),
            _ => Err("set exactly one of value, env and file"),
        }
    }
}

impl From<SecretSource> for SourceFields {
    fn from(s: SecretSource) -> SourceFields {
        match s {
            SecretSource::Value(v) => SourceFields {
                value: Some(v),
                ..Default::default()
            },
            SecretSource::Env(e) => SourceFields {
                env: Some(e),
                ..Default::default()
            },
            SecretSource::File(p) => SourceFields {
                file: Some(p),
                ..Default::default()
            },
        }
    }
}

/// The current value of a secret source; file sources follow the file.
pub struct SecretCell {
    current: Arc<ArcSwap<Secret>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

fn read_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

impl SecretCell {
    /// Read the source now; for a file, watch its directory for changes. The error names the
    /// variable or the file, never a value.
    pub fn open(source: &SecretSource) -> Result<SecretCell, String> {
        match source {
            SecretSource::Value(s) => Ok(SecretCell::fixed(s.clone())),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(SecretCell::fixed(Secret::new(v))),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            },
            SecretSource::File(path) => {
                let current = Arc::new(ArcSwap::from_pointee(read_file(path)?));
                let watcher = watch(path.clone(), current.clone());
                Ok(SecretCell {
                    current,
                    _watcher: watcher,
                })
            }
        }
    }

    pub fn fixed(secret: Secret) -> SecretCell {
        SecretCell {
            current: Arc::new(ArcSwap::from_pointee(secret)),
            _watcher: None,
        }
    }

    /// The value now (one atomic load).
    pub fn get(&self) -> arc_swap::Guard<Arc<Secret>> {
        self.current.load()
    }
}

/// Watch the file's directory (editors replace files; Kubernetes swaps `..data`); on an
/// event there that may be the file's (`may_change`), re-read the file and keep the new
/// value if it reads and differs. A file that is briefly missing or empty during a swap
/// keeps the previous value.
fn watch(path: PathBuf, current: Arc<ArcSwap<Secret>>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    // One file: one directory.
    let dir = proxy_core::watch::dirs_of(std::slice::from_ref(&path)).pop()?;
    let file = path.clone();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only changes that may be the file's: our own read of the file is an event in its
        // directory too, and reacting to it would read the file again, without end.
        if !res.is_ok_and(|e| may_change(&e, std::slice::from_ref(&file))) {
            return;
        }
        match read_file(&file) {
            Ok(next) if **current.load() != next => {
                current.store(Arc::new(next));
                tracing::info!(file = %file.display(), "secret file changed; using the new value");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "secret file unreadable; keeping the previous value")
            }
        }
    })
    .map_err(|e| tracing::warn!(file = %path.display(), error = %e, "cannot watch the secret file; changes need a restart"))
    .ok()?;
    w.watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the secret's directory; changes need a restart"))
        .ok()?;
    Some(w)
}

/// [`proxy_core::watch::may_change`] for a `notify` event: whether it may have changed one
/// of `files`. (The ambassador reads secret files on `notify`'s thread: it has more than
/// one thread anyway, and the secret's read must not wait for its runtime.)
fn may_change(event: &notify::Event, files: &[PathBuf]) -> bool {
    use proxy_core::watch::DirEvent;
    let change = is_change(&event.kind);
    let rescan = event.need_rescan();
    if event.paths.is_empty() {
        let seen = DirEvent {
            change,
            name: None,
            rescan,
        };
        return proxy_core::watch::may_change(&seen, files);
    }
    event.paths.iter().any(|p| {
        let seen = DirEvent {
            change,
            name: p.file_name(),
            rescan,
        };
        proxy_core::watch::may_change(&seen, files)
    })
}

/// An event that may have changed a file's content (not an open, a read or a close
/// without writing).
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        EventKind::Any => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_notify_events_that_may_be_the_files_count() {
        use notify::event::{CreateKind, DataChange, Flag, ModifyKind, RenameMode};
        use notify::{Event, EventKind};
        let write = |path: &str| {
            Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any))).add_path(path.into())
        };
        let files = [PathBuf::from("/etc/secrets/token")];
        assert!(may_change(&write("/etc/secrets/token"), &files));
        let renamed = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/etc/secrets/.token.tmp".into())
            .add_path("/etc/secrets/token".into());
        assert!(may_change(&renamed, &files));
        let swap =
            Event::new(EventKind::Create(CreateKind::Any)).add_path("/etc/secrets/..data".into());
        assert!(may_change(&swap, &files));
        assert!(may_change(&Event::new(EventKind::Any), &files));
        let rescan = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(may_change(&rescan, &files));
        assert!(!may_change(&write("/etc/secrets/other"), &files));
        let read = Event::new(EventKind::Access(notify::event::AccessKind::Read))
            .add_path("/etc/secrets/token".into());
        assert!(!may_change(&read, &files));
    }

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        let src = SecretSource::Value(s);
        assert!(!serde_json::to_string(&src).unwrap().contains("hunter2"));
        assert!(!format!("{src:?}").contains("hunter2"));
    }

    #[test]
    fn sources_read_from_yaml_mappings() {
        let s: SecretSource = serde_norway::from_str("{env: KEY}").unwrap();
        assert_eq!(s, SecretSource::Env("KEY".into()));
        let e = serde_norway::from_str::<SecretSource>("{env: A, file: b}").unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let e = serde_norway::from_str::<SecretSource>("{vault: x}").unwrap_err();
        assert!(e.to_string().contains("vault"), "{e}");
    }

    #[test]
    fn sources_say_what_is_missing_without_values() {
        let e = SecretCell::open(&SecretSource::Env("AMBASSADOR_TEST_UNSET_VAR".into()))
            .err()
            .unwrap();
        assert!(e.contains("AMBASSADOR_TEST_UNSET_VAR"), "{e}");
        let e = SecretCell::open(&SecretSource::File("/nonexistent/secret".into()))
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent/secret"), "{e}");
    }

    #[test]
    fn file_source_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "one\n").unwrap();
        let cell = SecretCell::open(&SecretSource::File(path.clone())).unwrap();
        assert_eq!(cell.get().expose(), "one");
        std::fs::write(dir.path().join("key.tmp"), "two\n").unwrap();
        std::fs::rename(dir.path().join("key.tmp"), &path).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cell.get().expose() != "two" {
            assert!(
                std::time::Instant::now() < deadline,
                "the change was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn kubernetes_data_symlink_swap_is_followed() {
        // The layout of a mounted Secret: key -> ..data/key, ..data -> ..<timestamp>.
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_01")).unwrap();
        std::fs::write(d.join("..2026_01/key"), "old-value").unwrap();
        symlink("..2026_01", d.join("..data")).unwrap();
        symlink("..data/key", d.join("key")).unwrap();
        let cell = SecretCell::open(&SecretSource::File(d.join("key"))).unwrap();
        assert_eq!(cell.get().expose(), "old-value");
        std::fs::create_dir(d.join("..2026_02")).unwrap();
        std::fs::write(d.join("..2026_02/key"), "new-value").unwrap();
        symlink("..2026_02", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(d.join("..2026_01")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while cell.get().expose() != "new-value" {
            assert!(
                std::time::Instant::now() < deadline,
                "the swap was not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
