//! Custom formats in the grok pattern language (`%{IP:client} %{NUMBER:bytes:int}`), with
//! the well-known pattern library built in (`patterns/base.grok`) plus the patterns this
//! crate ships for formats without a parser of their own (`patterns/loghub.grok`).
//!
//! A pattern is expanded and compiled once at start-up; a bad one is a configuration error
//! naming the pattern and the byte position, never a runtime surprise. Matching follows
//! grok: the pattern may match anywhere in the line unless it is anchored. Captured values
//! of `-` are absent; a capture named `timestamp` is normalised to RFC 3339 UTC and one
//! named `level` to the shared level scale (the text kept in `level_original`).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use thiserror::Error;

use super::level;
use super::syntax::{Failure, parse_int};
use super::timestamp::{TimeContext, parse_any};
use crate::record::{Names, Record};

/// The library as shipped: the standard names first, then the crate's own patterns.
const LIBRARY_SOURCES: [&str; 2] = [
    include_str!("../../patterns/base.grok"),
    include_str!("../../patterns/loghub.grok"),
];

static LIBRARY: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    let mut library = HashMap::new();
    for source in LIBRARY_SOURCES {
        for line in source.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((name, definition)) = line.split_once(' ') {
                library.insert(name, definition);
            }
        }
    }
    library
});

/// Names of every pattern in the built-in library, sorted.
pub fn library_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = LIBRARY.keys().copied().collect();
    names.sort_unstable();
    names
}

/// A pattern that cannot be compiled.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("bad grok pattern `{pattern}` at position {position}: {reason}")]
pub struct PatternError {
    /// The pattern text the error is in: the one given, or a library pattern it uses.
    pub pattern: String,
    /// Byte offset into `pattern`.
    pub position: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Float,
}

#[derive(Debug, Clone)]
struct Capture {
    field: String,
    kind: Kind,
    /// The regex group holding the value.
    group: usize,
    /// Index of the first capture with the same field name, so a name captured in two
    /// alternatives is written once.
    first_of_name: usize,
    /// The name(s) written: the field's own, and for `level` the one holding the original
    /// text. Decided once at compile time so that a capture literally named
    /// `level_original` beside a `level` does not write the same key twice (see
    /// [`crate::record::Names`]: the later one is `_`-prefixed).
    output: String,
    original_output: String,
}

/// A compiled grok pattern.
#[derive(Debug, Clone)]
pub struct Grok {
    regex: Regex,
    captures: Vec<Capture>,
}

/// Expands `%{...}` references into one regular expression.
struct Expander<'p> {
    top: &'p str,
    out: String,
    /// (offset in `out`, offset in `top`) at each top-level step, to map regex errors back.
    positions: Vec<(usize, usize)>,
    fields: Vec<(String, Kind)>,
    stack: Vec<&'p str>,
}

impl<'p> Expander<'p> {
    fn error(&self, pattern: &str, position: usize, reason: String) -> PatternError {
        PatternError {
            pattern: pattern.to_owned(),
            position,
            reason,
        }
    }

    fn open_capture(&mut self, field: &str, kind: Kind) {
        self.out.push_str("(?P<g");
        self.out.push_str(&self.fields.len().to_string());
        self.out.push('>');
        self.fields.push((field.to_owned(), kind));
    }

    /// Expands `text`, which is the top-level pattern when `depth` is 0.
    fn expand(&mut self, text: &'p str, depth: usize) -> Result<(), PatternError> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if depth == 0 {
                self.positions.push((self.out.len(), i));
            }
            let rest = &text[i..];
            if bytes[i] == b'\\' {
                let len = rest.chars().nth(1).map_or(1, |c| 1 + c.len_utf8());
                self.out.push_str(&rest[..len]);
                i += len;
            } else if rest.starts_with("%{") {
                let close = rest
                    .find('}')
                    .ok_or_else(|| self.error(text, i, "`%{` is never closed with `}`".into()))?;
                self.reference(text, i, &rest[2..close], depth)?;
                i += close + 1;
            } else if let Some(name_and_rest) = rest
                .strip_prefix("(?<")
                .or_else(|| rest.strip_prefix("(?P<"))
                .filter(|r| !r.starts_with(['=', '!']))
            {
                let close = name_and_rest.find('>').ok_or_else(|| {
                    self.error(
                        text,
                        i,
                        "a named group `(?<name>` is never closed with `>`".into(),
                    )
                })?;
                let field = &name_and_rest[..close];
                if field.is_empty() {
                    return Err(self.error(text, i, "a named group needs a name".into()));
                }
                self.open_capture(field, Kind::Text);
                i += rest.len() - name_and_rest.len() + close + 1;
            } else {
                let len = rest.chars().next().map_or(1, char::len_utf8);
                self.out.push_str(&rest[..len]);
                i += len;
            }
        }
        Ok(())
    }

    /// `NAME`, `NAME:field` or `NAME:field:type` from inside `%{…}` at `at` in `text`.
    fn reference(
        &mut self,
        text: &'p str,
        at: usize,
        inner: &str,
        depth: usize,
    ) -> Result<(), PatternError> {
        let mut parts = inner.splitn(3, ':');
        let name = parts.next().unwrap_or("");
        let field = parts.next().filter(|f| !f.is_empty());
        let kind = match parts.next() {
            None => Kind::Text,
            Some("int" | "integer") => Kind::Int,
            Some("float") => Kind::Float,
            Some("string" | "str") => Kind::Text,
            Some(other) => {
                return Err(self.error(
                    text,
                    at,
                    format!("unknown type `{other}` (use int or float)"),
                ));
            }
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(self.error(text, at, format!("`{name}` is not a pattern name")));
        }
        let Some((&library_name, &definition)) = LIBRARY.get_key_value(name) else {
            return Err(self.error(text, at, format!("unknown pattern `{name}`")));
        };
        if self.stack.contains(&library_name) {
            return Err(self.error(text, at, format!("pattern `{name}` refers to itself")));
        }
        match field {
            Some(field) => self.open_capture(field, kind),
            None => self.out.push_str("(?:"),
        }
        self.stack.push(library_name);
        self.expand(definition, depth + 1)?;
        self.stack.pop();
        self.out.push(')');
        Ok(())
    }

    /// Locates a regex syntax error in the top-level pattern using the caret line the
    /// regex crate prints under the expanded expression.
    fn regex_error(&self, err: &regex::Error) -> PatternError {
        let message = err.to_string();
        let lines: Vec<&str> = message.lines().collect();
        let reason = lines
            .iter()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(&message)
            .to_owned();
        let caret_column = lines
            .get(2)
            .and_then(|l| l.find('^'))
            .and_then(|c| c.checked_sub(4));
        let position = caret_column
            .and_then(|column| self.out.char_indices().nth(column).map(|(byte, _)| byte))
            .map_or(0, |expanded| {
                self.positions
                    .iter()
                    .rev()
                    .find(|(out_at, _)| *out_at <= expanded)
                    .map_or(0, |(_, top_at)| *top_at)
            });
        PatternError {
            pattern: self.top.to_owned(),
            position,
            reason,
        }
    }
}

impl Grok {
    /// Expands and compiles `pattern`.
    pub fn compile(pattern: &str) -> Result<Grok, PatternError> {
        let mut expander = Expander {
            top: pattern,
            out: String::with_capacity(pattern.len() * 4),
            positions: Vec::new(),
            fields: Vec::new(),
            stack: Vec::new(),
        };
        expander.expand(pattern, 0)?;
        let regex = RegexBuilder::new(&expander.out)
            .size_limit(64 << 20)
            .build()
            .map_err(|err| expander.regex_error(&err))?;
        let mut captures: Vec<Capture> = Vec::with_capacity(expander.fields.len());
        let mut names = Names::default();
        for (group, name) in regex.capture_names().enumerate() {
            let Some(index) = name
                .and_then(|n| n.strip_prefix('g'))
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let (field, kind) = expander.fields[index].clone();
            let first = captures.iter().find(|c| c.field == field);
            let (output, original_output) = match first {
                Some(first) => (first.output.clone(), first.original_output.clone()),
                None => {
                    let output = names.claim_owned(field.clone());
                    let original_output = if field == "level" {
                        names.claim_owned("level_original".to_owned())
                    } else {
                        String::new()
                    };
                    (output, original_output)
                }
            };
            let first_of_name = captures
                .iter()
                .position(|c| c.field == field)
                .unwrap_or(captures.len());
            captures.push(Capture {
                field,
                kind,
                group,
                first_of_name,
                output,
                original_output,
            });
        }
        Ok(Grok { regex, captures })
    }

    /// Matches `line` and writes its captures in pattern order.
    pub fn parse(
        &self,
        line: &str,
        time: &mut TimeContext,
        rec: &mut Record<'_>,
    ) -> Result<(), Failure> {
        let caps = self.regex.captures(line).ok_or(Failure::Expected {
            what: "a line matching the grok pattern",
            at: 0,
        })?;
        let mut written = vec![false; self.captures.len()];
        for capture in &self.captures {
            let Some(m) = caps.get(capture.group) else {
                continue;
            };
            let value = m.as_str();
            if value == "-" || written[capture.first_of_name] {
                continue;
            }
            written[capture.first_of_name] = true;
            let invalid = |what| Failure::Invalid {
                what,
                at: m.start(),
            };
            match (capture.field.as_str(), capture.kind) {
                ("timestamp", _) => {
                    let ts = parse_any(value, time).ok_or_else(|| invalid("timestamp"))?;
                    rec.timestamp(&capture.output, ts);
                }
                ("level", _) => {
                    rec.str(&capture.output, level::normalise(value).unwrap_or(value));
                    rec.str(&capture.original_output, value);
                }
                (_, Kind::Int) => {
                    let number = parse_int(value).ok_or_else(|| invalid("integer"))?;
                    rec.int(&capture.output, number);
                }
                (_, Kind::Float) => {
                    let number = value.parse::<f64>().map_err(|_| invalid("number"))?;
                    rec.float(&capture.output, number);
                }
                (_, Kind::Text) => rec.str(&capture.output, value),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    fn grok(pattern: &str, line: &str) -> serde_json::Value {
        let grok = Grok::compile(pattern).expect("pattern compiles");
        render(|rec, time| grok.parse(line, time, rec))
    }

    #[test]
    fn every_library_pattern_compiles() {
        for name in library_names() {
            let pattern = format!("%{{{name}}}");
            if let Err(err) = Grok::compile(&pattern) {
                panic!("{name}: {err}");
            }
        }
    }

    #[test]
    fn typed_captures_in_pattern_order() {
        assert_eq!(
            grok(
                "%{IP:client} %{WORD:method} %{URIPATHPARAM:request} %{NUMBER:bytes:int} %{NUMBER:duration:float}",
                "55.3.244.1 GET /index.html 15824 0.043"
            ),
            json!({"client": "55.3.244.1", "method": "GET", "request": "/index.html", "bytes": 15824, "duration": 0.043})
        );
        let got = grok(
            "%{IP:client} %{GREEDYDATA:rest}",
            "2001:db8::ff00:42:8329 x y",
        );
        assert_eq!(got["client"], "2001:db8::ff00:42:8329");
    }

    #[test]
    fn well_known_compound_patterns() {
        let got = grok(
            "%{COMBINEDAPACHELOG}",
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://ex.com/" "Mozilla/4.08""#,
        );
        assert_eq!(got["clientip"], "127.0.0.1");
        assert!(got.get("ident").is_none());
        assert_eq!(got["auth"], "frank");
        assert_eq!(got["timestamp"], "2000-10-10T20:55:36Z");
        assert_eq!(got["response"], 200);
        assert_eq!(got["bytes"], 2326);
        let got = grok(
            "%{SYSLOGLINE}",
            "Jun 14 15:16:01 combo sshd[19939]: authentication failure",
        );
        assert_eq!(got["program"], "sshd");
        assert_eq!(got["pid"], 19939);
        assert_eq!(got["timestamp"], "2024-06-14T15:16:01Z");
        let got = grok(
            "%{HTTPD_ERRORLOG}",
            "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
        );
        assert_eq!(got["level"], "error");
        assert_eq!(got["timestamp"], "2005-12-04T04:47:44Z");
    }

    #[test]
    fn inline_named_groups_and_levels() {
        assert_eq!(
            grok(
                r"^(?<queue>\w+) %{LOGLEVEL:level} (?P<rest>.*)$",
                "jobs WARN disk 91%"
            ),
            json!({"queue": "jobs", "level": "warning", "level_original": "WARN", "rest": "disk 91%"})
        );
    }

    #[test]
    fn a_capture_named_like_the_level_original_moves_aside() {
        let grok = Grok::compile(r"^%{WORD:level_original} %{LOGLEVEL:level}$").expect("compiles");
        let mut out = Vec::new();
        let mut time = TimeContext::new(
            Default::default(),
            crate::parse::timestamp::YearResolver::new(crate::parse::testing::TODAY),
        );
        let mut rec = Record::begin(&mut out);
        grok.parse("raw WARN", &mut time, &mut rec)
            .expect("matches");
        rec.finish();
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "{\"level_original\":\"raw\",\"level\":\"warning\",\"_level_original\":\"WARN\"}\n"
        );
    }

    #[test]
    fn shipped_hdfs_pattern() {
        let got = grok(
            "%{HDFS}",
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
        );
        assert_eq!(
            got,
            json!({
                "timestamp": "2008-11-09T20:36:15Z", "pid": 148, "level": "info", "level_original": "INFO",
                "component": "dfs.DataNode$PacketResponder",
                "message": "PacketResponder 1 for block blk_38865049064139660 terminating"
            })
        );
    }

    #[test]
    fn bad_patterns_name_the_pattern_and_position() {
        let err = Grok::compile("%{IP:client} %{NOPE:x}").expect_err("unknown");
        assert_eq!(
            err,
            PatternError {
                pattern: "%{IP:client} %{NOPE:x}".into(),
                position: 13,
                reason: "unknown pattern `NOPE`".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "bad grok pattern `%{IP:client} %{NOPE:x}` at position 13: unknown pattern `NOPE`"
        );
        let err = Grok::compile("%{IP:client").expect_err("unclosed");
        assert_eq!(err.position, 0);
        let err = Grok::compile("x %{NUMBER:n:bool}").expect_err("type");
        assert_eq!(
            (err.position, err.reason.as_str()),
            (2, "unknown type `bool` (use int or float)")
        );
        let err = Grok::compile("%{IP} (unclosed").expect_err("regex");
        assert_eq!(err.pattern, "%{IP} (unclosed");
        assert_eq!(err.position, 6, "{err}");
        let err = Grok::compile("%{IP} [z-a]").expect_err("range");
        assert_eq!(err.position, 7, "{err}");
    }

    #[test]
    fn non_matching_and_bad_typed_values_fail() {
        let g = Grok::compile("^%{WORD:w}$").expect("compiles");
        assert_eq!(
            failure(|rec, time| g.parse("two words", time, rec)),
            "expected a line matching the grok pattern at byte 0"
        );
        let g = Grok::compile(r"^(?<n>\d+)x %{DATA:big:int}$").expect("compiles");
        assert_eq!(
            failure(|rec, time| g.parse("1x 99999999999999999999", time, rec)),
            "invalid integer at byte 3"
        );
    }
}
