//! Joining the lines of one logical record (a stack trace, a wrapped message) before the
//! record is parsed.
//!
//! A rule decides, line by line, whether a line continues the record being built or starts
//! a new one. The record being built is handed out when the next record starts, at the end
//! of the input, or when no line arrived for the flush timeout, so the last record of a
//! quiet stream is never held forever. The joined text is capped like a single line.

use std::time::{Duration, Instant};

use regex::bytes::Regex;
use thiserror::Error;

/// A multiline configuration the adapter cannot start with.
#[derive(Debug, Error)]
pub enum MultilineError {
    #[error("unknown multiline preset `{0}`; known: java, python, go")]
    UnknownPreset(String),
    #[error("multiline `{which}` pattern is not a valid regex: {reason}")]
    BadRegex { which: &'static str, reason: String },
    #[error("a custom multiline rule needs a `start` or a `continue` pattern")]
    EmptyCustom,
}

/// How lines are grouped into records.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Java: indented lines (`\tat ...`, `\t... 12 more`) and `Caused by:` / `Suppressed:`
    /// continue the record of the line before.
    Java,
    /// Python: `Traceback (most recent call last):` continues the line before (the message
    /// `logging.exception` prints); inside a traceback indented lines, the chaining texts and
    /// the final `SomeError: reason` line belong to it.
    Python,
    /// Go: a `panic:` or `fatal error:` line starts a record that takes the goroutine dump
    /// after it (blank lines, `goroutine N [...]:`, function lines, indented file lines,
    /// `created by`, `exit status N`).
    Go,
    /// A line matching `start` begins a record, a line matching `continue` extends the one
    /// being built; with only `start`, every other line continues; with only `continue`, every
    /// other line starts a record.
    Custom {
        start: Option<Regex>,
        continue_: Option<Regex>,
    },
}

impl Rule {
    pub fn preset(name: &str) -> Result<Rule, MultilineError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "java" => Ok(Rule::Java),
            "python" => Ok(Rule::Python),
            "go" => Ok(Rule::Go),
            _ => Err(MultilineError::UnknownPreset(name.to_owned())),
        }
    }

    pub fn custom(start: Option<&str>, continue_: Option<&str>) -> Result<Rule, MultilineError> {
        let compile = |which: &'static str, pattern: Option<&str>| {
            pattern
                .map(|p| {
                    Regex::new(p).map_err(|err| MultilineError::BadRegex {
                        which,
                        reason: err.to_string(),
                    })
                })
                .transpose()
        };
        let start = compile("start", start)?;
        let continue_ = compile("continue", continue_)?;
        if start.is_none() && continue_.is_none() {
            return Err(MultilineError::EmptyCustom);
        }
        Ok(Rule::Custom { start, continue_ })
    }
}

/// Where the record being built stands, for the presets that need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    PythonTraceback,
    GoPanic,
}

fn indented(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

/// A Go function line in a goroutine dump: `main.main()`, `pkg.(*T).m(0x1, ...)`.
fn go_function_line(line: &[u8]) -> bool {
    !line.is_empty() && !indented(line) && line.ends_with(b")") && line.contains(&b'(')
}

/// Joins lines into records; one per stream.
pub struct Joiner {
    rule: Rule,
    cap: usize,
    timeout: Duration,
    text: Vec<u8>,
    start: u64,
    end: u64,
    active: bool,
    mode: Mode,
    last_line: Instant,
}

impl Joiner {
    /// `cap` bounds the bytes kept of one joined record; `timeout` is how long a record may
    /// wait for a continuation line.
    pub fn new(rule: Rule, cap: usize, timeout: Duration) -> Self {
        Joiner {
            rule,
            cap: cap.max(1),
            timeout,
            text: Vec::new(),
            start: 0,
            end: 0,
            active: false,
            mode: Mode::Plain,
            last_line: Instant::now(),
        }
    }

    /// The stream offset of the first line of the record being built: a checkpoint must not
    /// pass it, or a restart would lose the record.
    pub fn pending_start(&self) -> Option<u64> {
        self.active.then_some(self.start)
    }

    /// Whether the record being built has waited longer than the flush timeout.
    pub fn is_stale(&self, now: Instant) -> bool {
        self.active && now.saturating_duration_since(self.last_line) >= self.timeout
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether `line` continues the record being built (decided before it is added).
    fn continues(&mut self, line: &[u8]) -> bool {
        match &self.rule {
            Rule::Java => {
                indented(line)
                    || line.starts_with(b"Caused by:")
                    || line.starts_with(b"Suppressed:")
            }
            Rule::Python => {
                if line.starts_with(b"Traceback (most recent call last):") {
                    self.mode = Mode::PythonTraceback;
                    return true;
                }
                if self.mode != Mode::PythonTraceback {
                    return false;
                }
                if indented(line)
                    || line.is_empty()
                    || line.starts_with(b"During handling of the above exception")
                    || line.starts_with(b"The above exception was the direct cause")
                {
                    return true;
                }
                // The exception line closes the traceback; it still belongs to it.
                self.mode = Mode::Plain;
                true
            }
            Rule::Go => {
                if self.mode != Mode::GoPanic {
                    return false;
                }
                let dump = line.is_empty()
                    || indented(line)
                    || line.starts_with(b"goroutine ")
                    || line.starts_with(b"created by ")
                    || line.starts_with(b"exit status ")
                    || line.starts_with(b"[signal ")
                    || go_function_line(line);
                if !dump {
                    self.mode = Mode::Plain;
                }
                dump
            }
            Rule::Custom { start, continue_ } => match (start, continue_) {
                (_, Some(cont)) if cont.is_match(line) => true,
                (Some(start), _) => continue_.is_none() && !start.is_match(line),
                (None, _) => false,
            },
        }
    }

    fn starts_mode(&mut self, line: &[u8]) {
        self.mode = match self.rule {
            Rule::Go if line.starts_with(b"panic: ") || line.starts_with(b"fatal error: ") => {
                Mode::GoPanic
            }
            Rule::Python if line.starts_with(b"Traceback (most recent call last):") => {
                Mode::PythonTraceback
            }
            _ => Mode::Plain,
        };
    }

    /// Adds one line (`start`..`end` in the stream); `emit` gets every record completed by
    /// it, with the stream offset of the record's first line.
    pub fn push(&mut self, line: &[u8], start: u64, end: u64, emit: impl FnOnce(&[u8], u64)) {
        self.last_line = Instant::now();
        if self.active && self.continues(line) {
            let room = self.cap.saturating_sub(self.text.len());
            if room > 0 {
                self.text.push(b'\n');
                let room = room - 1;
                self.text.extend_from_slice(&line[..line.len().min(room)]);
            }
            self.end = end;
            return;
        }
        if self.active {
            emit(&self.text, self.start);
        }
        self.text.clear();
        self.text
            .extend_from_slice(&line[..line.len().min(self.cap)]);
        self.start = start;
        self.end = end;
        self.active = true;
        self.starts_mode(line);
    }

    /// Hands out the record being built (end of input, flush timeout, shutdown). Returns the
    /// stream offset just past it.
    pub fn flush(&mut self, emit: impl FnOnce(&[u8], u64)) -> Option<u64> {
        if !self.active {
            return None;
        }
        emit(&self.text, self.start);
        self.active = false;
        self.mode = Mode::Plain;
        self.text.clear();
        if self.text.capacity() > 256 * 1024 {
            self.text = Vec::new();
        }
        Some(self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(rule: Rule, text: &str) -> Vec<(String, u64)> {
        let mut joiner = Joiner::new(rule, 1 << 20, Duration::from_secs(1));
        let mut out = Vec::new();
        let mut offset = 0u64;
        for line in text.split('\n') {
            let end = offset + line.len() as u64 + 1;
            joiner.push(line.as_bytes(), offset, end, |t, s| {
                out.push((String::from_utf8_lossy(t).into_owned(), s))
            });
            offset = end;
        }
        joiner.flush(|t, s| out.push((String::from_utf8_lossy(t).into_owned(), s)));
        out
    }

    #[test]
    fn java_trace_with_cause_is_one_record() {
        let text = "2024-01-01 12:00:00 ERROR [main] App - boom\n\
java.lang.IllegalStateException: bad\n\
\tat com.x.App.run(App.java:10)\n\
\tat com.x.App.main(App.java:3)\n\
Caused by: java.io.IOException: disk\n\
\tat com.x.Disk.read(Disk.java:7)\n\
\t... 2 more\n\
2024-01-01 12:00:01 INFO [main] App - next";
        let records = join(Rule::Java, text);
        assert_eq!(records.len(), 3, "{records:?}");
        assert_eq!(records[0].0, "2024-01-01 12:00:00 ERROR [main] App - boom");
        assert!(
            records[1]
                .0
                .starts_with("java.lang.IllegalStateException: bad\n\tat com.x")
        );
        assert!(records[1].0.ends_with("\t... 2 more"));
        assert_eq!(records[1].1, 44);
        assert_eq!(records[2].0, "2024-01-01 12:00:01 INFO [main] App - next");
    }

    #[test]
    fn python_traceback_joins_the_message_and_ends_at_the_exception() {
        let text = "ERROR:root:failed\n\
Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n\
ValueError: bad\n\
INFO:root:next";
        let records = join(Rule::Python, text);
        assert_eq!(records.len(), 2, "{records:?}");
        assert!(records[0].0.starts_with("ERROR:root:failed\nTraceback"));
        assert!(records[0].0.ends_with("ValueError: bad"));
        assert_eq!(records[1].0, "INFO:root:next");
    }

    #[test]
    fn go_panic_takes_the_goroutine_dump() {
        let text = "starting\npanic: runtime error: index out of range\n\n\
goroutine 1 [running]:\nmain.main()\n\t/tmp/x.go:5 +0x1d\nexit status 2\nnext line";
        let records = join(Rule::Go, text);
        assert_eq!(records.len(), 3, "{records:?}");
        assert_eq!(records[0].0, "starting");
        assert!(records[1].0.starts_with("panic: runtime error"));
        assert!(records[1].0.ends_with("exit status 2"));
        assert_eq!(records[2].0, "next line");
    }

    #[test]
    fn custom_start_rule_continues_every_other_line() {
        let rule = Rule::custom(Some(r"^\d{4}-"), None).expect("rule");
        let records = join(rule, "2024- a\nb\nc\n2024- d");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].0, "2024- a\nb\nc");
        let rule = Rule::custom(None, Some(r"\\$")).expect("rule");
        assert!(Rule::custom(None, None).is_err());
        assert!(matches!(
            Rule::custom(Some("("), None),
            Err(MultilineError::BadRegex { which: "start", .. })
        ));
        let _ = rule;
    }

    #[test]
    fn pending_record_bounds_the_checkpoint_and_goes_stale() {
        let mut joiner = Joiner::new(Rule::Java, 16, Duration::ZERO);
        joiner.push(b"first", 0, 6, |_, _| panic!("nothing complete yet"));
        joiner.push(b"\tat x", 6, 12, |_, _| panic!("continuation"));
        assert_eq!(joiner.pending_start(), Some(0));
        assert!(joiner.is_stale(Instant::now()));
        let mut got = None;
        assert_eq!(joiner.flush(|t, s| got = Some((t.to_vec(), s))), Some(12));
        assert_eq!(got, Some((b"first\n\tat x".to_vec(), 0)));
        assert_eq!(joiner.pending_start(), None);
    }

    #[test]
    fn joined_text_is_capped() {
        let mut joiner = Joiner::new(Rule::Java, 8, Duration::from_secs(1));
        joiner.push(b"abcdef", 0, 7, |_, _| {});
        joiner.push(b"\tmore text", 7, 18, |_, _| {});
        let mut got = Vec::new();
        joiner.flush(|t, _| got = t.to_vec());
        assert_eq!(got, b"abcdef\n\t");
    }
}
