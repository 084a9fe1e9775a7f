//! Apache httpd: the access log in Common and Combined Log Format, and the error log in
//! both its 2.2 (`[time] [level] message`) and 2.4 (`[time] [module:level] [pid N:tid M]
//! [client addr:port] message`) shapes. Field names follow Vector's `parse_apache_log`
//! (and `parse_common_log`, which is the common format).

use nom::Parser as _;
use nom::branch::alt;
use nom::combinator::opt;

use super::level;
use super::syntax::{
    Failure, PResult, bracketed, dash_or_integer, end, expect, lit, opt_spaces, present,
    quoted_then, spaces, unescape, word,
};
use super::timestamp::{TimeContext, parse_clf, parse_ctime};
use crate::record::Record;

/// The fields of one access-log line, borrowed from it.
pub(crate) struct Access<'a> {
    pub host: &'a str,
    pub identity: &'a str,
    pub user: &'a str,
    pub timestamp: Option<&'a str>,
    /// The raw text inside the request quotes (escapes not yet resolved).
    pub request: Option<&'a str>,
    pub status: Option<i64>,
    pub size: Option<i64>,
    pub referrer: Option<&'a str>,
    pub agent: Option<&'a str>,
}

/// `-`, standing for an absent bracketed or quoted field.
fn dash(input: &str) -> PResult<'_, &str> {
    let (rest, _) = lit("-")(input)?;
    Ok((rest, "-"))
}

fn status_and_size(input: &str) -> PResult<'_, (Option<i64>, Option<i64>)> {
    let (input, _) = spaces(input)?;
    let (input, status) = expect("the status code", dash_or_integer).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, size) = expect("the response size", dash_or_integer).parse(input)?;
    if !(input.is_empty() || input.starts_with([' ', '\t'])) {
        return expect("a space after the size", spaces)
            .parse(input)
            .map(|(i, _)| (i, (status, size)));
    }
    Ok((input, (status, size)))
}

/// The host, identity, user, timestamp, request, status and size shared by both formats.
pub(crate) fn common_fields(input: &str) -> PResult<'_, Access<'_>> {
    let (input, _) = opt_spaces(input)?;
    let (input, host) = expect("the client host", word).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, identity) = expect("the identity", word).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, user) = expect("the user", word).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, timestamp) = expect("`[` and the time", alt((bracketed, dash))).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, (request, (status, size))) = expect(
        "the quoted request, status and size",
        alt((quoted_then(status_and_size), (dash, status_and_size))),
    )
    .parse(input)?;
    Ok((
        input,
        Access {
            host,
            identity,
            user,
            timestamp: present(timestamp),
            request: (request != "-").then_some(request),
            status,
            size,
            referrer: None,
            agent: None,
        },
    ))
}

/// What may follow the user agent: the end, or another logged field (`%D`, a quoted
/// vhost). Anything else means the quote that seemed to close the agent was inside it.
fn after_last_field(input: &str) -> PResult<'_, ()> {
    if end(input).is_ok() {
        return Ok(("", ()));
    }
    let (rest, _) = spaces(input)?;
    match rest.bytes().next() {
        Some(b'"' | b'-' | b'0'..=b'9') => Ok((rest, ())),
        _ => Err(nom::Err::Error(super::syntax::Syntax {
            rest: input,
            expected: "the end of the line after the user agent",
        })),
    }
}

/// The combined format: common, then the quoted referrer and user agent. A line that stops
/// after the size is still accepted, with the two fields absent; anything after the user
/// agent (a `%D`, a vhost) is ignored, as Vector does.
pub(crate) fn combined_fields(input: &str) -> PResult<'_, Access<'_>> {
    let (input, mut access) = common_fields(input)?;
    if end(input).is_ok() {
        return Ok(("", access));
    }
    let (input, _) = spaces(input)?;
    let agent_after_referrer = |i| -> PResult<'_, Option<&str>> {
        let (i, _) = spaces(i)?;
        let (i, agent) = expect(
            "the quoted user agent",
            alt((
                quoted_then(after_last_field).map(|(a, _)| Some(a)),
                dash.map(|_| None),
            )),
        )
        .parse(i)?;
        Ok((i, agent))
    };
    let (input, (referrer, agent)) = expect(
        "the quoted referrer and user agent",
        alt((
            quoted_then(agent_after_referrer).map(|(r, a)| (Some(r), a)),
            (dash.map(|_| None), agent_after_referrer),
        )),
    )
    .parse(input)?;
    access.referrer = referrer;
    access.agent = agent;
    Ok((input, access))
}

/// Writes the request line and its parts: `message`, then `method`, `path` and
/// `protocol` when the request has that shape.
pub(crate) fn write_request(rec: &mut Record<'_>, raw: &str) {
    let request = unescape(raw);
    let trimmed = request.trim();
    if trimmed.is_empty() || trimmed == "-" {
        return;
    }
    rec.str("message", trimmed);
    let mut parts = trimmed.splitn(2, ' ');
    let method = parts.next().unwrap_or("");
    let Some(remainder) = parts.next() else {
        return;
    };
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return;
    }
    let remainder = remainder.trim();
    let (path, protocol) = match remainder.rsplit_once(' ') {
        Some((path, protocol)) => (path.trim_end(), Some(protocol)),
        None => (remainder, None),
    };
    rec.str("method", method);
    rec.str("path", path);
    rec.opt_str("protocol", protocol);
}

fn write_access(
    line: &str,
    access: &Access<'_>,
    combined: bool,
    rec: &mut Record<'_>,
) -> Result<(), Failure> {
    rec.opt_str("host", present(access.host));
    rec.opt_str("identity", present(access.identity));
    rec.opt_str("user", present(access.user));
    if let Some(raw) = access.timestamp {
        let ts = parse_clf(raw).ok_or_else(|| Failure::invalid(line, raw, "timestamp"))?;
        rec.timestamp("timestamp", ts);
    }
    if let Some(request) = access.request {
        write_request(rec, request);
    }
    rec.opt_int("status", access.status);
    rec.opt_int("size", access.size);
    if combined {
        if let Some(referrer) = access.referrer.and_then(present) {
            rec.str("referrer", &unescape(referrer));
        }
        if let Some(agent) = access.agent.and_then(present) {
            rec.str("agent", &unescape(agent));
        }
    }
    Ok(())
}

/// Apache `common` (also Vector's `parse_common_log`).
pub fn parse_common(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let (rest, access) = common_fields(line).map_err(|e| Failure::from_nom(line, e))?;
    end(rest).map_err(|e| Failure::from_nom(line, e))?;
    write_access(line, &access, false, rec)
}

/// Apache `combined`.
pub fn parse_combined(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let (_, access) = combined_fields(line).map_err(|e| Failure::from_nom(line, e))?;
    write_access(line, &access, true, rec)
}

/// `[pid N]` or `[pid N:tid M]`.
fn pid_block(input: &str) -> PResult<'_, (Option<&str>, Option<&str>)> {
    let (rest, body) = bracketed(input)?;
    let Some(ids) = body.strip_prefix("pid") else {
        return Err(nom::Err::Error(super::syntax::Syntax {
            rest: input,
            expected: "`[pid`",
        }));
    };
    let ids = ids.trim();
    let (pid, tid) = match ids.split_once(':') {
        Some((pid, tid)) => (
            pid.trim(),
            Some(tid.trim().trim_start_matches("tid").trim()),
        ),
        None => (ids, None),
    };
    Ok((rest, (present(pid), tid.and_then(present))))
}

fn client_block(input: &str) -> PResult<'_, &str> {
    let (rest, body) = bracketed(input)?;
    match body.strip_prefix("client ") {
        Some(client) => Ok((rest, client.trim())),
        None => Err(nom::Err::Error(super::syntax::Syntax {
            rest: input,
            expected: "`[client`",
        })),
    }
}

/// The Apache error log.
pub fn parse_error(
    line: &str,
    time: &mut TimeContext,
    rec: &mut Record<'_>,
) -> Result<(), Failure> {
    let fields = |input| -> PResult<'_, _> {
        let (input, _) = opt_spaces(input)?;
        let (input, ts) = expect("`[` and the time", bracketed).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, level_block) = expect("`[` and the level", bracketed).parse(input)?;
        let (input, _) = opt_spaces(input)?;
        let (input, pid) = opt(pid_block).parse(input)?;
        let (input, _) = opt_spaces(input)?;
        let (input, client) = opt(client_block).parse(input)?;
        let (input, _) = opt_spaces(input)?;
        Ok((input, (ts, level_block, pid, client)))
    };
    let (message, (ts, level_block, pid, client)) =
        fields(line).map_err(|e| Failure::from_nom(line, e))?;

    if let Some(raw) = present(ts.trim()) {
        let parsed = parse_ctime(raw, time).or_else(|| parse_clf(raw));
        rec.timestamp(
            "timestamp",
            parsed.ok_or_else(|| Failure::invalid(line, ts, "timestamp"))?,
        );
    }
    let (module, severity) = match level_block.split_once(':') {
        Some((module, severity)) => (present(module), severity),
        None => (None, level_block),
    };
    rec.opt_str("module", module);
    let severity = present(severity.trim());
    rec.opt_str("severity", severity);
    rec.opt_str("level", severity.and_then(level::normalise));
    if let Some((pid, tid)) = pid {
        if let Some(pid) = pid {
            let value =
                super::syntax::parse_int(pid).ok_or_else(|| Failure::invalid(line, pid, "pid"))?;
            rec.int("pid", value);
        }
        rec.opt_str("thread", tid);
    }
    if let Some(client) = client.and_then(present) {
        // 2.4 writes `%a` as address:port; 2.2 writes the address alone, so only the 2.4
        // shape (recognised by its pid block) is split, keeping an IPv6 `::1` whole.
        let split = pid
            .is_some()
            .then(|| client.rsplit_once(':'))
            .flatten()
            .and_then(|(addr, port)| super::syntax::parse_int(port).map(|p| (addr, p)));
        match split {
            Some((addr, port)) => {
                rec.str("client", addr.trim_start_matches('[').trim_end_matches(']'));
                rec.int("port", port);
            }
            None => rec.str("client", client),
        }
    }
    rec.opt_str("message", present(message.trim_end()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{fields, render};

    fn combined(line: &str) -> serde_json::Value {
        render(|rec, _| parse_combined(line, rec))
    }

    fn common(line: &str) -> serde_json::Value {
        render(|rec, _| parse_common(line, rec))
    }

    fn error(line: &str) -> serde_json::Value {
        render(|rec, time| parse_error(line, time, rec))
    }

    #[test]
    fn vector_documented_common_example() {
        let got = common(
            r#"127.0.0.1 bob frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
        );
        assert_eq!(
            got,
            fields(&[
                ("host", "127.0.0.1".into()),
                ("identity", "bob".into()),
                ("user", "frank".into()),
                ("timestamp", "2000-10-10T20:55:36Z".into()),
                ("message", "GET /apache_pb.gif HTTP/1.0".into()),
                ("method", "GET".into()),
                ("path", "/apache_pb.gif".into()),
                ("protocol", "HTTP/1.0".into()),
                ("status", 200.into()),
                ("size", 2326.into()),
            ])
        );
    }

    #[test]
    fn vector_documented_combined_example() {
        let got = combined(
            r#"127.0.0.1 bob frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.seniorinfomediaries.com/vertical/channels/front-end/bandwidth" "Mozilla/5.0 (X11; Linux i686; rv:5.0) Gecko/1945-10-12 Firefox/37.0""#,
        );
        assert_eq!(
            got["referrer"],
            "http://www.seniorinfomediaries.com/vertical/channels/front-end/bandwidth"
        );
        assert_eq!(
            got["agent"],
            "Mozilla/5.0 (X11; Linux i686; rv:5.0) Gecko/1945-10-12 Firefox/37.0"
        );
        assert_eq!(got["status"], 200);
        assert_eq!(got["size"], 2326);
        assert_eq!(got["timestamp"], "2000-10-10T20:55:36Z");
    }

    #[test]
    fn access_log_awkward_cases() {
        // IPv6 client, dashes for absent fields, size `-` (no body).
        let got = combined(
            r#"2001:db8::1 - - [29/Feb/2024:23:59:59 +0100] "HEAD / HTTP/1.1" 304 - "-" "-""#,
        );
        assert_eq!(
            got,
            fields(&[
                ("host", "2001:db8::1".into()),
                ("timestamp", "2024-02-29T22:59:59Z".into()),
                ("message", "HEAD / HTTP/1.1".into()),
                ("method", "HEAD".into()),
                ("path", "/".into()),
                ("protocol", "HTTP/1.1".into()),
                ("status", 304.into()),
            ])
        );
        // Escaped and raw quotes inside quoted fields.
        let got = combined(
            r#"10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET /q?x=\"y\" HTTP/1.1" 200 5 "-" "Mozilla "compatible" bot""#,
        );
        assert_eq!(got["path"], r#"/q?x="y""#);
        assert_eq!(got["agent"], r#"Mozilla "compatible" bot"#);
        // A combined line cut after the size still parses, missing fields absent.
        let got = combined(r#"10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 5"#);
        assert_eq!(got["size"], 5);
        assert!(got.get("agent").is_none());
        // An unparseable request keeps its text as the message.
        let got = common(r#"10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "\x16\x03\x01" 400 0"#);
        assert_eq!(got["message"], r"\x16\x03\x01");
        assert!(got.get("method").is_none());
        // A request of `-` and an empty request.
        let got = common(r#"10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] - 408 -"#);
        assert!(got.get("message").is_none());
        let got = common(r#"10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "" 400 0"#);
        assert!(got.get("message").is_none());
        assert_eq!(got["status"], 400);
    }

    #[test]
    fn access_log_failures_say_where() {
        let line = r#"10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" abc 5"#;
        let err = crate::parse::testing::failure(|rec, _| parse_common(line, rec));
        let at = line.find("abc").expect("abc");
        assert_eq!(err, format!("expected the status code at byte {at}"));
        let err = crate::parse::testing::failure(|rec, _| {
            parse_common(
                r#"10.0.0.1 - - [99/Jan/2024:00:00:00 +0000] "GET /" 200 5"#,
                rec,
            )
        });
        assert_eq!(err, "invalid timestamp at byte 14");
        let err = crate::parse::testing::failure(|rec, _| parse_common("just some words", rec));
        assert!(err.starts_with("expected"), "{err}");
    }

    #[test]
    fn error_log_2_2_form() {
        let got =
            error("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6");
        assert_eq!(
            got,
            fields(&[
                ("timestamp", "2005-12-04T04:47:44Z".into()),
                ("severity", "error".into()),
                ("level", "error".into()),
                ("message", "mod_jk child workerEnv in error state 6".into()),
            ])
        );
        let got = error(
            "[Mon Dec 05 07:57:02 2005] [error] [client 202.133.98.6] Directory index forbidden by rule: /var/www/html/",
        );
        assert_eq!(got["client"], "202.133.98.6");
        assert!(got.get("port").is_none());
        assert_eq!(
            got["message"],
            "Directory index forbidden by rule: /var/www/html/"
        );
        let got = error("[Mon Dec 05 07:57:02 2005] [warn] [client ::1] odd");
        assert_eq!(got["client"], "::1");
        assert_eq!(got["level"], "warning");
    }

    #[test]
    fn error_log_2_4_form() {
        let got = error(
            "[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 2001:db8::7:51234] AH00128: File does not exist: /favicon.ico",
        );
        assert_eq!(
            got,
            fields(&[
                ("timestamp", "2000-10-11T14:32:52.123456Z".into()),
                ("module", "core".into()),
                ("severity", "error".into()),
                ("level", "error".into()),
                ("pid", 35708.into()),
                ("thread", "4328636416".into()),
                ("client", "2001:db8::7".into()),
                ("port", 51234.into()),
                (
                    "message",
                    "AH00128: File does not exist: /favicon.ico".into()
                ),
            ])
        );
    }

    #[test]
    fn vector_documented_error_example() {
        let got = error(
            "[01/Mar/2021:12:00:19 +0000] [ab:alert] [pid 4803:tid 3814] [client 147.159.108.175:24259] I will bypass the haptic COM bandwidth, that should matrix the CSS driver!",
        );
        assert_eq!(got["client"], "147.159.108.175");
        assert_eq!(got["module"], "ab");
        assert_eq!(got["pid"], 4803);
        assert_eq!(got["port"], 24259);
        assert_eq!(got["severity"], "alert");
        assert_eq!(got["thread"], "3814");
        assert_eq!(got["timestamp"], "2021-03-01T12:00:19Z");
    }

    #[test]
    fn error_log_uses_the_configured_zone() {
        let got = crate::parse::testing::render_in("America/New_York", |rec, time| {
            parse_error("[Sun Dec 04 04:47:44 2005] [notice] hello", time, rec)
        });
        assert_eq!(got["timestamp"], "2005-12-04T09:47:44Z");
    }
}
