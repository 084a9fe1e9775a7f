//! Turning one log line into one record. Every line comes out: a line that fits its
//! format becomes structured fields, a line that does not keeps its raw text in `message`
//! with the reason in `parse_error`, an over-long line is cut and flagged `truncated`, and
//! bytes that are not UTF-8 are replaced and flagged `invalid_utf8`.

pub mod apache;
pub mod auto;
pub mod cef;
pub mod glog;
pub mod grok;
pub mod json;
pub mod key_value;
pub mod klog;
pub mod level;
pub mod linux_authorization;
pub mod log4j;
pub mod logcat;
pub mod logfmt;
pub mod multiline;
pub mod nginx;
pub mod syntax;
pub mod syslog;
pub mod timestamp;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::record::Record;
use grok::{Grok, PatternError};
use key_value::KeyValueOptions;
use syntax::Failure;
use timestamp::{TimeContext, TimeZone, TimeZoneError, YearResolver};

/// The line formats the adapter understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    ApacheCommon,
    ApacheCombined,
    ApacheError,
    NginxCombined,
    NginxMain,
    NginxError,
    /// RFC 5424 or RFC 3164, decided per line.
    Syslog,
    SyslogRfc3164,
    SyslogRfc5424,
    LinuxAuthorization,
    Klog,
    Glog,
    Logfmt,
    KeyValue,
    Cef,
    Json,
    Log4j,
    Logcat,
    Grok,
    Auto,
}

/// Names accepted on the command line; the first name of each format is its canonical one.
const NAMES: &[(&str, Format)] = &[
    ("apache_common", Format::ApacheCommon),
    ("common", Format::ApacheCommon),
    ("common_log", Format::ApacheCommon),
    ("apache_combined", Format::ApacheCombined),
    ("combined", Format::ApacheCombined),
    ("apache_error", Format::ApacheError),
    ("nginx_combined", Format::NginxCombined),
    ("nginx_main", Format::NginxMain),
    ("nginx_error", Format::NginxError),
    ("syslog", Format::Syslog),
    ("syslog_rfc3164", Format::SyslogRfc3164),
    ("rfc3164", Format::SyslogRfc3164),
    ("syslog_rfc5424", Format::SyslogRfc5424),
    ("rfc5424", Format::SyslogRfc5424),
    ("linux_authorization", Format::LinuxAuthorization),
    ("klog", Format::Klog),
    ("glog", Format::Glog),
    ("logfmt", Format::Logfmt),
    ("key_value", Format::KeyValue),
    ("cef", Format::Cef),
    ("json", Format::Json),
    ("log4j", Format::Log4j),
    ("logback", Format::Log4j),
    ("logcat", Format::Logcat),
    ("grok", Format::Grok),
    ("auto", Format::Auto),
];

impl Format {
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, format)| *format == self)
            .map_or("unknown", |(name, _)| name)
    }

    /// Every canonical format name, for help and error texts.
    pub fn canonical_names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for (name, format) in NAMES {
            if format.name() == *name {
                names.push(name);
            }
        }
        names
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim().to_ascii_lowercase().replace('-', "_");
        NAMES
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, format)| *format)
            .ok_or_else(|| ConfigError::UnknownFormat {
                name: text.to_owned(),
                known: Format::canonical_names().join(", "),
            })
    }
}

/// A configuration the parser cannot start with.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("unknown format `{name}`; known formats: {known}")]
    UnknownFormat { name: String, known: String },
    #[error("format `grok` needs a pattern (--pattern)")]
    MissingPattern,
    #[error("a pattern is only used by the `grok` and `auto` formats, not `{0}`")]
    UnusedPattern(Format),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error(transparent)]
    TimeZone(#[from] TimeZoneError),
    #[error("the maximum line length must be at least 1 byte")]
    ZeroLineLimit,
    #[error("key_value delimiters must not be empty")]
    EmptyDelimiter,
}

/// Default cap on one line: long enough for any sane log line, short enough that one
/// runaway line cannot exhaust memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// How to parse a stream.
#[derive(Debug, Clone)]
pub struct ParserConfig {
    pub format: Format,
    /// Zone for timestamps written without an offset.
    pub timezone: TimeZone,
    /// Lines longer than this are cut to it and flagged `truncated`.
    pub max_line_bytes: usize,
    /// The grok pattern for `grok` (and tried first by `auto`).
    pub pattern: Option<String>,
    pub key_value: KeyValueOptions,
    /// The date year inference starts from; today when `None`. Tests pin it.
    pub today: Option<(i32, u32, u32)>,
}

impl ParserConfig {
    pub fn new(format: Format) -> Self {
        ParserConfig {
            format,
            timezone: TimeZone::Utc,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            pattern: None,
            key_value: KeyValueOptions::default(),
            today: None,
        }
    }
}

/// Whether a line came out as structured fields or raw with a `parse_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Structured,
    Unstructured,
}

/// The parser of one stream. It keeps per-stream state (the year of year-less
/// timestamps, the format `auto` detected), so use one per input.
pub struct Parser {
    format: Format,
    max_line_bytes: usize,
    time: TimeContext,
    key_value: KeyValueOptions,
    grok: Option<Grok>,
    detector: auto::Detector,
    reason: String,
}

impl Parser {
    /// Checks the configuration and compiles the pattern once.
    pub fn new(config: ParserConfig) -> Result<Self, ConfigError> {
        if config.max_line_bytes == 0 {
            return Err(ConfigError::ZeroLineLimit);
        }
        config.key_value.validate()?;
        let grok = match (&config.pattern, config.format) {
            (None, Format::Grok) => return Err(ConfigError::MissingPattern),
            (Some(pattern), Format::Grok | Format::Auto) => Some(Grok::compile(pattern)?),
            (Some(_), other) => return Err(ConfigError::UnusedPattern(other)),
            (None, _) => None,
        };
        let years = match config.today {
            Some(today) => YearResolver::new(today),
            None => YearResolver::from_clock(),
        };
        Ok(Parser {
            format: config.format,
            max_line_bytes: config.max_line_bytes,
            time: TimeContext::new(config.timezone, years),
            key_value: config.key_value,
            grok,
            detector: auto::Detector::default(),
            reason: String::new(),
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Parses one line (with or without its line ending) and appends exactly one JSON
    /// record, ending in `\n`, to `out`.
    pub fn parse_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Outcome {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let truncated = line.len() > self.max_line_bytes;
        let bytes = if truncated {
            &line[..self.max_line_bytes]
        } else {
            line
        };
        let (text, invalid_utf8) = decode(bytes, truncated);

        let mut rec = Record::begin(out);
        let result = match self.format {
            Format::Auto => self.detector.parse(
                &text,
                &mut Formats {
                    time: &mut self.time,
                    key_value: &self.key_value,
                    grok: self.grok.as_ref(),
                },
                &mut rec,
            ),
            format => run(
                format,
                &text,
                &mut Formats {
                    time: &mut self.time,
                    key_value: &self.key_value,
                    grok: self.grok.as_ref(),
                },
                &mut rec,
            )
            .map_err(|failure| (format, failure)),
        };
        let outcome = match result {
            Ok(()) => Outcome::Structured,
            Err((format, failure)) => {
                use std::fmt::Write as _;
                rec.reset();
                rec.str("message", &text);
                self.reason.clear();
                let _ = write!(self.reason, "{format}: {failure}");
                rec.str("parse_error", &self.reason);
                Outcome::Unstructured
            }
        };
        if truncated {
            rec.flag("truncated");
        }
        if invalid_utf8 {
            rec.flag("invalid_utf8");
        }
        rec.finish();
        outcome
    }
}

/// UTF-8 text of a line, replacing invalid bytes. A multi-byte character cut by the
/// length cap is dropped rather than reported as invalid input.
fn decode(bytes: &[u8], truncated: bool) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(err) if truncated && err.error_len().is_none() => {
            let valid = &bytes[..err.valid_up_to()];
            (
                Cow::Borrowed(std::str::from_utf8(valid).unwrap_or_default()),
                false,
            )
        }
        Err(_) => (String::from_utf8_lossy(bytes), true),
    }
}

/// What the individual formats may need besides the line itself.
pub(crate) struct Formats<'p> {
    pub time: &'p mut TimeContext,
    pub key_value: &'p KeyValueOptions,
    pub grok: Option<&'p Grok>,
}

/// Parses `line` as `format` into `rec`. On failure `rec` may hold partial fields; the
/// caller resets it.
pub(crate) fn run(
    format: Format,
    line: &str,
    ctx: &mut Formats<'_>,
    rec: &mut Record<'_>,
) -> Result<(), Failure> {
    match format {
        Format::ApacheCommon => apache::parse_common(line, rec),
        Format::ApacheCombined => apache::parse_combined(line, rec),
        Format::ApacheError => apache::parse_error(line, ctx.time, rec),
        Format::NginxCombined => nginx::parse_combined(line, rec),
        Format::NginxMain => nginx::parse_main(line, rec),
        Format::NginxError => nginx::parse_error(line, ctx.time, rec),
        Format::Syslog => syslog::parse(line, ctx.time, rec),
        Format::SyslogRfc3164 => syslog::parse_rfc3164(line, ctx.time, rec),
        Format::SyslogRfc5424 => syslog::parse_rfc5424(line, ctx.time, rec),
        Format::LinuxAuthorization => linux_authorization::parse(line, ctx.time, rec),
        Format::Klog => klog::parse(line, ctx.time, rec),
        Format::Glog => glog::parse(line, ctx.time, rec),
        Format::Logfmt => logfmt::parse(line, rec),
        Format::KeyValue => key_value::parse(line, ctx.key_value, rec),
        Format::Cef => cef::parse(line, rec),
        Format::Json => json::parse(line, rec),
        Format::Log4j => log4j::parse(line, ctx.time, rec),
        Format::Logcat => logcat::parse(line, ctx.time, rec),
        Format::Grok => match ctx.grok {
            Some(grok) => grok.parse(line, ctx.time, rec),
            None => Err(Failure::Expected {
                what: "a configured grok pattern",
                at: 0,
            }),
        },
        Format::Auto => Err(Failure::Expected {
            what: "a concrete format",
            at: 0,
        }),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the per-format test tables: run a format function on one line and look
    //! at the record as JSON.

    use super::syntax::Failure;
    use super::timestamp::{TimeContext, YearResolver};
    use crate::record::Record;

    /// The "today" every table assumes, so year inference is deterministic.
    pub const TODAY: (i32, u32, u32) = (2024, 6, 15);

    pub fn render_in(
        zone: &str,
        f: impl FnOnce(&mut Record<'_>, &mut TimeContext) -> Result<(), Failure>,
    ) -> serde_json::Value {
        let mut time = TimeContext::new(zone.parse().expect("zone"), YearResolver::new(TODAY));
        let mut out = Vec::new();
        let mut rec = Record::begin(&mut out);
        if let Err(failure) = f(&mut rec, &mut time) {
            panic!("line did not parse: {failure}");
        }
        rec.finish();
        serde_json::from_slice(&out).expect("record is valid JSON")
    }

    pub fn render(
        f: impl FnOnce(&mut Record<'_>, &mut TimeContext) -> Result<(), Failure>,
    ) -> serde_json::Value {
        render_in("UTC", f)
    }

    pub fn failure(
        f: impl FnOnce(&mut Record<'_>, &mut TimeContext) -> Result<(), Failure>,
    ) -> String {
        let mut time = TimeContext::new(Default::default(), YearResolver::new(TODAY));
        let mut out = Vec::new();
        let mut rec = Record::begin(&mut out);
        match f(&mut rec, &mut time) {
            Ok(()) => {
                rec.finish();
                panic!("line parsed: {}", String::from_utf8_lossy(&out))
            }
            Err(failure) => failure.to_string(),
        }
    }

    pub fn fields(pairs: &[(&str, serde_json::Value)]) -> serde_json::Value {
        serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(format: Format) -> Parser {
        let mut config = ParserConfig::new(format);
        config.today = Some(testing::TODAY);
        Parser::new(config).expect("valid config")
    }

    fn line(parser: &mut Parser, input: &[u8]) -> (String, Outcome) {
        let mut out = Vec::new();
        let outcome = parser.parse_line(input, &mut out);
        (String::from_utf8(out).expect("UTF-8 output"), outcome)
    }

    #[test]
    fn fields_come_out_in_schema_order() {
        let mut p = parser(Format::ApacheCommon);
        let (json, outcome) = line(
            &mut p,
            br#"127.0.0.1 bob frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
        );
        assert_eq!(outcome, Outcome::Structured);
        assert_eq!(
            json,
            "{\"host\":\"127.0.0.1\",\"identity\":\"bob\",\"user\":\"frank\",\"timestamp\":\"2000-10-10T20:55:36Z\",\"message\":\"GET /apache_pb.gif HTTP/1.0\",\"method\":\"GET\",\"path\":\"/apache_pb.gif\",\"protocol\":\"HTTP/1.0\",\"status\":200,\"size\":2326}\n"
        );
    }

    #[test]
    fn unparseable_line_is_kept_with_the_reason() {
        let mut p = parser(Format::ApacheCommon);
        let (json, outcome) = line(&mut p, b"hello \"world\"\r\n");
        assert_eq!(outcome, Outcome::Unstructured);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["message"], "hello \"world\"");
        assert_eq!(
            v["parse_error"],
            "apache_common: expected a space at byte 13"
        );
        assert_eq!(v.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn long_lines_are_cut_and_flagged() {
        let mut config = ParserConfig::new(Format::Logfmt);
        config.max_line_bytes = 8;
        let mut p = Parser::new(config).expect("config");
        let (json, _) = line(&mut p, b"a=1 b=22 c=333");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["a"], "1");
        assert_eq!(v["b"], "22");
        assert!(v.get("c").is_none());
        assert_eq!(v["truncated"], true);
        // A cut through a multi-byte character drops the partial character only.
        let (json, _) = line(&mut p, "msg=xééé".as_bytes());
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["msg"], "xé");
        assert!(v.get("invalid_utf8").is_none());
    }

    #[test]
    fn a_name_is_written_once_the_line_keeps_it_and_later_ones_move_aside() {
        let cases: &[(Format, usize, &[u8], &str)] = &[
            (
                Format::Logfmt,
                30,
                b"truncated=no _truncated=1 cut here",
                r#"{"truncated":"no","_truncated":"1","cut":true,"__truncated":true}"#,
            ),
            (
                Format::Cef,
                1024,
                b"CEF:0|V|P|1|100|N|5|name=other level=x name=again",
                r#"{"cefVersion":"0","deviceVendor":"V","deviceProduct":"P","deviceVersion":"1","deviceEventClassId":"100","name":"N","severity":"5","level":"warning","_name":"other","_level":"x","__name":"again"}"#,
            ),
            (
                Format::Syslog,
                1024,
                br#"<13>1 2020-03-13T20:45:38Z h app 1 - [message x="1" x="2"][message y="3"] msg"#,
                r#"{"facility":"user","severity":"notice","level":"notice","version":1,"timestamp":"2020-03-13T20:45:38Z","hostname":"h","appname":"app","procid":1,"_message":{"x":"1","_x":"2"},"__message":{"y":"3"},"message":"msg"}"#,
            ),
            (
                Format::NginxError,
                1024,
                b"2021/04/01 13:02:31 [error] 31#31: m, client: a, client: b",
                r#"{"timestamp":"2021-04-01T13:02:31Z","severity":"error","level":"error","pid":31,"tid":31,"message":"m","client":"a","_client":"b"}"#,
            ),
            (
                Format::Json,
                1024,
                b"{\"invalid_utf8\":0,\"m\":\"caf\xe9\"}",
                "{\"invalid_utf8\":0,\"m\":\"caf\u{fffd}\",\"_invalid_utf8\":true}",
            ),
        ];
        for (format, cap, input, expected) in cases {
            let mut config = ParserConfig::new(*format);
            config.max_line_bytes = *cap;
            let mut p = Parser::new(config).expect("config");
            let (json, _) = line(&mut p, input);
            assert_eq!(json.trim_end(), *expected, "{format}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_flagged() {
        let mut p = parser(Format::Logfmt);
        let (json, outcome) = line(&mut p, b"msg=caf\xe9 ok=1");
        assert_eq!(outcome, Outcome::Structured);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["msg"], "caf\u{fffd}");
        assert_eq!(v["invalid_utf8"], true);
    }

    #[test]
    fn empty_line_still_makes_a_record() {
        let mut p = parser(Format::Syslog);
        let (json, outcome) = line(&mut p, b"");
        assert_eq!(outcome, Outcome::Unstructured);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["message"], "");
        assert!(
            v["parse_error"]
                .as_str()
                .is_some_and(|r| r.starts_with("syslog: "))
        );
    }

    #[test]
    fn configuration_errors_are_reported() {
        assert!(matches!(
            "nope".parse::<Format>(),
            Err(ConfigError::UnknownFormat { .. })
        ));
        assert_eq!(
            "Apache-Combined".parse::<Format>().ok(),
            Some(Format::ApacheCombined)
        );
        assert!(matches!(
            Parser::new(ParserConfig::new(Format::Grok)),
            Err(ConfigError::MissingPattern)
        ));
        let mut config = ParserConfig::new(Format::Json);
        config.pattern = Some("%{IP}".into());
        assert!(matches!(
            Parser::new(config),
            Err(ConfigError::UnusedPattern(Format::Json))
        ));
        let mut config = ParserConfig::new(Format::Json);
        config.max_line_bytes = 0;
        assert!(matches!(
            Parser::new(config),
            Err(ConfigError::ZeroLineLimit)
        ));
    }

    #[test]
    fn every_canonical_name_round_trips() {
        for name in Format::canonical_names() {
            let format: Format = name.parse().expect("known");
            assert_eq!(format.name(), name);
        }
    }
}
