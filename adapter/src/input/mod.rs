//! The inputs: standard input (`adapter parse`), a child's stdout and stderr (`adapter
//! run`) and followed files (`adapter tail`). Each turns bytes into lines with their stream
//! offsets and hands them to its [`Stream`](crate::pipeline::Stream).

pub mod checkpoint;
pub mod lines;
pub mod process;
pub mod tail;

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::parse::{Outcome, Parser};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use crate::pipeline::{BatchSink, Stream};
use lines::LineSplitter;

/// Bytes read at a time.
pub const READ_CHUNK: usize = 256 << 10;
/// Chunks read ahead of the parser.
const CHUNKS_AHEAD: usize = 2;

/// Reads `input` to its end on a reader thread and parses it on this one, so the parser can
/// flush a pending multiline record when the input goes quiet. Returns when the input ended
/// (or the output stopped taking batches).
pub fn drive(
    input: impl Read + Send + 'static,
    mut stream: Stream,
    mut sink: BatchSink,
) -> io::Result<Totals> {
    let (chunk_tx, chunk_rx) = sync_channel::<io::Result<Vec<u8>>>(CHUNKS_AHEAD);
    let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(CHUNKS_AHEAD + 1);
    let reader = std::thread::Builder::new()
        .name("adapter-read".into())
        .spawn(move || read_chunks(input, chunk_tx, spare_rx))?;
    let result = parse_chunks(&chunk_rx, &spare_tx, &mut stream, &mut sink);
    drop(chunk_rx);
    // The reader ends at end of input or when it finds the channel closed.
    let _ = reader.join();
    result
}

fn read_chunks(
    mut input: impl Read,
    chunks: SyncSender<io::Result<Vec<u8>>>,
    spares: Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = spares.try_recv().unwrap_or_default();
        buf.resize(READ_CHUNK, 0);
        let n = loop {
            match input.read(&mut buf) {
                Ok(n) => break n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    let _ = chunks.send(Err(err));
                    return;
                }
            }
        };
        if n == 0 {
            return;
        }
        buf.truncate(n);
        if chunks.send(Ok(buf)).is_err() {
            return;
        }
    }
}

fn parse_chunks(
    chunks: &Receiver<io::Result<Vec<u8>>>,
    spares: &SyncSender<Vec<u8>>,
    stream: &mut Stream,
    sink: &mut BatchSink,
) -> io::Result<Totals> {
    let mut splitter = LineSplitter::new(stream.max_line_bytes().saturating_add(1), 0);
    let mut totals = Totals::default();
    let idle_wait = stream.flush_timeout().unwrap_or(Duration::from_secs(3600));
    loop {
        let chunk = match chunks.try_recv() {
            Ok(chunk) => chunk,
            Err(_) => {
                // Nothing read ahead: deliver what is parsed before waiting for more.
                stream.publish();
                if !sink.send() {
                    return Ok(totals);
                }
                match chunks.recv_timeout(idle_wait) {
                    Ok(chunk) => chunk,
                    Err(RecvTimeoutError::Timeout) => {
                        stream.flush(Instant::now(), false, sink);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let chunk = chunk?;
        totals.bytes += chunk.len() as u64;
        splitter.feed(&chunk, |line| {
            totals.lines += 1;
            stream.line(line.bytes, line.start, line.end, sink);
        });
        let _ = spares.try_send(chunk);
        if sink.is_full() {
            stream.publish();
            if !sink.send() {
                return Ok(totals);
            }
        }
    }
    splitter.finish(|line| {
        totals.lines += 1;
        stream.line(line.bytes, line.start, line.end, sink);
    });
    stream.flush(Instant::now(), true, sink);
    stream.publish();
    sink.send();
    Ok(totals)
}

/// In-memory path without threads or batches: parses every line of `input` into `output`.
/// The benchmark and the property tests use it to measure and check the parsers alone.
/// Bytes read from the input at a time by [`pump`].
const READ_BUFFER: usize = 1 << 20;
/// Output is handed to the writer once this much has accumulated.
const WRITE_BATCH: usize = 256 << 10;

/// What one run through a stream saw.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub lines: u64,
    pub structured: u64,
    pub bytes: u64,
}

/// Parses every line of `input` (the last may lack its newline) and writes the records to
/// `output`, then flushes it.
pub fn pump(input: impl Read, parser: &mut Parser, mut output: impl Write) -> io::Result<Totals> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, input);
    let cap = parser.max_line_bytes().saturating_add(1);
    let mut totals = Totals::default();
    let mut out = Vec::with_capacity(WRITE_BATCH + 64 * 1024);
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_active = false;

    let mut emit = |line: &[u8], out: &mut Vec<u8>, totals: &mut Totals| {
        totals.lines += 1;
        totals.bytes += line.len() as u64 + 1;
        if parser.parse_line(line, out) == Outcome::Structured {
            totals.structured += 1;
        }
    };

    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buf.is_empty() {
            break;
        }
        let len = buf.len();
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &buf[start..]) {
            let end = start + pos;
            if pending_active {
                let room = cap.saturating_sub(pending.len());
                pending.extend_from_slice(&buf[start..end.min(start + room)]);
                emit(&pending, &mut out, &mut totals);
                pending.clear();
                pending_active = false;
            } else {
                emit(&buf[start..end], &mut out, &mut totals);
            }
            start = end + 1;
            if out.len() >= WRITE_BATCH {
                output.write_all(&out)?;
                out.clear();
            }
        }
        if start < len {
            let room = cap.saturating_sub(pending.len());
            pending.extend_from_slice(&buf[start..len.min(start + room)]);
            pending_active = true;
        }
        reader.consume(len);
    }
    if pending_active {
        emit(&pending, &mut out, &mut totals);
        totals.bytes -= 1;
    }
    output.write_all(&out)?;
    output.flush()?;
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Stats;
    use crate::parse::multiline::{Joiner, Rule};
    use crate::parse::{Format, Parser, ParserConfig};
    use crate::pipeline::{Annotation, channel};

    fn run(
        input: &'static [u8],
        max_line_bytes: usize,
        joiner: Option<Joiner>,
    ) -> Vec<serde_json::Value> {
        let mut config = ParserConfig::new(Format::Logfmt);
        config.max_line_bytes = max_line_bytes;
        let parser = Parser::new(config).expect("config");
        let stats = Stats::new(false);
        let stream = Stream::new(
            parser,
            joiner,
            Annotation::Stream("stdout"),
            stats.stream("stdin", "logfmt"),
        );
        let (tx, rx) = channel();
        let sink = BatchSink::new(tx, stats);
        let collector = std::thread::spawn(move || {
            let mut out = Vec::new();
            while let Ok(batch) = rx.recv() {
                out.extend_from_slice(&batch.data);
            }
            out
        });
        drive(input, stream, sink).expect("drive");
        let out = collector.join().expect("collector");
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("JSON line"))
            .collect()
    }

    #[test]
    fn every_line_comes_out_including_a_final_one_without_newline() {
        let records = run(b"a=1\n\nb=2\r\nc=3", 1024, None);
        assert_eq!(records.len(), 4);
        assert_eq!(records[0]["a"], "1");
        assert_eq!(records[0]["stream"], "stdout");
        assert_eq!(records[1]["message"], "");
        assert_eq!(records[2]["b"], "2");
        assert_eq!(records[3]["c"], "3");
    }

    #[test]
    fn no_input_no_records() {
        assert!(run(b"", 1024, None).is_empty());
    }

    #[test]
    fn lines_longer_than_the_read_chunk_are_capped_and_flagged() {
        let mut input = b"k=".to_vec();
        input.extend(std::iter::repeat_n(b'x', READ_CHUNK * 2 + 17));
        input.extend_from_slice(b"\nnext=1\n");
        let input: &'static [u8] = input.leak();
        let records = run(input, 100, None);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["k"].as_str().map(str::len), Some(98));
        assert_eq!(records[0]["truncated"], true);
        assert_eq!(records[1]["next"], "1");
    }

    #[test]
    fn joined_records_flush_at_end_of_input() {
        let joiner = Joiner::new(Rule::Java, 1 << 16, Duration::from_secs(60));
        let records = run(b"a=1\n\tat x\nb=2\n\tat y", 1024, Some(joiner));
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[1]["b"].as_str().map(|s| s.starts_with('2')),
            Some(true)
        );
    }
}
