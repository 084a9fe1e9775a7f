//! The `auto` format: find the stream's format from its first lines, then parse every
//! line with it, falling back to the other formats for a line that does not fit (a stack
//! trace in a log4j stream, a JSON line among syslog).
//!
//! Candidates are tried from the most to the least specific shape, so a permissive format
//! (logfmt, which accepts almost any `a=b`) cannot claim lines a stricter one explains.

use super::syntax::Failure;
use super::{Format, Formats, logfmt, run};
use crate::record::Record;

/// In order of specificity. Apache combined also covers nginx combined lines (same
/// layout); a stream that is known to be nginx is better named explicitly.
const CANDIDATES: [Format; 13] = [
    Format::Json,
    Format::Cef,
    Format::SyslogRfc5424,
    Format::ApacheCombined,
    Format::NginxError,
    Format::ApacheError,
    Format::Klog,
    Format::Glog,
    Format::Logcat,
    Format::Log4j,
    Format::SyslogRfc3164,
    Format::Logfmt,
    Format::Grok,
];

/// Lines that vote before the stream's format is fixed.
const DETECTION_LINES: u32 = 8;

/// Per-stream detection state.
#[derive(Debug, Default)]
pub struct Detector {
    votes: [u32; CANDIDATES.len()],
    voted: u32,
    chosen: Option<usize>,
}

impl Detector {
    /// The format the stream was detected as, once decided.
    pub fn detected(&self) -> Option<Format> {
        self.chosen.map(|i| CANDIDATES[i])
    }

    fn attempt(
        index: usize,
        line: &str,
        ctx: &mut Formats<'_>,
        rec: &mut Record<'_>,
    ) -> Result<(), Failure> {
        match CANDIDATES[index] {
            Format::Grok if ctx.grok.is_none() => Err(Failure::Expected {
                what: "a configured grok pattern",
                at: 0,
            }),
            Format::Logfmt => logfmt::parse_strict(line, rec),
            format => run(format, line, ctx, rec),
        }
    }

    /// Parses `line` with the detected format, or the first candidate that fits. On
    /// failure, reports the candidate that got furthest into the line.
    pub(crate) fn parse(
        &mut self,
        line: &str,
        ctx: &mut Formats<'_>,
        rec: &mut Record<'_>,
    ) -> Result<(), (Format, Failure)> {
        let mut best: Option<(usize, Failure)> = None;
        let note = |index: usize, failure: Failure, best: &mut Option<(usize, Failure)>| {
            if best.as_ref().is_none_or(|(_, b)| failure.at() > b.at()) {
                *best = Some((index, failure));
            }
        };
        if let Some(chosen) = self.chosen {
            match Self::attempt(chosen, line, ctx, rec) {
                Ok(()) => return Ok(()),
                Err(failure) => {
                    rec.reset();
                    note(chosen, failure, &mut best);
                }
            }
        }
        // The grok pattern, when given, is what the user said the stream is: try it first.
        let order = std::iter::once(CANDIDATES.len() - 1).chain(0..CANDIDATES.len() - 1);
        for index in order {
            if Some(index) == self.chosen {
                continue;
            }
            match Self::attempt(index, line, ctx, rec) {
                Ok(()) => {
                    self.vote(index);
                    return Ok(());
                }
                Err(failure) => {
                    rec.reset();
                    if !(CANDIDATES[index] == Format::Grok && ctx.grok.is_none()) {
                        note(index, failure, &mut best);
                    }
                }
            }
        }
        Err(match best {
            Some((index, failure)) => (CANDIDATES[index], failure),
            None => (
                Format::Auto,
                Failure::Expected {
                    what: "a line in a known format",
                    at: 0,
                },
            ),
        })
    }

    fn vote(&mut self, index: usize) {
        if self.chosen.is_some() {
            return;
        }
        self.votes[index] += 1;
        self.voted += 1;
        if self.voted >= DETECTION_LINES || self.votes[index] * 2 > DETECTION_LINES {
            let mut best = 0;
            for (i, votes) in self.votes.iter().enumerate() {
                if *votes > self.votes[best] {
                    best = i;
                }
            }
            self.chosen = Some(best);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::{Format, Outcome, Parser, ParserConfig, testing};

    fn auto(pattern: Option<&str>) -> Parser {
        let mut config = ParserConfig::new(Format::Auto);
        config.today = Some(testing::TODAY);
        config.pattern = pattern.map(str::to_owned);
        Parser::new(config).expect("config")
    }

    fn parse(parser: &mut Parser, line: &str) -> (serde_json::Value, Outcome) {
        let mut out = Vec::new();
        let outcome = parser.parse_line(line.as_bytes(), &mut out);
        (serde_json::from_slice(&out).expect("JSON"), outcome)
    }

    #[test]
    fn detects_then_falls_back_per_line() {
        let mut p = auto(None);
        for i in 0..5 {
            let (v, outcome) = parse(
                &mut p,
                &format!("Jun 14 15:16:0{i} combo sshd[1]: attempt {i}"),
            );
            assert_eq!(outcome, Outcome::Structured);
            assert_eq!(v["appname"], "sshd");
        }
        assert_eq!(p.detector.detected(), Some(Format::SyslogRfc3164));
        let (v, outcome) = parse(&mut p, r#"{"level":"info","msg":"json among syslog"}"#);
        assert_eq!(outcome, Outcome::Structured);
        assert_eq!(v["msg"], "json among syslog");
        let (v, _) = parse(&mut p, "2015-07-29 17:41:44,747 - INFO  [main] - started");
        assert_eq!(v["thread"], "main");
        let (v, _) = parse(&mut p, "user=alice action=login");
        assert_eq!(v["user"], "alice");
        let (v, outcome) = parse(&mut p, "\tat com.example.Foo.bar(Foo.java:42)");
        assert_eq!(outcome, Outcome::Unstructured);
        assert_eq!(v["message"], "\tat com.example.Foo.bar(Foo.java:42)");
        assert!(
            v["parse_error"]
                .as_str()
                .is_some_and(|r| r.contains("expected"))
        );
    }

    #[test]
    fn recognises_each_built_in_shape() {
        let cases = [
            (
                r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 "-" "curl""#,
                "method",
            ),
            ("<13>1 2020-03-13T20:45:38.119Z h app 1 - - hi", "version"),
            ("I0505 17:59:40.692994   28133 klog.go:70] hello", "file"),
            ("03-17 16:13:38.811  1702  2395 D WindowManager: x", "tag"),
            ("CEF:0|a|b|c|d|e|5|src=1.2.3.4", "deviceVendor"),
            ("[Sun Dec 04 04:47:44 2005] [error] oops", "severity"),
            (
                "2021/04/01 13:02:31 [error] 31#31: *1 oops, client: 1.2.3.4",
                "cid",
            ),
        ];
        for (line, field) in cases {
            let mut p = auto(None);
            let (v, outcome) = parse(&mut p, line);
            assert_eq!(outcome, Outcome::Structured, "{line}");
            assert!(v.get(field).is_some(), "{line}: {v}");
        }
    }

    #[test]
    fn a_given_pattern_is_tried_first() {
        let mut p = auto(Some(r"^%{WORD:verb}=%{INT:n:int}$"));
        let (v, _) = parse(&mut p, "count=3");
        assert_eq!(v["n"], 3);
    }
}
