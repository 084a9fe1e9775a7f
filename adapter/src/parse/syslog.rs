//! Syslog: RFC 5424 (with its structured data kept, one object per SD-ID as Vector's
//! `parse_syslog` writes it) and RFC 3164 / BSD syslog in the shapes seen in the wild
//! (with or without `<PRI>`, with or without a hostname, `Mmm dd hh:mm:ss` with or without
//! a year, or an RFC 3339 time as rsyslog writes it).

use nom::Parser as _;

use super::level::{self, SYSLOG_SEVERITY};
use super::syntax::{Failure, PResult, Syntax, digits, expect, present, spaces, word};
use super::timestamp::{TimeContext, Timestamp, month_from_abbr, num, parse_clock, parse_iso8601};
use crate::record::{Names, Record};

/// Facility names as Vector (through `syslog_loose`) writes them, by facility number.
const FACILITY: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// `<PRI>`: returns the facility and severity numbers.
fn pri(input: &str) -> PResult<'_, (usize, usize)> {
    let err = |rest| {
        nom::Err::Error(Syntax {
            rest,
            expected: "`<PRI>`",
        })
    };
    let body = input.strip_prefix('<').ok_or_else(|| err(input))?;
    let (rest, value) = digits(body).map_err(|_| err(input))?;
    let rest = rest.strip_prefix('>').ok_or_else(|| err(input))?;
    let value = num(value.as_bytes()).filter(|v| *v <= 191 && value.len() <= 3);
    let value = value.ok_or_else(|| err(input))? as usize;
    Ok((rest, (value / 8, value % 8)))
}

fn write_pri(rec: &mut Record<'_>, pri: Option<(usize, usize)>) {
    if let Some((facility, severity)) = pri {
        rec.str("facility", FACILITY[facility]);
        rec.str("severity", SYSLOG_SEVERITY[severity]);
        rec.opt_str("level", level::normalise(SYSLOG_SEVERITY[severity]));
    }
}

/// Whether the line looks like RFC 5424: `<PRI>` then a version number and a space.
fn is_rfc5424(line: &str) -> bool {
    let Ok((rest, _)) = pri(line.trim_start()) else {
        return false;
    };
    let version_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    (1..=2).contains(&version_len) && rest.as_bytes().get(version_len) == Some(&b' ')
}

/// RFC 5424 or RFC 3164, decided per line.
pub fn parse(line: &str, time: &mut TimeContext, rec: &mut Record<'_>) -> Result<(), Failure> {
    if is_rfc5424(line) {
        parse_rfc5424(line, time, rec)
    } else {
        parse_rfc3164(line, time, rec)
    }
}

/// `procid` is an integer when it is one (as in Vector), else the text.
fn write_procid(rec: &mut Record<'_>, procid: &str) {
    match super::syntax::parse_int(procid) {
        Some(pid) if !procid.starts_with(['+', '-']) => rec.int("procid", pid),
        _ => rec.str("procid", procid),
    }
}

/// RFC 5424.
pub fn parse_rfc5424(
    line: &str,
    time: &mut TimeContext,
    rec: &mut Record<'_>,
) -> Result<(), Failure> {
    let header = |input| -> PResult<'_, _> {
        let (input, pri) = expect("`<PRI>`", pri).parse(input)?;
        let (input, version) = expect("the version", digits).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, timestamp) = expect("the timestamp", word).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, hostname) = expect("the hostname", word).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, appname) = expect("the app name", word).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, procid) = expect("the process id", word).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, msgid) = expect("the message id", word).parse(input)?;
        Ok((
            input,
            (pri, version, timestamp, hostname, appname, procid, msgid),
        ))
    };
    let (rest, (pri, version, timestamp, hostname, appname, procid, msgid)) =
        header(line.trim_start()).map_err(|e| Failure::from_nom(line, e))?;
    let version = super::syntax::parse_int(version)
        .ok_or_else(|| Failure::invalid(line, version, "version"))?;

    write_pri(rec, Some(pri));
    rec.int("version", version);
    if let Some(raw) = present(timestamp) {
        let ts =
            parse_iso8601(raw, time).ok_or_else(|| Failure::invalid(line, raw, "timestamp"))?;
        rec.timestamp("timestamp", ts);
    }
    rec.opt_str("hostname", present(hostname));
    rec.opt_str("appname", present(appname));
    if let Some(procid) = present(procid) {
        write_procid(rec, procid);
    }
    rec.opt_str("msgid", present(msgid));

    let rest = rest.strip_prefix(' ').ok_or(Failure::Expected {
        what: "a space before the structured data",
        at: super::syntax::offset(line, rest),
    })?;
    let message = write_structured_data(line, rest, rec)?;
    // `message` is claimed by the format, so an SD-ID of that name was moved aside.
    let message = message.strip_prefix(' ').unwrap_or(message);
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    rec.str("message", message.trim_end());
    Ok(())
}

/// Writes `-` or `[id k="v" ...][id2 ...]` as one object per element and returns what
/// follows.
/// The fields an RFC 5424 record always may have: an SD-ID of one of these names is
/// written `_`-prefixed (see [`Names`]), as is a repeated SD-ID or parameter name.
const RFC5424_FIELDS: [&str; 10] = [
    "facility",
    "severity",
    "level",
    "version",
    "timestamp",
    "hostname",
    "appname",
    "procid",
    "msgid",
    "message",
];

fn write_structured_data<'a>(
    line: &str,
    input: &'a str,
    rec: &mut Record<'_>,
) -> Result<&'a str, Failure> {
    if let Some(rest) = input.strip_prefix('-') {
        return Ok(rest);
    }
    let mut ids = Names::with(&RFC5424_FIELDS);
    let at = |s: &str| super::syntax::offset(line, s);
    let mut rest = input;
    if !rest.starts_with('[') {
        return Err(Failure::Expected {
            what: "`-` or `[` for the structured data",
            at: at(rest),
        });
    }
    while let Some(element) = rest.strip_prefix('[') {
        let id_end = element.find([' ', ']']).ok_or(Failure::Expected {
            what: "`]`",
            at: at(element),
        })?;
        let id = &element[..id_end];
        if id.is_empty() {
            return Err(Failure::Expected {
                what: "an SD-ID",
                at: at(element),
            });
        }
        rec.begin_object(&ids.claim(id));
        let mut params = &element[id_end..];
        let mut param_names = Names::default();
        loop {
            params = params.trim_start_matches(' ');
            if let Some(after) = params.strip_prefix(']') {
                rest = after;
                break;
            }
            let eq = params.find('=').ok_or(Failure::Expected {
                what: "`name=\"value\"` in the structured data",
                at: at(params),
            })?;
            let name = params[..eq].trim_end();
            let value_start = params[eq + 1..].trim_start_matches(' ');
            let body = value_start.strip_prefix('"').ok_or(Failure::Expected {
                what: "a quoted structured data value",
                at: at(value_start),
            })?;
            let (value, after) = sd_value(body).ok_or(Failure::Expected {
                what: "the closing `\"` of a structured data value",
                at: at(body),
            })?;
            rec.str(&param_names.claim(name), &value);
            params = after;
        }
        rec.end_object();
    }
    Ok(rest)
}

/// A PARAM-VALUE up to its closing quote; `\"`, `\\` and `\]` are escapes (RFC 5424 6.3.3).
fn sd_value(body: &str) -> Option<(std::borrow::Cow<'_, str>, &str)> {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    while let Some(pos) = memchr::memchr2(b'"', b'\\', &bytes[i..]) {
        let at = i + pos;
        if bytes[at] == b'\\' {
            escaped = true;
            i = at + 2;
            if i > bytes.len() {
                return None;
            }
            continue;
        }
        let raw = &body[..at];
        let value = if escaped {
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some(e @ ('"' | '\\' | ']'))) => {
                        out.push(e);
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            std::borrow::Cow::Owned(out)
        } else {
            std::borrow::Cow::Borrowed(raw)
        };
        return Some((value, &body[at + 1..]));
    }
    None
}

/// The RFC 3164 time: `Mmm dd hh:mm:ss[.frac]`, `Mmm dd yyyy hh:mm:ss`, or RFC 3339.
fn bsd_time<'a>(
    line: &str,
    input: &'a str,
    time: &mut TimeContext,
) -> Result<(&'a str, Timestamp), Failure> {
    let at = super::syntax::offset(line, input);
    let expected = Failure::Expected {
        what: "the time as `Mmm dd hh:mm:ss`",
        at,
    };
    let invalid = Failure::Invalid {
        what: "timestamp",
        at,
    };
    if input.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let end = input.find(' ').unwrap_or(input.len());
        let ts = parse_iso8601(&input[..end], time).ok_or(expected)?;
        return Ok((&input[end..], ts));
    }
    let month = input
        .get(..3)
        .and_then(month_from_abbr)
        .ok_or(expected.clone())?;
    let rest = input[3..].trim_start_matches(' ');
    let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let day = num(&rest.as_bytes()[..day_len]).ok_or(expected.clone())?;
    let rest = rest[day_len..].trim_start_matches(' ');
    let (year, rest) = match rest.as_bytes().get(4) {
        Some(b' ') => (
            Some(num(&rest.as_bytes()[..4]).ok_or(expected.clone())? as i32),
            &rest[5..],
        ),
        _ => (None, rest),
    };
    let clock_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b':' || *b == b'.')
        .count();
    let clock = parse_clock(&rest.as_bytes()[..clock_len]).ok_or(expected)?;
    let ts = time.resolve(year, month, day, clock).ok_or(invalid)?;
    Ok((&rest[clock_len..], ts))
}

/// The parts of an RFC 3164 line after its time.
pub(crate) struct Bsd<'a> {
    pub hostname: Option<&'a str>,
    pub appname: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub message: &'a str,
}

/// Where a tag with spaces ends: macOS writes program names as they are
/// (`Microsoft Word[14463]: …`). Only taken when `[digits]:` follows soon, with no colon
/// before it, so an ordinary message with a bracket later on is not mistaken for a tag.
fn spaced_tag_end(tag_start: &str) -> Option<usize> {
    // At most 64 bytes, cut back to a character boundary (found by cargo fuzz: a cut
    // inside a multi-byte character panicked).
    let mut cut = tag_start.len().min(64);
    while !tag_start.is_char_boundary(cut) {
        cut -= 1;
    }
    let window = &tag_start[..cut];
    let open = window.find('[')?;
    let head = &window[..open];
    if !head.contains(' ') || head.contains(':') || head.starts_with(' ') {
        return None;
    }
    let after = &tag_start[open + 1..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0 && after[digits..].starts_with("]:")).then_some(open)
}

/// `[hostname] tag[pid]: message`. A first word that ends in `:` or holds `[` is the tag
/// of a line without hostname (`haproxy[73411]: …`).
pub(crate) fn bsd_body(input: &str) -> Bsd<'_> {
    let input = input.trim_start_matches(' ');
    let first_end = input.find(' ').unwrap_or(input.len());
    let first = &input[..first_end];
    let (hostname, tag_start) =
        if first.ends_with(':') || first.contains('[') || first_end == input.len() {
            (None, input)
        } else {
            (Some(first), input[first_end..].trim_start_matches(' '))
        };
    let tag_end = spaced_tag_end(tag_start)
        .or_else(|| tag_start.find([' ', '[', ':']))
        .unwrap_or(tag_start.len());
    let appname = &tag_start[..tag_end];
    let mut rest = &tag_start[tag_end..];
    let mut procid = None;
    if let Some(after) = rest.strip_prefix('[')
        && let Some(close) = after.find(']')
    {
        procid = Some(&after[..close]);
        rest = &after[close + 1..];
    }
    rest = rest.strip_prefix(':').unwrap_or(rest);
    let message = rest.strip_prefix(' ').unwrap_or(rest);
    Bsd {
        hostname,
        appname: (!appname.is_empty()).then_some(appname),
        procid,
        message,
    }
}

/// RFC 3164 / BSD syslog.
pub fn parse_rfc3164(
    line: &str,
    time: &mut TimeContext,
    rec: &mut Record<'_>,
) -> Result<(), Failure> {
    let start = line.trim_start();
    let (input, pri) = match pri(start) {
        Ok((rest, pri)) => (rest, Some(pri)),
        Err(_) => (start, None),
    };
    let (rest, ts) = bsd_time(line, input, time)?;
    if !rest.starts_with(' ') {
        return Err(Failure::Expected {
            what: "a space after the time",
            at: super::syntax::offset(line, rest),
        });
    }
    let body = bsd_body(rest);
    write_pri(rec, pri);
    rec.timestamp("timestamp", ts);
    rec.opt_str("hostname", body.hostname);
    rec.opt_str("appname", body.appname);
    if let Some(procid) = body.procid.and_then(present) {
        write_procid(rec, procid);
    }
    rec.str("message", body.message.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, fields, render, render_in};

    fn syslog(line: &str) -> serde_json::Value {
        render(|rec, time| parse(line, time, rec))
    }

    #[test]
    fn vector_documented_rfc5424_example() {
        let got = syslog(
            r#"<13>1 2020-03-13T20:45:38.119Z dynamicwireless.name non 2426 ID931 [exampleSDID@32473 iut="3" eventSource= "Application" eventID="1011"] Try to override the THX port, maybe it will reboot the neural interface!"#,
        );
        assert_eq!(
            got,
            fields(&[
                ("appname", "non".into()),
                (
                    "exampleSDID@32473",
                    serde_json::json!({"eventID": "1011", "eventSource": "Application", "iut": "3"})
                ),
                ("facility", "user".into()),
                ("hostname", "dynamicwireless.name".into()),
                (
                    "message",
                    "Try to override the THX port, maybe it will reboot the neural interface!"
                        .into()
                ),
                ("msgid", "ID931".into()),
                ("procid", 2426.into()),
                ("severity", "notice".into()),
                ("level", "notice".into()),
                ("timestamp", "2020-03-13T20:45:38.119Z".into()),
                ("version", 1.into()),
            ])
        );
    }

    #[test]
    fn rfc5424_structured_data_edge_cases() {
        let got = syslog(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 key="hello \"test\" a\\b [bye\]"][empty] An application event"#,
        );
        assert_eq!(got["exampleSDID@32473"]["key"], r#"hello "test" a\b [bye]"#);
        assert_eq!(got["empty"], serde_json::json!({}));
        assert!(got.get("procid").is_none());
        assert_eq!(got["facility"], "local4");
        // Nil timestamp and every other nil field are absent, and so is the message.
        let got = syslog("<14>1 - - - - - -");
        assert_eq!(
            got,
            fields(&[
                ("facility", "user".into()),
                ("severity", "info".into()),
                ("level", "info".into()),
                ("version", 1.into()),
                ("message", "".into()),
            ])
        );
        // A BOM before the message is not part of it; offsets are applied.
        let got = syslog("<34>1 2024-02-29T23:30:00-02:00 h app proc-7 - - \u{feff}hello");
        assert_eq!(got["message"], "hello");
        assert_eq!(got["procid"], "proc-7");
        assert_eq!(got["timestamp"], "2024-03-01T01:30:00Z");
        assert_eq!(got["severity"], "crit");
        assert_eq!(got["level"], "critical");
        let err = failure(|rec, time| {
            parse_rfc5424("<13>1 2020-03-13T20:45:38Z h a p m [broken", time, rec)
        });
        assert!(err.starts_with("expected"), "{err}");
    }

    #[test]
    fn a_tag_window_ending_inside_a_character_does_not_panic() {
        // From the fuzzer: the 64-byte look-ahead for a spaced tag ended inside `\u{fffd}`.
        let line = "Dec 10 09:17:55 LabSZ sshd[24622]: Received disconnect from 187.141.143.180: 11\u{fffd}\u{fffd}\u{fffd}\u{fffd}: Bye";
        assert!(!line.is_char_boundary(line.find("sshd").expect("tag") + 64));
        let got = syslog(line);
        assert_eq!(got["appname"], "sshd");
        assert_eq!(got["procid"], 24622);
        let line = "Dec 10 09:17:55 LabSZ ab cdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\u{e9}x[1]: m";
        assert!(syslog(line)["timestamp"].is_string());
    }

    #[test]
    fn rfc3164_shapes() {
        let got = syslog("<133>Jun 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.");
        assert_eq!(
            got,
            fields(&[
                ("facility", "local0".into()),
                ("severity", "notice".into()),
                ("level", "notice".into()),
                ("timestamp", "2024-06-13T16:33:35Z".into()),
                ("appname", "haproxy".into()),
                ("procid", 73411.into()),
                ("message", "Proxy sticky-servers started.".into()),
            ])
        );
        let got = syslog(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0",
        );
        assert_eq!(got["hostname"], "combo");
        assert_eq!(got["appname"], "sshd(pam_unix)");
        assert_eq!(got["procid"], 19939);
        assert!(got.get("facility").is_none());
        let got = syslog(
            "Jul  1 09:00:55 calvisitor-10-105-160-95 kernel[0]: IOThunderboltSwitch<0>(0x0)::listenerCallback",
        );
        // 1 July is after the pinned "today" of 15 June 2024, so it was last year's.
        assert_eq!(got["timestamp"], "2023-07-01T09:00:55Z");
        assert_eq!(
            got["message"],
            "IOThunderboltSwitch<0>(0x0)::listenerCallback"
        );
        let got = syslog(
            "<131>Jun 8 11:54:08 master apache_error [Tue Jun 08 11:54:08.929301 2021] [php7:emerg] rest",
        );
        assert_eq!(got["appname"], "apache_error");
        assert_eq!(
            got["message"],
            "[Tue Jun 08 11:54:08.929301 2021] [php7:emerg] rest"
        );
        let got = syslog(
            "Jul  1 09:01:05 calvisitor-10-105-160-95 Microsoft Word[14463]: document saved",
        );
        assert_eq!(got["appname"], "Microsoft Word");
        assert_eq!(got["procid"], 14463);
        assert_eq!(got["message"], "document saved");
        let got = syslog("Jul  1 09:01:05 host kernel: disk [0]: failed");
        assert_eq!(got["appname"], "kernel");
        assert_eq!(got["message"], "disk [0]: failed");
        let got = syslog("<13>2024-05-01T10:00:00.5+02:00 host app: rsyslog high precision");
        assert_eq!(got["timestamp"], "2024-05-01T08:00:00.500Z");
        let got = syslog("Dec 31 2019 23:59:59 host cron: with a year");
        assert_eq!(got["timestamp"], "2019-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3164_time_zone_and_year_rollover() {
        // Local times in the configured zone, year following the stream over New Year.
        let got = render_in("Europe/Berlin", |rec, time| {
            *time = TimeContext::new(
                time.zone,
                crate::parse::timestamp::YearResolver::new((2025, 1, 2)),
            );
            parse_rfc3164("Dec 31 23:59:59 h a: last", time, rec)?;
            rec.reset();
            parse_rfc3164("Jan  1 00:00:01 h a: first", time, rec)
        });
        assert_eq!(got["timestamp"], "2024-12-31T23:00:01Z");
        let got = render_in("UTC", |rec, time| {
            *time = TimeContext::new(
                time.zone,
                crate::parse::timestamp::YearResolver::new((2025, 3, 2)),
            );
            parse_rfc3164(
                "Feb 29 12:00:00 h a: leap day read in a common year",
                time,
                rec,
            )
        });
        assert_eq!(got["timestamp"], "2024-02-29T12:00:00Z");
    }

    #[test]
    fn rfc3164_failures() {
        let err = failure(|rec, time| parse("not much of a syslog message", time, rec));
        assert_eq!(err, "expected the time as `Mmm dd hh:mm:ss` at byte 0");
        let err = failure(|rec, time| parse("<13>Jun 31 10:00:00 h a: x", time, rec));
        assert_eq!(err, "invalid timestamp at byte 4");
    }
}
