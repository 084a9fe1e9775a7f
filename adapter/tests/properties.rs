//! Properties every format must keep for any input: the parser never panics, and every
//! line comes out as exactly one JSON object on one line, with the raw text kept when the
//! line did not parse.

#[path = "common/json_check.rs"]
mod json_check;

use adapter::input::pump;
use adapter::parse::{Format, Outcome, Parser, ParserConfig};
use proptest::prelude::*;

const FORMATS: [Format; 20] = [
    Format::ApacheCommon,
    Format::ApacheCombined,
    Format::ApacheError,
    Format::NginxCombined,
    Format::NginxMain,
    Format::NginxError,
    Format::Syslog,
    Format::SyslogRfc3164,
    Format::SyslogRfc5424,
    Format::LinuxAuthorization,
    Format::Klog,
    Format::Glog,
    Format::Logfmt,
    Format::KeyValue,
    Format::Cef,
    Format::Json,
    Format::Log4j,
    Format::Logcat,
    Format::Grok,
    Format::Auto,
];

/// Valid lines of each shape, for mutation: random bytes alone rarely get past the first
/// field, mutated real lines reach every branch.
const SAMPLES: &[&str] = &[
    r#"127.0.0.1 bob frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://r/" "Mozilla/5.0""#,
    "[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 10.0.0.1:5] AH00128: nope",
    r#"2021/04/01 13:02:31 [error] 31#31: *1 open() "/x" failed, client: 172.17.0.1, server: localhost, request: "POST / HTTP/1.1", host: "h""#,
    r#"<13>1 2020-03-13T20:45:38.119Z host app 2426 ID931 [id@1 a="1" b="x\"y"] message"#,
    "<34>Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; user=root",
    "I0505 17:59:40.692994   28133 klog.go:70] hello from klog",
    "I20210131 14:48:54.411655 15520 main.c++:9] Hello world!",
    r#"level=info msg="quoted \"value\"" n=1 bare"#,
    r"CEF:0|Vendor|Prod|1.0|100|Name \| x|5|src=10.0.0.1 msg=a\=b request=https://x?id=1",
    r#"{"level":"info","nested":{"a":[1,2,null]}}"#,
    "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:2181:FastLeaderElection@774] - Notification",
    "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
    "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed",
    // Lines whose own names collide with the fields the adapter or the format adds.
    "truncated=no invalid_utf8=0 _truncated parse_error=none message=hi timestamp=now level=info",
    r#"{"truncated":false,"a":1,"a":{"b":2,"b":[{"c":1,"c":2}]},"invalid_utf8":null}"#,
    r#"<13>1 2020-03-13T20:45:38Z h app 1 - [message x="1" x="2"][message y="3"][timestamp a="b"] msg"#,
    "CEF:0|V|P|1|100|N|5|name=other severity=1 level=x name=again truncated=1",
    r#"2021/04/01 13:02:31 [error] 31#31: *1 m, client: 1.2.3.4, client: 5.6.7.8, referrer: "a", referer: "b""#,
];

fn parser(format: Format, max_line_bytes: usize) -> Parser {
    let mut config = ParserConfig::new(format);
    config.max_line_bytes = max_line_bytes;
    config.today = Some((2024, 6, 15));
    if matches!(format, Format::Grok) {
        config.pattern = Some("%{HDFS}".into());
    }
    config.timezone = "Europe/Berlin".parse().expect("zone");
    Parser::new(config).expect("config")
}

/// Checks the one-record property for `line` in every format.
fn check_line(line: &[u8], max_line_bytes: usize) -> Result<(), TestCaseError> {
    for format in FORMATS {
        let mut p = parser(format, max_line_bytes);
        let mut out = Vec::new();
        let outcome = p.parse_line(line, &mut out);
        prop_assert_eq!(
            out.last(),
            Some(&b'\n'),
            "{} did not end its record",
            format
        );
        prop_assert_eq!(
            out.iter().filter(|b| **b == b'\n').count(),
            1,
            "{} wrote more than one line",
            format
        );
        if let Err(reason) = json_check::check_record(&out[..out.len() - 1]) {
            return Err(TestCaseError::fail(format!("{format}: {reason}")));
        }
        let record: serde_json::Value = match serde_json::from_slice(&out) {
            Ok(value) => value,
            Err(err) => {
                return Err(TestCaseError::fail(format!(
                    "{format} wrote invalid JSON ({err}): {}",
                    String::from_utf8_lossy(&out)
                )));
            }
        };
        prop_assert!(record.is_object(), "{} wrote a non-object", format);
        let stripped = line.strip_suffix(b"\r").unwrap_or(line);
        let truncated = stripped.len() > max_line_bytes;
        // The flag keeps its name unless the line itself has a field called so; then it is
        // the first free `_`-prefixed name.
        let flagged = record.as_object().is_some_and(|fields| {
            fields
                .iter()
                .any(|(key, value)| key.trim_start_matches('_') == "truncated" && *value == true)
        });
        if truncated {
            prop_assert!(flagged, "{} did not flag a cut line", format);
        } else if !String::from_utf8_lossy(line).contains("truncated") {
            prop_assert!(!flagged, "{} flagged a whole line", format);
        }
        if outcome == Outcome::Unstructured {
            prop_assert!(record["parse_error"].is_string());
            let kept = &stripped[..stripped.len().min(max_line_bytes)];
            let message = record["message"].as_str().unwrap_or_default();
            let lossy = String::from_utf8_lossy(kept);
            // The raw text is kept whole, except for a character the length cap split.
            prop_assert!(lossy.starts_with(message), "{} lost the raw text", format);
            prop_assert!(lossy.len() - message.len() <= 3);
        }
    }
    Ok(())
}

fn mutated_sample() -> impl Strategy<Value = Vec<u8>> {
    (
        0..SAMPLES.len(),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6),
    )
        .prop_map(|(index, edits)| {
            let mut line = SAMPLES[index].as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let at = at % (line.len() + 1);
                match kind {
                    0 => line.insert(at, byte),
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    _ => line.truncate(at),
                }
            }
            line.retain(|b| *b != b'\n');
            line
        })
}

proptest! {
    // Failures print their minimal input; nothing is written into the source tree.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_make_exactly_one_record(line in prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..300)) {
        check_line(&line, 64 * 1024)?;
    }

    #[test]
    fn any_text_makes_exactly_one_record(line in "[^\n]{0,200}") {
        check_line(line.as_bytes(), 64 * 1024)?;
    }

    #[test]
    fn mutated_real_lines_make_exactly_one_record(line in mutated_sample(), cap in 1usize..200) {
        check_line(&line, 64 * 1024)?;
        check_line(&line, cap)?;
    }

    #[test]
    fn a_stream_gives_one_record_per_line(lines in prop::collection::vec(mutated_sample(), 0..20), final_newline in any::<bool>()) {
        let mut input = lines.join(&b'\n');
        if final_newline && !lines.is_empty() {
            input.push(b'\n');
        }
        let mut p = parser(Format::Auto, 64 * 1024);
        let mut out = Vec::new();
        let totals = pump(&input[..], &mut p, &mut out).expect("pump");
        // A line is what ends in a newline, plus a final unterminated one.
        let expected = input.iter().filter(|b| **b == b'\n').count()
            + usize::from(input.last().is_some_and(|b| *b != b'\n'));
        prop_assert_eq!(totals.lines as usize, expected);
        prop_assert_eq!(out.iter().filter(|b| **b == b'\n').count(), expected);
    }
}
