//! The path from lines to the output: each source stream parses (and optionally joins)
//! its lines into JSON records appended to a batch; full batches go over a bounded channel
//! to the output thread, which delivers them and only then commits their checkpoints.
//!
//! The channel is the backpressure: when the output is slow the channel fills, `send`
//! blocks, and the sources stop reading. Memory is bounded by the channel's few batches,
//! one batch being built per reader, and one capped line or joined record per stream.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use crate::metrics::{Stats, StreamCounts};
use crate::parse::multiline::Joiner;
use crate::parse::{Outcome, Parser};
use crate::record::write_json_string;

/// A batch is handed to the output once it holds this many bytes of records.
pub const BATCH_BYTES: usize = 256 << 10;
/// Batches waiting for the output; with [`BATCH_BYTES`] this bounds buffered records.
pub const CHANNEL_BATCHES: usize = 4;

/// Where a file source stands after a batch: the output commits it once the batch is
/// delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub key: crate::input::checkpoint::FileKey,
    pub path: String,
    /// First byte not yet delivered; `None`: the file is gone, forget it.
    pub offset: Option<u64>,
    /// Hash of the bytes just before `offset`, to recognise the same content in a copy.
    pub tail_hash: u64,
}

/// Records on their way to the output.
#[derive(Debug, Default)]
pub struct Batch {
    /// JSON records, one per line.
    pub data: Vec<u8>,
    pub records: u64,
    pub marks: Vec<Mark>,
}

pub fn channel() -> (SyncSender<Batch>, Receiver<Batch>) {
    sync_channel(CHANNEL_BATCHES)
}

/// Fields added to every record of a stream, written once as JSON text.
#[derive(Debug, Clone, Default)]
pub enum Annotation {
    /// Records of `adapter parse` carry nothing extra.
    #[default]
    None,
    /// `"stream":"stdout"` for `adapter run`.
    Stream(&'static str),
    /// `"input":{"file":...,"offset":N,"id":"..."}` for `adapter tail`: the id is the file
    /// identity plus the offset of the record's first byte, stable across restarts.
    File { path_json: String, identity: String },
}

/// The batch a reader fills and hands to the output.
pub struct BatchSink {
    tx: SyncSender<Batch>,
    batch: Batch,
    stats: Arc<Stats>,
}

impl BatchSink {
    pub fn new(tx: SyncSender<Batch>, stats: Arc<Stats>) -> Self {
        BatchSink {
            tx,
            batch: Batch {
                data: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
                ..Batch::default()
            },
            stats,
        }
    }

    pub fn is_full(&self) -> bool {
        self.batch.data.len() >= BATCH_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.batch.records == 0 && self.batch.marks.is_empty()
    }

    pub fn mark(&mut self, mark: Mark) {
        if let Some(last) = self.batch.marks.iter_mut().find(|m| m.key == mark.key) {
            *last = mark;
        } else {
            self.batch.marks.push(mark);
        }
    }

    /// Hands the batch to the output, waiting while the output is behind. Returns false when
    /// the output has stopped (it failed; the caller stops reading).
    pub fn send(&mut self) -> bool {
        if self.is_empty() {
            return true;
        }
        let next = Batch {
            data: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            ..Batch::default()
        };
        let batch = std::mem::replace(&mut self.batch, next);
        self.stats.batch_queued();
        self.tx.send(batch).is_ok()
    }
}

/// One input stream: its parser (per-stream state such as the year and the detected
/// format), its optional line joiner and the fields added to its records.
pub struct Stream {
    parser: Parser,
    joiner: Option<Joiner>,
    annotation: Annotation,
    counts: StreamCounts,
}

impl Stream {
    pub fn new(
        parser: Parser,
        joiner: Option<Joiner>,
        annotation: Annotation,
        counts: StreamCounts,
    ) -> Self {
        Stream {
            parser,
            joiner,
            annotation,
            counts,
        }
    }

    pub fn max_line_bytes(&self) -> usize {
        self.parser.max_line_bytes()
    }

    /// The offset a checkpoint may name: not past the first line of a record still being
    /// joined.
    pub fn bound(&self, offset: u64) -> u64 {
        match self.joiner.as_ref().and_then(Joiner::pending_start) {
            Some(start) => start.min(offset),
            None => offset,
        }
    }

    /// One line read at `start`..`end` of the stream.
    pub fn line(&mut self, line: &[u8], start: u64, end: u64, sink: &mut BatchSink) {
        self.counts.line(line.len() as u64 + 1);
        match self.joiner.as_mut() {
            None => self.record(line, start, sink),
            Some(joiner) => {
                let mut done: Option<(Vec<u8>, u64)> = None;
                joiner.push(line, start, end, |text, at| {
                    done = Some((text.to_vec(), at))
                });
                if let Some((text, at)) = done {
                    self.record(&text, at, sink);
                }
            }
        }
    }

    /// Emits the record being joined if it waited for the flush timeout (or `force`).
    pub fn flush(&mut self, now: Instant, force: bool, sink: &mut BatchSink) {
        let Some(joiner) = self.joiner.as_mut() else {
            return;
        };
        if !force && !joiner.is_stale(now) {
            return;
        }
        let mut done: Option<(Vec<u8>, u64)> = None;
        joiner.flush(|text, at| done = Some((text.to_vec(), at)));
        if let Some((text, at)) = done {
            self.record(&text, at, sink);
        }
    }

    /// How long a joined record may wait for its next line, when lines are joined.
    pub fn flush_timeout(&self) -> Option<std::time::Duration> {
        self.joiner.as_ref().map(Joiner::timeout)
    }

    /// Publishes the stream's counts to the shared metrics.
    pub fn publish(&mut self) {
        self.counts.publish();
    }

    fn record(&mut self, text: &[u8], start: u64, sink: &mut BatchSink) {
        let out = &mut sink.batch.data;
        let begin = out.len();
        let outcome = self.parser.parse_line(text, out);
        sink.batch.records += 1;
        if outcome == Outcome::Unstructured {
            self.counts.parse_failure();
        }
        match &self.annotation {
            Annotation::None => {}
            Annotation::Stream(name) => {
                reopen(out, begin);
                out.extend_from_slice(b"\"stream\":\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\"}\n");
            }
            Annotation::File {
                path_json,
                identity,
            } => {
                reopen(out, begin);
                let mut num = itoa::Buffer::new();
                let offset = num.format(start);
                out.extend_from_slice(b"\"input\":{\"file\":");
                out.extend_from_slice(path_json.as_bytes());
                out.extend_from_slice(b",\"offset\":");
                out.extend_from_slice(offset.as_bytes());
                out.extend_from_slice(b",\"id\":\"");
                out.extend_from_slice(identity.as_bytes());
                out.push(b':');
                out.extend_from_slice(offset.as_bytes());
                out.extend_from_slice(b"\"}}\n");
            }
        }
        self.counts.record(&out[begin..]);
    }
}

/// Reopens the record just written (ending in `}\n`) so more fields can follow.
fn reopen(out: &mut Vec<u8>, begin: usize) {
    out.truncate(out.len() - 2);
    if out.len() > begin + 1 {
        out.push(b',');
    }
}

/// `path` as a JSON string.
pub fn json_string(path: &str) -> String {
    let mut out = Vec::with_capacity(path.len() + 2);
    write_json_string(&mut out, path);
    String::from_utf8(out).unwrap_or_default()
}
