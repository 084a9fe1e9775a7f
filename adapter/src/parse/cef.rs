//! ArcSight Common Event Format:
//! `CEF:Version|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|Extension`,
//! as Vector's `parse_cef`: anything before `CEF:` (a syslog header) is ignored, header
//! fields keep their `\|` and `\\` escapes resolved, extension values run to the next
//! `key=`, and every value is a string.

use std::borrow::Cow;

use super::syntax::{Failure, offset};
use crate::record::{Names, Record};

const HEADER: [&str; 7] = [
    "cefVersion",
    "deviceVendor",
    "deviceProduct",
    "deviceVersion",
    "deviceEventClassId",
    "name",
    "severity",
];

/// Resolves `\x` escapes: `\n` and `\r` become line breaks (extension values only), any
/// other escaped character stands for itself.
fn unescape(raw: &str, line_breaks: bool) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') if line_breaks => out.push('\n'),
            Some('r') if line_breaks => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// CEF severity (0–10 or Low/Medium/High/Very-High) on the shared level scale.
fn level_of(severity: &str) -> Option<&'static str> {
    if let Ok(n) = severity.parse::<u8>() {
        return match n {
            0..=3 => Some("info"),
            4..=6 => Some("warning"),
            7..=8 => Some("error"),
            9..=10 => Some("critical"),
            _ => None,
        };
    }
    match severity.to_ascii_lowercase().as_str() {
        "low" => Some("info"),
        "medium" => Some("warning"),
        "high" => Some("error"),
        "very-high" => Some("critical"),
        _ => None,
    }
}

/// Whether `key` can be an extension key; an `=` after anything else is part of a value
/// (`request=https://x?id=1` keeps its query string).
fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || b == b'.'
                || b == b'-'
                || b == b'['
                || b == b']'
        })
}

/// The `cef` format.
pub fn parse(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let start = line.find("CEF:").ok_or(Failure::Expected {
        what: "`CEF:`",
        at: 0,
    })?;
    let mut rest = &line[start + 4..];
    let mut header: [&str; 7] = [""; 7];
    for (i, slot) in header.iter_mut().enumerate() {
        let bytes = rest.as_bytes();
        let mut j = 0;
        let end = loop {
            match memchr::memchr2(b'|', b'\\', &bytes[j..]) {
                Some(p) if bytes[j + p] == b'\\' => j += p + 2,
                Some(p) => break Some(j + p),
                None => break None,
            }
            if j >= bytes.len() {
                break None;
            }
        };
        let Some(end) = end else {
            return Err(Failure::Expected {
                what: if i == 0 {
                    "the CEF header fields separated by `|`"
                } else {
                    "`|` after a header field"
                },
                at: offset(line, rest) + rest.len(),
            });
        };
        *slot = &rest[..end];
        rest = &rest[end + 1..];
    }
    if !header[0].bytes().all(|b| b.is_ascii_digit() || b == b'.') || header[0].is_empty() {
        return Err(Failure::Invalid {
            what: "CEF version",
            at: start + 4,
        });
    }
    for (name, raw) in HEADER.iter().zip(header) {
        rec.str(name, &unescape(raw, false));
    }
    let level = level_of(header[6].trim());
    rec.opt_str("level", level);
    let mut names = Names::with(&HEADER);
    if level.is_some() {
        names.claim("level");
    }
    write_extension(rest, &mut names, rec);
    Ok(())
}

/// `k1=v1 k2=v with spaces k3=v3`.
fn write_extension<'a>(extension: &'a str, names: &mut Names<'a>, rec: &mut Record<'_>) {
    let bytes = extension.as_bytes();
    // Unescaped `=` whose preceding word is a valid key start a pair.
    let mut starts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while let Some(p) = memchr::memchr2(b'=', b'\\', &bytes[i..]) {
        let at = i + p;
        if bytes[at] == b'\\' {
            i = at + 2;
            if i >= bytes.len() {
                break;
            }
            continue;
        }
        let key_start = extension[..at].rfind(' ').map_or(0, |s| s + 1);
        let boundary_ok = starts
            .last()
            .is_none_or(|&(_, prev_eq)| key_start > prev_eq);
        if boundary_ok && is_key(&extension[key_start..at]) {
            starts.push((key_start, at));
        }
        i = at + 1;
    }
    for (n, &(key_start, eq)) in starts.iter().enumerate() {
        let value_end = starts.get(n + 1).map_or(extension.len(), |&(next, _)| next);
        let value = extension[eq + 1..value_end].trim_end();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        rec.str(
            &names.claim(&extension[key_start..eq]),
            &unescape(value, true),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    fn cef(line: &str) -> serde_json::Value {
        render(|rec, _| parse(line, rec))
    }

    #[test]
    fn vector_documented_examples() {
        assert_eq!(
            cef(
                "Sep 29 08:26:10 host CEF:1|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232"
            ),
            json!({
                "cefVersion": "1", "deviceVendor": "Security", "deviceProduct": "threatmanager",
                "deviceVersion": "1.0", "deviceEventClassId": "100", "name": "worm successfully stopped",
                "severity": "10", "level": "critical", "src": "10.0.0.1", "dst": "2.1.2.2", "spt": "1232"
            })
        );
        let got = cef(
            "CEF:0|CyberArk|PTA|12.6|1|Suspected credentials theft|8|suser=mike2@prod1.domain.com shost=prod1.domain.com src=1.1.1.1 cs1Label=ExtraData cs1=None cs3=https://1.1.1.1/incidents/52b06812ec3500ed864c461e",
        );
        assert_eq!(got["suser"], "mike2@prod1.domain.com");
        assert_eq!(got["cs1Label"], "ExtraData");
        assert_eq!(
            got["cs3"],
            "https://1.1.1.1/incidents/52b06812ec3500ed864c461e"
        );
        assert_eq!(
            cef("CEF:1|Security|threatmanager|1.0|100|worm successfully stopped|10|")
                .as_object()
                .map(|o| o.len()),
            Some(8)
        );
        let got = cef(
            "CEF:0|CyberArk|PTA|12.6|1|Suspected credentials theft||suser=mike2@prod1.domain.com shost= src=1.1.1.1",
        );
        assert_eq!(got["severity"], "");
        assert_eq!(got["shost"], "");
        assert!(got.get("level").is_none());
        let got = cef(
            r"CEF:0|security|threatmanager|1.0|100|Detected a \| in message. No action needed.|10|src=10.0.0.1 msg=Detected a threat.\n No action needed act=blocked a \= dst=1.1.1.1",
        );
        assert_eq!(got["name"], "Detected a | in message. No action needed.");
        assert_eq!(got["msg"], "Detected a threat.\n No action needed");
        assert_eq!(got["act"], "blocked a =");
        assert_eq!(got["dst"], "1.1.1.1");
        let got = cef(
            "CEF:0|Vendor|Product|1.0|100|Event|5|src=10.0.0.1 request=https://foo.com?id=foo&a=bar dst=2.2.2.2",
        );
        assert_eq!(got["request"], "https://foo.com?id=foo&a=bar");
        assert_eq!(got["level"], "warning");
    }

    #[test]
    fn failures() {
        assert_eq!(
            failure(|rec, _| parse("no cef here", rec)),
            "expected `CEF:` at byte 0"
        );
        assert_eq!(
            failure(|rec, _| parse("CEF:0|a|b|c", rec)),
            "expected `|` after a header field at byte 11"
        );
    }
}
