//! Reading lines from a byte stream and feeding them to a parser.
//!
//! Lines are split inside the read buffer and parsed in place; only a line that straddles
//! two reads is copied, and then at most one byte past the line cap, so a runaway line
//! without a newline cannot grow memory without bound.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::parse::{Outcome, Parser};

/// Bytes read from the input at a time.
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
    use crate::parse::{Format, ParserConfig};

    fn run(input: &[u8], max_line_bytes: usize) -> (Vec<serde_json::Value>, Totals) {
        let mut config = ParserConfig::new(Format::Logfmt);
        config.max_line_bytes = max_line_bytes;
        let mut parser = Parser::new(config).expect("config");
        let mut out = Vec::new();
        let totals = pump(input, &mut parser, &mut out).expect("pump");
        let records = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("JSON line"))
            .collect();
        (records, totals)
    }

    #[test]
    fn every_line_comes_out_including_a_final_one_without_newline() {
        let (records, totals) = run(b"a=1\n\nb=2\r\nc=3", 1024);
        assert_eq!(records.len(), 4);
        assert_eq!(records[0]["a"], "1");
        assert_eq!(records[1]["message"], "");
        assert_eq!(records[2]["b"], "2");
        assert_eq!(records[3]["c"], "3");
        assert_eq!(totals.lines, 4);
        assert_eq!(totals.structured, 3);
        assert_eq!(totals.bytes, 13);
    }

    #[test]
    fn no_input_no_records() {
        let (records, totals) = run(b"", 1024);
        assert!(records.is_empty());
        assert_eq!(totals.lines, 0);
    }

    #[test]
    fn lines_longer_than_the_read_buffer_are_capped_and_flagged() {
        let mut input = b"k=".to_vec();
        input.extend(std::iter::repeat_n(b'x', READ_BUFFER * 2 + 17));
        input.extend_from_slice(b"\nnext=1\n");
        let (records, _) = run(&input, 100);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["k"].as_str().map(str::len), Some(98));
        assert_eq!(records[0]["truncated"], true);
        assert_eq!(records[1]["next"], "1");
    }
}
