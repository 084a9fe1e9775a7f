//! The body of every fuzz target, also run over the committed seed corpora by
//! `tests/fuzz_corpus.rs` so the targets are exercised on the stable toolchain too.
//!
//! For one format and any input bytes: parsing the bytes as one line never panics and
//! writes exactly one record, one line of JSON, an object with unique keys at every depth,
//! keeping the raw text when the line did not parse; reading the bytes as a stream gives
//! one such record per line.

use adapter::input::pump;
use adapter::parse::{Format, Outcome, Parser, ParserConfig};

use super::json_check::check_record;

/// Every format, by the name its fuzz target carries.
pub const TARGETS: &[(&str, Format)] = &[
    ("apache_common", Format::ApacheCommon),
    ("apache_combined", Format::ApacheCombined),
    ("apache_error", Format::ApacheError),
    ("nginx_combined", Format::NginxCombined),
    ("nginx_main", Format::NginxMain),
    ("nginx_error", Format::NginxError),
    ("syslog", Format::Syslog),
    ("syslog_rfc3164", Format::SyslogRfc3164),
    ("syslog_rfc5424", Format::SyslogRfc5424),
    ("linux_authorization", Format::LinuxAuthorization),
    ("klog", Format::Klog),
    ("glog", Format::Glog),
    ("logfmt", Format::Logfmt),
    ("key_value", Format::KeyValue),
    ("cef", Format::Cef),
    ("json", Format::Json),
    ("log4j", Format::Log4j),
    ("logcat", Format::Logcat),
    ("grok", Format::Grok),
    ("auto", Format::Auto),
];

/// The pattern the `grok` target runs: the shipped Thunderbird pattern reaches the
/// timestamp, level and typed-capture paths.
pub const GROK_PATTERN: &str = "%{THUNDERBIRD}";

fn parser(format: Format, max_line_bytes: usize) -> Parser {
    let mut config = ParserConfig::new(format);
    config.max_line_bytes = max_line_bytes;
    config.today = Some((2024, 12, 31));
    config.timezone = "America/New_York".parse().expect("zone");
    if format == Format::Grok {
        config.pattern = Some(GROK_PATTERN.to_owned());
    }
    Parser::new(config).expect("fuzz parser config")
}

/// Runs `data` through `format`; panics when a property does not hold.
pub fn check(format: Format, data: &[u8]) {
    // A small cap as well as the default, so the truncation paths are fuzzed too.
    let cap = 1 + usize::from(data.first().copied().unwrap_or(0));
    for max_line_bytes in [64 * 1024, cap] {
        let mut p = parser(format, max_line_bytes);
        let mut out = Vec::new();
        let outcome = p.parse_line(data, &mut out);
        assert_eq!(out.last(), Some(&b'\n'), "{format}: record not ended");
        let body = &out[..out.len() - 1];
        assert!(!body.contains(&b'\n'), "{format}: record spans lines");
        if let Err(reason) = check_record(body) {
            panic!("{format}: {reason}");
        }
        if outcome == Outcome::Unstructured {
            let record: serde_json::Value = serde_json::from_slice(body).expect("checked");
            assert!(record["parse_error"].is_string(), "{format}: no reason");
            assert!(record["message"].is_string(), "{format}: raw text lost");
        }

        let mut p = parser(format, max_line_bytes);
        let mut out = Vec::new();
        let totals = pump(data, &mut p, &mut out).expect("in-memory pump");
        let lines = data.iter().filter(|b| **b == b'\n').count()
            + usize::from(data.last().is_some_and(|b| *b != b'\n'));
        assert_eq!(totals.lines as usize, lines, "{format}: lines miscounted");
        let records: Vec<&[u8]> = out.split(|b| *b == b'\n').collect();
        assert_eq!(records.len(), lines + 1, "{format}: one record per line");
        for record in &records[..lines] {
            if let Err(reason) = check_record(record) {
                panic!("{format}: {reason}");
            }
        }
    }
}

/// Compiles `data` as a grok pattern: never panics, and a rejected pattern names a
/// position inside it.
pub fn check_pattern(data: &[u8]) {
    let Ok(pattern) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = adapter::parse::grok::Grok::compile(pattern) {
        assert!(
            err.position <= err.pattern.len(),
            "position {} past the pattern",
            err.position
        );
    }
}
