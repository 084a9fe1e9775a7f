//! Delivering batches of records, and committing their checkpoints once delivered.
//!
//! One output thread takes batches from the bounded pipeline channel in order. A batch's
//! checkpoint marks are committed (and the state file written) only after the output
//! accepted every record of the batch: stdout and file when the bytes were written to the
//! operating system, HTTP when the endpoint answered 2xx. So a crash re-sends at most what
//! was not yet accepted, and a slow output fills the channel, which stops the readers.

pub mod http;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use thiserror::Error;

use crate::input::checkpoint::{CheckpointError, Checkpoints};
use crate::metrics::Stats;
use crate::pipeline::{Batch, Mark};

/// Bytes written to stdout or a file with one `write` and acknowledged together.
const WRITE_GROUP: usize = 1 << 20;

/// Where records go.
#[derive(Debug, Clone)]
pub enum OutputConfig {
    Stdout,
    File(PathBuf),
    Http(Box<http::HttpConfig>),
}

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("cannot open the output file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("writing the output failed: {0}")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the HTTP output cannot start: {0}")]
    HttpStart(String),
}

impl OutputError {
    /// The reader of our stdout went away (`adapter parse | head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, OutputError::Write(err) if err.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Commits delivered marks and keeps the state file current.
pub struct Committer {
    checkpoints: Option<Checkpoints>,
    stats: Arc<Stats>,
}

impl Committer {
    pub fn new(checkpoints: Option<Checkpoints>, stats: Arc<Stats>) -> Self {
        Committer { checkpoints, stats }
    }

    /// Called once the records before `marks` were accepted.
    /// `batches` pipeline batches were fully delivered with them.
    pub fn delivered(
        &self,
        records: u64,
        bytes: u64,
        marks: &[Mark],
        batches: usize,
    ) -> Result<(), OutputError> {
        if let Some(cp) = &self.checkpoints
            && cp.apply(marks)
        {
            cp.save()?;
            self.stats.checkpoint_writes.inc();
        }
        self.stats.batch_delivered(batches, records, bytes);
        Ok(())
    }
}

/// Runs the output until every sender is gone and every batch is delivered.
pub fn run(
    rx: Receiver<Batch>,
    config: OutputConfig,
    committer: Committer,
    stats: Arc<Stats>,
) -> Result<(), OutputError> {
    match config {
        OutputConfig::Stdout => write_stream(rx, io::stdout().lock(), &committer),
        OutputConfig::File(path) => {
            let file = open_file(&path).map_err(|source| OutputError::Open { path, source })?;
            write_stream(rx, file, &committer)
        }
        OutputConfig::Http(cfg) => http::run(rx, *cfg, &committer, stats),
    }
}

/// Writes batches to a byte stream, grouping what is already queued into one write.
fn write_stream(
    rx: Receiver<Batch>,
    mut out: impl Write,
    committer: &Committer,
) -> Result<(), OutputError> {
    let mut marks: Vec<Mark> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut records = first.records;
        let mut bytes = first.data.len() as u64;
        let mut groups = 1;
        out.write_all(&first.data).map_err(OutputError::Write)?;
        marks.clear();
        marks.extend(first.marks);
        while bytes < WRITE_GROUP as u64 {
            let Ok(next) = rx.try_recv() else { break };
            out.write_all(&next.data).map_err(OutputError::Write)?;
            records += next.records;
            bytes += next.data.len() as u64;
            groups += 1;
            marks.extend(next.marks);
        }
        out.flush().map_err(OutputError::Write)?;
        // Later marks of one file supersede earlier ones; apply order keeps the last.
        committer.delivered(records, bytes, &marks, groups)?;
    }
    Ok(())
}

/// Opens the output file for appending. A previous run killed in the middle of a write may
/// have left a torn last line: it is ended first, so the next record starts on a line of its
/// own (the torn record itself was not acknowledged and is sent again).
fn open_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::FileExt;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ended_before_appending() {
        let path = std::env::temp_dir().join(format!("adapter-out-{}.jsonl", std::process::id()));
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").expect("write");
        let mut f = open_file(&path).expect("open");
        f.write_all(b"{\"c\":3}\n").expect("append");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"a\":1}\n{\"b\":\n{\"c\":3}\n"
        );
        let mut f = open_file(&path).expect("reopen");
        f.write_all(b"x\n").expect("append");
        assert!(std::fs::read(&path).expect("read").ends_with(b"}\nx\n"));
        let _ = std::fs::remove_file(&path);
    }
}
