//! `adapter tail`: follows files like `tail -F`, with checkpoints.
//!
//! Every poll interval the patterns are expanded and each path is stat'ed. A file is known
//! by its identity (device, inode and a fingerprint of its first line), not its name, so:
//! - rename rotation: the old inode shows up under its new name (or under none) and is read
//!   to its end; the new file at the old name is a new identity, read from its start;
//! - copytruncate: the copy is recognised by its fingerprint and the bytes just before the
//!   read position, and read from where the original was; the truncated original is read
//!   again from its start;
//! - deletion: the open file is read to its end, then closed after `rotate_wait`;
//! - inode reuse: the same inode with another first line is a new file.
//!
//! Files that left the patterns are read first in every pass, so a rotated file is read to
//! its end before its successor. Offsets are marked in the batches and committed by the
//! output only once it accepted the records.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use regex::Regex;
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64;

use super::checkpoint::{Checkpoints, Entry, FINGERPRINT_BYTES, FileKey, TAIL_HASH_BYTES};
use super::lines::LineSplitter;
use crate::metrics::Stats;
use crate::pipeline::{Annotation, BatchSink, Mark, Stream, json_string};

/// Bytes read from one file before the next file gets its turn.
const READ_SLICE: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct TailConfig {
    pub patterns: Vec<String>,
    pub poll_interval: Duration,
    /// How long a file that left the patterns (rotated away, deleted) stays open after its
    /// last read data, for writes that still reach it.
    pub rotate_wait: Duration,
}

#[derive(Debug, Error)]
pub enum PatternError {
    #[error("pattern `{0}`: wildcards are only supported in the file name, not in directories")]
    WildDirectory(String),
    #[error("pattern `{0}` has no file name")]
    NoFileName(String),
}

/// A path or glob: a directory and a file-name pattern (`*`, `?`, `[...]`).
#[derive(Debug, Clone)]
pub struct Pattern {
    dir: PathBuf,
    name: Regex,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let path = Path::new(text);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| PatternError::NoFileName(text.to_owned()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            return Err(PatternError::WildDirectory(text.to_owned()));
        }
        let mut re = String::from("^");
        let mut chars = name.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => {
                    let mut class = String::from("[");
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        if c == '\\' {
                            class.push('\\');
                        }
                        class.push(if c == '!' && class.len() == 1 { '^' } else { c });
                    }
                    if closed {
                        class.push(']');
                        re.push_str(&class);
                    } else {
                        re.push_str(&regex::escape(&class));
                    }
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        Ok(Pattern {
            dir: dir.to_owned(),
            name: Regex::new(&re).map_err(|_| PatternError::NoFileName(text.to_owned()))?,
        })
    }

    fn expand(&self, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str()
                && self.name.is_match(name)
            {
                out.push(entry.path());
            }
        }
    }
}

/// A file being followed.
struct Tracked {
    key: FileKey,
    path: PathBuf,
    file: File,
    splitter: LineSplitter,
    /// Created once the fingerprint is known (its records carry the identity).
    stream: Option<Stream>,
    /// Where the output should resume, and the hash of the bytes before it.
    safe: u64,
    safe_hash: u64,
    marked: Option<u64>,
    read: ReadTail,
    /// When the file was last seen under a matching path missing; `None` while present.
    gone_since: Option<Instant>,
    last_data: Instant,
    size: u64,
}

impl Tracked {
    /// The splitter starts over at `offset`: what was noted of the reads no longer applies.
    fn restart_at(&mut self, offset: u64) {
        self.splitter = LineSplitter::new(self.splitter_cap(), offset);
        self.read = ReadTail::default();
    }

    /// Output may resume at `safe`: remember it with the hash of the bytes before it (the
    /// pair recognises a copy of this file, see [`Tailer::copy_of`]) and mark it in the
    /// batch, to be committed once the output has taken the records before it.
    fn mark_at(&mut self, safe: u64, sink: &mut BatchSink) {
        let hash = self.read.hash_before(&self.file, safe);
        self.safe = safe;
        self.safe_hash = hash;
        self.marked = Some(safe);
        sink.mark(Mark {
            key: self.key,
            path: self.path.to_string_lossy().into_owned(),
            offset: Some(safe),
            tail_hash: hash,
        });
    }

    fn splitter_cap(&self) -> usize {
        self.stream
            .as_ref()
            .map_or(1, |s| s.max_line_bytes().saturating_add(1))
    }
}

/// What was last read of a file, to hash the bytes before a line end as they were read:
/// hashing them again from the file later could see a copytruncate's new content, and the
/// copy would then not be recognised (and be read again whole).
#[derive(Default)]
struct ReadTail {
    /// The last bytes read (at most [`TAIL_HASH_BYTES`]), just before the read position.
    window: Vec<u8>,
    /// The end of the last complete line read, and the hash of the bytes before it.
    line_end_hash: Option<(u64, u64)>,
}

impl ReadTail {
    /// `data` was read at `pos` and went through the splitter, whose last line now ends at
    /// `end`.
    fn note(&mut self, end: u64, pos: u64, data: &[u8]) {
        if end >= pos && end <= pos + data.len() as u64 {
            let in_data = &data[..(end - pos) as usize];
            let need = end.min(TAIL_HASH_BYTES as u64) as usize;
            if in_data.len() >= need {
                self.line_end_hash = Some((end, xxh3_64(&in_data[in_data.len() - need..])));
            } else if self.window.len() + in_data.len() >= need {
                let mut before = self.window[self.window.len() + in_data.len() - need..].to_vec();
                before.extend_from_slice(in_data);
                self.line_end_hash = Some((end, xxh3_64(&before)));
            } else {
                self.line_end_hash = None;
            }
        }
        let keep = data.len().min(TAIL_HASH_BYTES);
        self.window.extend_from_slice(&data[data.len() - keep..]);
        let excess = self.window.len().saturating_sub(TAIL_HASH_BYTES);
        self.window.drain(..excess);
    }

    /// The hash of the bytes before `safe`: as read when `safe` is the last line end,
    /// else read again from `file`.
    fn hash_before(&self, file: &File, safe: u64) -> u64 {
        match self.line_end_hash {
            Some((end, hash)) if end == safe => hash,
            _ => tail_hash(file, safe).unwrap_or(0),
        }
    }
}

/// What is remembered of a file that was truncated or closed, to recognise its copy.
struct Ghost {
    fingerprint: u64,
    offset: u64,
    tail_hash: u64,
    until: Instant,
}

/// The fingerprint of a file: xxh3 of its first line (at most [`FINGERPRINT_BYTES`]),
/// or `None` while that line is not complete (unless `force`: the file is going away).
fn fingerprint(file: &File, force: bool) -> io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let n = read_full_at(file, &mut buf, 0)?;
    let head = &buf[..n];
    match memchr::memchr(b'\n', head) {
        Some(end) => Ok(Some(xxh3_64(&head[..=end]))),
        None if n == FINGERPRINT_BYTES || (force && n > 0) => Ok(Some(xxh3_64(head))),
        None => Ok(None),
    }
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(n)
}

/// Hash of the (at most [`TAIL_HASH_BYTES`]) bytes before `offset`; `None` if they are no
/// longer all there.
fn tail_hash(file: &File, offset: u64) -> Option<u64> {
    let len = offset.min(TAIL_HASH_BYTES as u64) as usize;
    let mut buf = [0u8; TAIL_HASH_BYTES];
    let n = read_full_at(file, &mut buf[..len], offset - len as u64).ok()?;
    (n == len).then(|| xxh3_64(&buf[..len]))
}

/// Builds the parser stream of a newly followed file.
pub type StreamFactory<'a> = dyn FnMut(Annotation) -> Stream + Send + 'a;

pub struct Tailer<'a> {
    config: TailConfig,
    patterns: Vec<Pattern>,
    checkpoints: Option<Checkpoints>,
    /// Entries of the state file not yet matched to a file (only until the first scan).
    orphans: Vec<Entry>,
    files: HashMap<(u64, u64), Tracked>,
    ghosts: Vec<Ghost>,
    /// Files that look like an incomplete copy, with their size at the last scan.
    settling: HashMap<(u64, u64), u64>,
    make_stream: Box<StreamFactory<'a>>,
    stats: Arc<Stats>,
    buf: Vec<u8>,
}

impl<'a> Tailer<'a> {
    pub fn new(
        config: TailConfig,
        checkpoints: Option<Checkpoints>,
        make_stream: Box<StreamFactory<'a>>,
        stats: Arc<Stats>,
    ) -> Result<Self, PatternError> {
        let patterns = config
            .patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<_, _>>()?;
        let orphans = checkpoints
            .as_ref()
            .map(Checkpoints::all)
            .unwrap_or_default();
        Ok(Tailer {
            config,
            patterns,
            checkpoints,
            orphans,
            files: HashMap::new(),
            ghosts: Vec::new(),
            settling: HashMap::new(),
            make_stream,
            stats,
            buf: vec![0; super::READ_CHUNK],
        })
    }

    /// Follows the files until `stop` is set, then delivers what was read and returns. A
    /// record still being joined and a line without its newline are left for the next run
    /// (the checkpoint stays before them).
    pub fn run(&mut self, sink: &mut BatchSink, stop: &AtomicBool) {
        let mut first = true;
        while !stop.load(Ordering::Acquire) {
            self.scan(sink);
            if first {
                // Checkpoints of files that no longer exist are forgotten.
                for entry in std::mem::take(&mut self.orphans) {
                    sink.mark(Mark {
                        key: entry.key,
                        path: entry.path,
                        offset: None,
                        tail_hash: 0,
                    });
                }
                self.stats.set_ready();
                first = false;
            }
            let busy = self.read_all(sink, stop);
            self.mark_all(sink);
            if !sink.send() {
                return;
            }
            self.update_lag();
            if !busy {
                std::thread::sleep(self.config.poll_interval);
            }
        }
        self.mark_all(sink);
        sink.send();
    }

    fn update_lag(&self) {
        let Some(cp) = &self.checkpoints else { return };
        let lag: u64 = self
            .files
            .values()
            .map(|t| {
                let committed = cp.get(&t.key).map_or(0, |e| e.offset);
                t.size.saturating_sub(committed)
            })
            .sum();
        self.stats
            .checkpoint_lag
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        self.stats
            .files_watched
            .set(i64::try_from(self.files.len()).unwrap_or(i64::MAX));
    }

    /// Finds new files, renamed and vanished ones, truncation and inode reuse.
    fn scan(&mut self, sink: &mut BatchSink) {
        let mut paths = Vec::new();
        for pattern in &self.patterns {
            pattern.expand(&mut paths);
        }
        paths.sort();
        paths.dedup();
        let now = Instant::now();
        let mut seen = Vec::with_capacity(paths.len());
        for path in paths {
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let id = (meta.dev(), meta.ino());
            seen.push(id);
            if let Some(t) = self.files.get_mut(&id) {
                t.path = path;
                t.gone_since = None;
                t.size = meta.len();
                continue;
            }
            self.open(path, id, meta.len(), sink);
        }
        self.ghosts.retain(|g| g.until > now);
        let ids: Vec<(u64, u64)> = self.files.keys().copied().collect();
        for id in ids {
            if !seen.contains(&id) {
                if let Some(t) = self.files.get_mut(&id)
                    && t.gone_since.is_none()
                {
                    t.gone_since = Some(now);
                }
                continue;
            }
            self.check_replaced(id, sink);
        }
    }

    /// Same inode, but truncated or holding another file (a reused inode): start over.
    fn check_replaced(&mut self, id: (u64, u64), sink: &mut BatchSink) {
        let Some(t) = self.files.get(&id) else { return };
        let read_to = t.splitter.position();
        let truncated = t.size < read_to;
        let replaced = t.stream.is_some()
            && matches!(fingerprint(&t.file, false), Ok(Some(fp)) if fp != t.key.fingerprint);
        if !truncated && !replaced {
            return;
        }
        let Some(old) = self.files.remove(&id) else {
            return;
        };
        self.ghosts.push(Ghost {
            fingerprint: old.key.fingerprint,
            offset: old.safe,
            tail_hash: old.safe_hash,
            until: Instant::now() + self.config.rotate_wait.max(Duration::from_secs(5)),
        });
        sink.mark(Mark {
            key: old.key,
            path: old.path.to_string_lossy().into_owned(),
            offset: None,
            tail_hash: 0,
        });
        self.start(old.path, id, old.file, 0, None, old.size);
    }

    fn open(&mut self, path: PathBuf, id: (u64, u64), size: u64, sink: &mut BatchSink) {
        let Ok(file) = File::open(&path) else { return };
        // The file may have been replaced between stat and open.
        match file.metadata() {
            Ok(meta) if (meta.dev(), meta.ino()) == id => {}
            _ => return,
        }
        // A file is followed once its first line is complete: its identity needs it.
        let Some(fp) = fingerprint(&file, false).ok().flatten() else {
            return;
        };
        let key = FileKey {
            dev: id.0,
            ino: id.1,
            fingerprint: fp,
        };
        let entry = self
            .checkpoints
            .as_ref()
            .and_then(|cp| cp.get(&key))
            .filter(|e| e.offset <= size);
        let mut start_at = 0;
        if let Some(entry) = entry {
            self.orphans.retain(|o| o.key != key);
            start_at = entry.offset;
        } else if let Some(offset) = self.copy_of(&file, fp, size, sink) {
            start_at = offset;
        } else if self.shorter_than_a_known_copy(fp, size)
            && self.settling.insert(id, size) != Some(size)
        {
            // Perhaps a copy still being written (copytruncate in progress): look again at
            // the next scan. Once its size holds still and it is still no copy of what was
            // read, it is a new file, read from its start (a duplicate is better than a loss).
            return;
        }
        self.settling.remove(&id);
        self.start(path, id, file, start_at, Some(fp), size);
    }

    /// Whether a file with this fingerprint was read further than `size`.
    fn shorter_than_a_known_copy(&self, fp: u64, size: u64) -> bool {
        self.files
            .values()
            .filter(|t| t.key.fingerprint == fp)
            .map(|t| t.safe)
            .chain(
                self.ghosts
                    .iter()
                    .filter(|g| g.fingerprint == fp)
                    .map(|g| g.offset),
            )
            .chain(
                self.orphans
                    .iter()
                    .filter(|e| e.key.fingerprint == fp)
                    .map(|e| e.offset),
            )
            .any(|offset| offset > size)
    }

    /// If `file` is a copy of a file read before (copytruncate), the offset up to which
    /// its content was already read.
    fn copy_of(&mut self, file: &File, fp: u64, size: u64, sink: &mut BatchSink) -> Option<u64> {
        let live = self
            .files
            .values()
            .filter(|t| t.key.fingerprint == fp && t.stream.is_some())
            .map(|t| (t.safe, t.safe_hash));
        let live_ids: Vec<(u64, u64)> = self
            .files
            .iter()
            .filter(|(_, t)| t.key.fingerprint == fp && t.stream.is_some())
            .map(|(id, _)| *id)
            .collect();
        let ghosts = self
            .ghosts
            .iter()
            .filter(|g| g.fingerprint == fp)
            .map(|g| (g.offset, g.tail_hash));
        let stored: Vec<(u64, u64, FileKey)> = self
            .orphans
            .iter()
            .filter(|e| e.key.fingerprint == fp)
            .map(|e| (e.offset, e.tail_hash, e.key))
            .collect();
        let candidates: Vec<(u64, u64)> = live
            .chain(ghosts)
            .chain(stored.iter().map(|(o, h, _)| (*o, *h)))
            .collect();
        let found = candidates
            .into_iter()
            .filter(|(offset, hash)| {
                *offset > 0 && *offset <= size && tail_hash(file, *offset) == Some(*hash)
            })
            .map(|(offset, _)| offset)
            .max()?;
        // The copy takes over the original's content up to the copy's size: the original
        // continues after it (or from its start once truncated), so no line is read twice.
        for id in live_ids {
            if let Some(t) = self.files.get_mut(&id)
                && t.safe == found
                && t.splitter.position() < size
            {
                t.restart_at(size);
                t.safe = size;
                // The copy holds the same bytes up to `size`, and is not being truncated.
                t.safe_hash = tail_hash(file, size).unwrap_or(0);
            }
        }
        // A copy of a file that existed before the restart takes over its checkpoint.
        for (offset, _, key) in stored {
            if offset == found {
                self.orphans.retain(|o| o.key != key);
                sink.mark(Mark {
                    key,
                    path: String::new(),
                    offset: None,
                    tail_hash: 0,
                });
            }
        }
        Some(found)
    }

    fn start(
        &mut self,
        path: PathBuf,
        id: (u64, u64),
        file: File,
        offset: u64,
        fp: Option<u64>,
        size: u64,
    ) {
        let mut t = Tracked {
            key: FileKey {
                dev: id.0,
                ino: id.1,
                fingerprint: 0,
            },
            path,
            file,
            splitter: LineSplitter::new(1, offset),
            stream: None,
            safe: offset,
            safe_hash: 0,
            marked: None,
            read: ReadTail::default(),
            gone_since: None,
            last_data: Instant::now(),
            size,
        };
        if let Some(fp) = fp {
            self.attach_stream(&mut t, fp);
        }
        t.safe_hash = tail_hash(&t.file, offset).unwrap_or(0);
        self.files.insert(id, t);
    }

    fn attach_stream(&mut self, t: &mut Tracked, fp: u64) {
        t.key.fingerprint = fp;
        let stream = (self.make_stream)(Annotation::File {
            path_json: json_string(&t.path.to_string_lossy()),
            identity: t.key.identity(),
        });
        t.splitter = LineSplitter::new(
            stream.max_line_bytes().saturating_add(1),
            t.splitter.safe_offset(),
        );
        t.stream = Some(stream);
    }

    /// Reads every file to its current end; files that left the patterns first. Returns
    /// whether any data was read.
    fn read_all(&mut self, sink: &mut BatchSink, stop: &AtomicBool) -> bool {
        let mut order: Vec<((u64, u64), bool)> = self
            .files
            .iter()
            .map(|(id, t)| (*id, t.gone_since.is_none()))
            .collect();
        order.sort_by_key(|(id, present)| (*present, self.files.get(id).map(|t| t.path.clone())));
        let mut busy = false;
        let now = Instant::now();
        for (id, _) in order {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let Some(mut t) = self.files.remove(&id) else {
                continue;
            };
            let gone = t.gone_since.is_some();
            if t.stream.is_none() {
                match fingerprint(&t.file, gone) {
                    Ok(Some(fp)) => self.attach_stream(&mut t, fp),
                    _ => {
                        if gone
                            && now.duration_since(t.gone_since.unwrap_or(now))
                                >= self.config.rotate_wait
                        {
                            // Never held a line: nothing to deliver or remember.
                            continue;
                        }
                        self.files.insert(id, t);
                        continue;
                    }
                }
            }
            let (read, eof) = self.read_file(&mut t, sink);
            busy |= read > 0;
            if read > 0 {
                t.last_data = now;
            }
            if let Some(stream) = t.stream.as_mut() {
                stream.flush(now, false, sink);
            }
            let expired = gone
                && eof
                && now.duration_since(t.last_data) >= self.config.rotate_wait
                && t.gone_since
                    .is_some_and(|g| now.duration_since(g) >= self.config.rotate_wait);
            if expired {
                // The file is done: its last line without newline and a pending joined
                // record are delivered, then its checkpoint is forgotten.
                if let Some(stream) = t.stream.as_mut() {
                    t.splitter
                        .finish(|line| stream.line(line.bytes, line.start, line.end, sink));
                    stream.flush(now, true, sink);
                    stream.publish();
                }
                self.ghosts.push(Ghost {
                    fingerprint: t.key.fingerprint,
                    offset: t.splitter.safe_offset(),
                    tail_hash: t.read.hash_before(&t.file, t.splitter.safe_offset()),
                    until: now + self.config.rotate_wait,
                });
                sink.mark(Mark {
                    key: t.key,
                    path: t.path.to_string_lossy().into_owned(),
                    offset: None,
                    tail_hash: 0,
                });
                continue;
            }
            self.files.insert(id, t);
        }
        busy
    }

    /// Reads one file from its position, at most [`READ_SLICE`] bytes. Returns the bytes
    /// read and whether its end was reached.
    fn read_file(&mut self, t: &mut Tracked, sink: &mut BatchSink) -> (usize, bool) {
        let mut total = 0;
        loop {
            let Some(stream) = t.stream.as_mut() else {
                return (total, true);
            };
            let pos = t.splitter.position();
            let n = match t.file.read_at(&mut self.buf, pos) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return (total, true),
            };
            if n == 0 {
                return (total, true);
            }
            total += n;
            t.splitter.feed(&self.buf[..n], |line| {
                stream.line(line.bytes, line.start, line.end, sink);
            });
            t.read.note(t.splitter.safe_offset(), pos, &self.buf[..n]);
            if sink.is_full() {
                stream.publish();
                let safe = stream.bound(t.splitter.safe_offset());
                t.mark_at(safe, sink);
                if !sink.send() {
                    return (total, false);
                }
            }
            if total >= READ_SLICE {
                return (total, false);
            }
        }
    }

    /// Adds a mark for every file whose deliverable position moved.
    fn mark_all(&mut self, sink: &mut BatchSink) {
        for t in self.files.values_mut() {
            let Some(stream) = t.stream.as_mut() else {
                continue;
            };
            stream.publish();
            let safe = stream.bound(t.splitter.safe_offset());
            if t.marked != Some(safe) {
                t.mark_at(safe, sink);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use super::*;
    use crate::parse::{Format, Parser, ParserConfig};
    use crate::pipeline::channel;

    #[test]
    fn the_hash_before_a_line_end_is_taken_from_the_bytes_as_read() {
        let data: Vec<u8> = (0..400)
            .flat_map(|i| format!("line {i} {}\n", "x".repeat(i % 37)).into_bytes())
            .collect();
        for chunk in [1, 7, 100, 300, 5000] {
            let mut read = ReadTail::default();
            let mut pos = 0;
            let mut noted = 0;
            while pos < data.len() {
                let part = &data[pos..(pos + chunk).min(data.len())];
                // The splitter's last line end after this read.
                let end = data[..pos + part.len()]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1) as u64;
                read.note(end, pos as u64, part);
                if let Some((at, hash)) = read.line_end_hash {
                    let at = at as usize;
                    let need = at.min(TAIL_HASH_BYTES);
                    assert_eq!(
                        hash,
                        xxh3_64(&data[at - need..at]),
                        "chunk {chunk}, end {at}"
                    );
                    noted += 1;
                }
                pos += part.len();
            }
            assert!(noted > 0, "chunk {chunk}: no line end noted");
            assert_eq!(read.window, data[data.len() - TAIL_HASH_BYTES..]);
        }
    }

    #[test]
    fn patterns_match_file_names_only() {
        let p = Pattern::parse("/var/log/app-?.log*").expect("pattern");
        assert!(p.name.is_match("app-1.log"));
        assert!(p.name.is_match("app-1.log.2"));
        assert!(!p.name.is_match("app-12.log"));
        let p = Pattern::parse("x[!0-9].log").expect("pattern");
        assert_eq!(p.dir, Path::new("."));
        assert!(p.name.is_match("xa.log") && !p.name.is_match("x1.log"));
        assert!(matches!(
            Pattern::parse("/var/*/a.log"),
            Err(PatternError::WildDirectory(_))
        ));
    }

    fn append(path: &Path, from: u32, to: u32) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        for i in from..to {
            writeln!(f, "seq={i}").expect("write");
        }
    }

    fn seqs(out: &Mutex<Vec<u8>>) -> Vec<u32> {
        let out = out.lock().expect("lock");
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .filter_map(|v| v["seq"].as_str()?.parse().ok())
            .collect()
    }

    fn wait_for(out: &Mutex<Vec<u8>>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while seqs(out).len() < n {
            assert!(Instant::now() < deadline, "only {:?}", seqs(out));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn rename_copytruncate_and_deletion_deliver_every_line_once() {
        let dir = std::env::temp_dir().join(format!("adapter-tail-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let log = dir.join("a.log");
        append(&log, 0, 100);
        let stats = Stats::new(false);
        let factory_stats = Arc::clone(&stats);
        let factory = Box::new(move |annotation| {
            let parser = Parser::new(ParserConfig::new(Format::Logfmt)).expect("parser");
            Stream::new(
                parser,
                None,
                annotation,
                factory_stats.stream("file", "logfmt"),
            )
        });
        let config = TailConfig {
            patterns: vec![dir.join("a.log*").to_string_lossy().into_owned()],
            poll_interval: Duration::from_millis(5),
            rotate_wait: Duration::from_millis(50),
        };
        let mut tailer = Tailer::new(config, None, factory, Arc::clone(&stats)).expect("tailer");
        let (tx, rx) = channel();
        let out = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&out);
        let collector = std::thread::spawn(move || {
            while let Ok(batch) = rx.recv() {
                collected
                    .lock()
                    .expect("lock")
                    .extend_from_slice(&batch.data);
            }
        });
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut sink = BatchSink::new(tx, Arc::clone(&stats));
                tailer.run(&mut sink, &stop);
            });
            wait_for(&out, 100);
            // rename + create
            fs::rename(&log, dir.join("a.log.1")).expect("rename");
            append(&dir.join("a.log.1"), 100, 110);
            append(&log, 110, 200);
            wait_for(&out, 200);
            // copytruncate, with lines the tailer has not read yet when the copy is made
            append(&log, 200, 300);
            fs::copy(&log, dir.join("a.log.2")).expect("copy");
            fs::OpenOptions::new()
                .write(true)
                .open(&log)
                .and_then(|f| f.set_len(0))
                .expect("truncate");
            append(&log, 300, 400);
            wait_for(&out, 400);
            // deletion of a file with unread lines
            append(&dir.join("a.log.1"), 400, 410);
            fs::remove_file(dir.join("a.log.1")).expect("delete");
            wait_for(&out, 410);
            stop.store(true, Ordering::Release);
        });
        collector.join().expect("collector");
        let mut got = seqs(&out);
        got.sort_unstable();
        assert_eq!(got, (0..410).collect::<Vec<_>>());
        let _ = fs::remove_dir_all(&dir);
    }
}
