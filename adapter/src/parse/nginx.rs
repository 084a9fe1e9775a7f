//! nginx: the access log in the stock `combined` format and the `main` format of the
//! official packages and Docker images, and the error log. Field names follow Vector's
//! `parse_nginx_log`, which differ from Apache's (`client`, `referer`).

use nom::Parser as _;
use nom::branch::alt;

use super::level;
use super::syntax::{
    Failure, PResult, bracketed, digits, end, expect, integer, lit, opt_spaces, present,
    quoted_then, spaces, unescape, word,
};
use super::timestamp::{TimeContext, num, parse_clf, parse_clock};
use crate::record::{Names, Record};

struct Access<'a> {
    client: &'a str,
    user: &'a str,
    timestamp: &'a str,
    request: &'a str,
    status: i64,
    /// `-` (which stock nginx never writes, but proxies and custom formats do) is absent.
    size: Option<i64>,
    referer: &'a str,
    agent: &'a str,
    /// The optional fourth quoted field: `compression` in combined, `http_x_forwarded_for`
    /// in main.
    extra: Option<&'a str>,
}

fn status_and_size(input: &str) -> PResult<'_, (i64, Option<i64>)> {
    let (input, _) = spaces(input)?;
    let (input, status) = expect("the status code", integer).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, size) = expect(
        "the body size",
        alt((integer.map(Some), lit("-").map(|_| None))),
    )
    .parse(input)?;
    let (input, _) = expect("a space after the body size", alt((end, spaces))).parse(input)?;
    Ok((input, (status, size)))
}

fn after_agent(input: &str) -> PResult<'_, Option<&str>> {
    if end(input).is_ok() {
        return Ok(("", None));
    }
    let (input, _) = opt_spaces(input)?;
    let (input, (extra, ())) = expect("the quoted last field", quoted_then(end)).parse(input)?;
    Ok((input, Some(extra)))
}

fn access_fields(input: &str) -> PResult<'_, Access<'_>> {
    let (input, _) = opt_spaces(input)?;
    let (input, client) = expect("the client address", word).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, _) = expect("`-`", lit("-")).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, user) = expect("the user", word).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, timestamp) = expect("`[` and the time", bracketed).parse(input)?;
    let (input, _) = spaces(input)?;
    let (input, (request, (status, size))) =
        expect("the quoted request", quoted_then(status_and_size)).parse(input)?;
    let agent_and_extra = |i| -> PResult<'_, (&str, Option<&str>)> {
        let (i, _) = spaces(i)?;
        let (i, (agent, extra)) =
            expect("the quoted user agent", quoted_then(after_agent)).parse(i)?;
        Ok((i, (agent, extra)))
    };
    let (input, (referer, (agent, extra))) =
        expect("the quoted referer", quoted_then(agent_and_extra)).parse(input)?;
    Ok((
        input,
        Access {
            client,
            user,
            timestamp,
            request,
            status,
            size,
            referer,
            agent,
            extra,
        },
    ))
}

fn parse_access(line: &str) -> Result<Access<'_>, Failure> {
    access_fields(line)
        .map(|(_, access)| access)
        .map_err(|e| Failure::from_nom(line, e))
}

/// nginx `combined` (plus the optional quoted `$gzip_ratio` Vector calls `compression`).
pub fn parse_combined(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let a = parse_access(line)?;
    let ts =
        parse_clf(a.timestamp).ok_or_else(|| Failure::invalid(line, a.timestamp, "timestamp"))?;
    rec.opt_str("client", present(a.client));
    rec.opt_str("user", present(a.user));
    rec.timestamp("timestamp", ts);
    rec.opt_str("request", present(&unescape(a.request)));
    rec.int("status", a.status);
    rec.opt_int("size", a.size);
    rec.opt_str("referer", present(&unescape(a.referer)));
    rec.opt_str("agent", present(&unescape(a.agent)));
    rec.opt_str("compression", a.extra.and_then(present));
    Ok(())
}

/// nginx `main`: combined plus the quoted `$http_x_forwarded_for`.
pub fn parse_main(line: &str, rec: &mut Record<'_>) -> Result<(), Failure> {
    let a = parse_access(line)?;
    let ts =
        parse_clf(a.timestamp).ok_or_else(|| Failure::invalid(line, a.timestamp, "timestamp"))?;
    rec.opt_str("remote_addr", present(a.client));
    rec.opt_str("remote_user", present(a.user));
    rec.timestamp("timestamp", ts);
    rec.opt_str("request", present(&unescape(a.request)));
    rec.int("status", a.status);
    rec.opt_int("body_bytes_size", a.size);
    rec.opt_str("http_referer", present(&unescape(a.referer)));
    rec.opt_str("http_user_agent", present(&unescape(a.agent)));
    rec.opt_str("http_x_forwarded_for", a.extra.and_then(present));
    Ok(())
}

/// `YYYY/MM/DD HH:MM:SS`, local time.
fn error_time<'a>(
    line: &'a str,
    input: &'a str,
    time: &mut TimeContext,
) -> Result<(&'a str, super::timestamp::Timestamp), Failure> {
    let b = input.as_bytes();
    let bad = || Failure::Expected {
        what: "the time as YYYY/MM/DD HH:MM:SS",
        at: super::syntax::offset(line, input),
    };
    if b.len() < 19 || b[4] != b'/' || b[7] != b'/' || b[10] != b' ' {
        return Err(bad());
    }
    let clock = parse_clock(&b[11..19]).ok_or_else(bad)?;
    let year = num(&b[0..4]).ok_or_else(bad)? as i32;
    let month = num(&b[5..7]).ok_or_else(bad)?;
    let day = num(&b[8..10]).ok_or_else(bad)?;
    let ts = time
        .resolve(Some(year), month, day, clock)
        .ok_or_else(|| Failure::invalid(line, input, "timestamp"))?;
    Ok((&input[19..], ts))
}

/// The context nginx appends to error messages, in the order it writes it.
const CONTEXT_KEYS: [&str; 6] = [
    "client", "server", "request", "upstream", "host", "referrer",
];
/// The same keys as they appear between two context values.
const CONTEXT_PROBES: [&str; 6] = [
    ", client: ",
    ", server: ",
    ", request: ",
    ", upstream: ",
    ", host: ",
    ", referrer: ",
];

/// nginx error log: `2021/04/01 13:02:31 [error] 31#31: *1 message, client: …, server: …`.
pub fn parse_error(
    line: &str,
    time: &mut TimeContext,
    rec: &mut Record<'_>,
) -> Result<(), Failure> {
    let start = line.trim_start();
    let (input, ts) = error_time(line, start, time)?;
    let head = |input| -> PResult<'_, _> {
        let (input, _) = spaces(input)?;
        let (input, severity) = expect("`[` and the level", bracketed).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, pid) = expect("the process id", integer).parse(input)?;
        let (input, _) = expect("`#`", lit("#")).parse(input)?;
        let (input, tid) = expect("the thread id", integer).parse(input)?;
        let (input, _) = expect("`:`", lit(":")).parse(input)?;
        let (input, _) = opt_spaces(input)?;
        let (input, cid) = match input.strip_prefix('*') {
            Some(after) => {
                let (after, cid) = expect("the connection id", digits).parse(after)?;
                let (after, _) = opt_spaces(after)?;
                (after, super::syntax::parse_int(cid))
            }
            None => (input, None),
        };
        Ok((input, (severity, pid, tid, cid)))
    };
    let (body, (severity, pid, tid, cid)) = head(input).map_err(|e| Failure::from_nom(line, e))?;
    let body = body.trim_end();

    // The context starts at the first `, client: `, or `, server: ` for errors outside a
    // connection; the message itself may contain commas.
    let context_at = body
        .find(", client: ")
        .or_else(|| body.find(", server: "))
        .unwrap_or(body.len());
    let (mut message, context) = body.split_at(context_at);
    let mut excess = None;
    if let Some(at) = message.find(", excess: ") {
        let tail = &message[at + ", excess: ".len()..];
        if let Some((value, zone_part)) = tail.split_once(" by zone ") {
            let value = value.trim_end_matches(',');
            if let Ok(value) = value.parse::<f64>() {
                let zone = zone_part.trim().trim_matches('"');
                excess = Some((value, zone));
                message = &message[..at];
            }
        }
    }

    rec.timestamp("timestamp", ts);
    rec.str("severity", severity);
    rec.opt_str("level", level::normalise(severity));
    rec.int("pid", pid);
    rec.int("tid", tid);
    rec.opt_int("cid", cid);
    rec.opt_str("message", present(message));
    if let Some((value, zone)) = excess {
        rec.float("excess", value);
        rec.str("zone", zone);
    }
    write_context(context, rec);
    Ok(())
}

/// `, client: 1.2.3.4, server: x, request: "GET / HTTP/1.1", host: "h"`.
fn write_context(mut context: &str, rec: &mut Record<'_>) {
    // nginx writes each key once; a line that repeats one keeps every value (see `Names`).
    let mut names = Names::default();
    while let Some(after_comma) = context.strip_prefix(", ") {
        let Some((key, value_and_rest)) = after_comma.split_once(": ") else {
            return;
        };
        if !CONTEXT_KEYS.contains(&key) && key != "referer" {
            return;
        }
        let name = if key == "referrer" { "referer" } else { key };
        if let Some(body) = value_and_rest.strip_prefix('"') {
            // The closing quote is the one followed by the next context key or the end.
            let close = memchr::memchr_iter(b'"', body.as_bytes()).find(|&at| {
                let after = &body[at + 1..];
                after.is_empty() || CONTEXT_PROBES.iter().any(|probe| after.starts_with(probe))
            });
            match close {
                Some(at) => {
                    rec.str(&names.claim(name), &unescape(&body[..at]));
                    context = &body[at + 1..];
                }
                None => {
                    rec.str(&names.claim(name), value_and_rest);
                    return;
                }
            }
        } else {
            let end = CONTEXT_PROBES
                .iter()
                .filter_map(|probe| value_and_rest.find(probe))
                .min()
                .unwrap_or(value_and_rest.len());
            rec.str(&names.claim(name), &value_and_rest[..end]);
            context = &value_and_rest[end..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, fields, render};

    #[test]
    fn vector_documented_combined_example() {
        let line = r#"172.17.0.1 - alice [01/Apr/2021:12:02:31 +0000] "POST /not-found HTTP/1.1" 404 153 "http://localhost/somewhere" "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/72.0.3626.119 Safari/537.36" "2.75""#;
        assert_eq!(
            render(|rec, _| parse_combined(line, rec)),
            fields(&[
                ("agent", "Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/72.0.3626.119 Safari/537.36".into()),
                ("client", "172.17.0.1".into()),
                ("compression", "2.75".into()),
                ("referer", "http://localhost/somewhere".into()),
                ("request", "POST /not-found HTTP/1.1".into()),
                ("size", 153.into()),
                ("status", 404.into()),
                ("timestamp", "2021-04-01T12:02:31Z".into()),
                ("user", "alice".into()),
            ])
        );
    }

    #[test]
    fn combined_awkward_cases() {
        // `-` referer is absent (Vector keeps the dash), IPv6 client, empty request.
        let line = r#"::1 - - [31/Dec/2023:23:59:59 -0100] "" 400 0 "-" "curl/8.0""#;
        assert_eq!(
            render(|rec, _| parse_combined(line, rec)),
            fields(&[
                ("client", "::1".into()),
                ("timestamp", "2024-01-01T00:59:59Z".into()),
                ("status", 400.into()),
                ("size", 0.into()),
                ("agent", "curl/8.0".into()),
            ])
        );
        let line =
            r#"1.2.3.4 - - [01/Apr/2021:12:02:31 +0000] "GET /a\x22b HTTP/1.1" 200 1 "-" "x""#;
        let got = render(|rec, _| parse_combined(line, rec));
        assert_eq!(got["request"], r"GET /a\x22b HTTP/1.1");
        // A `-` size is absent; a missing size is an error.
        let line = r#"1.2.3.4 - - [01/Apr/2021:12:02:31 +0000] "GET / HTTP/1.1" 200 - "-" "x""#;
        let got = render(|rec, _| parse_combined(line, rec));
        assert_eq!(got["status"], 200);
        assert!(got.get("size").is_none());
        let line = r#"1.2.3.4 - - [01/Apr/2021:12:02:31 +0000] "GET / HTTP/1.1" 200 "-" "x""#;
        let err = failure(|rec, _| parse_combined(line, rec));
        assert_eq!(
            err,
            format!(
                "expected the body size at byte {}",
                line.find("\"-\"").expect("dash")
            )
        );
    }

    #[test]
    fn vector_documented_main_example() {
        let line = r#"172.24.0.3 - alice [31/Dec/2024:17:32:06 +0000] "GET / HTTP/1.1" 200 615 "https://domain.tld/path" "curl/8.11.1" "1.2.3.4, 10.10.1.1""#;
        assert_eq!(
            render(|rec, _| parse_main(line, rec)),
            fields(&[
                ("body_bytes_size", 615.into()),
                ("http_referer", "https://domain.tld/path".into()),
                ("http_user_agent", "curl/8.11.1".into()),
                ("http_x_forwarded_for", "1.2.3.4, 10.10.1.1".into()),
                ("remote_addr", "172.24.0.3".into()),
                ("remote_user", "alice".into()),
                ("request", "GET / HTTP/1.1".into()),
                ("status", 200.into()),
                ("timestamp", "2024-12-31T17:32:06Z".into()),
            ])
        );
    }

    #[test]
    fn vector_documented_error_example() {
        let line = r#"2021/04/01 13:02:31 [error] 31#31: *1 open() "/usr/share/nginx/html/not-found" failed (2: No such file or directory), client: 172.17.0.1, server: localhost, request: "POST /not-found HTTP/1.1", host: "localhost:8081""#;
        assert_eq!(
            render(|rec, time| parse_error(line, time, rec)),
            fields(&[
                ("cid", 1.into()),
                ("client", "172.17.0.1".into()),
                ("host", "localhost:8081".into()),
                ("message", r#"open() "/usr/share/nginx/html/not-found" failed (2: No such file or directory)"#.into()),
                ("pid", 31.into()),
                ("request", "POST /not-found HTTP/1.1".into()),
                ("server", "localhost".into()),
                ("severity", "error".into()),
                ("level", "error".into()),
                ("tid", 31.into()),
                ("timestamp", "2021-04-01T13:02:31Z".into()),
            ])
        );
    }

    #[test]
    fn error_log_rate_limit_upstream_and_no_connection() {
        let line = r#"2022/05/03 10:00:00 [error] 7#7: *9 limiting requests, excess: 0.520 by zone "one", client: 10.0.0.2, server: api, request: "GET /x HTTP/1.1", upstream: "http://127.0.0.1:9000/x", host: "api", referrer: "http://r/""#;
        let got = render(|rec, time| parse_error(line, time, rec));
        assert_eq!(got["message"], "limiting requests");
        assert_eq!(got["excess"], 0.52);
        assert_eq!(got["zone"], "one");
        assert_eq!(got["upstream"], "http://127.0.0.1:9000/x");
        assert_eq!(got["referer"], "http://r/");
        let line = "2022/05/03 10:00:00 [notice] 1#1: signal process started";
        let got = render_in_paris(line);
        assert_eq!(got["timestamp"], "2022-05-03T08:00:00Z");
        assert_eq!(got["level"], "notice");
        assert!(got.get("cid").is_none());
        assert_eq!(got["message"], "signal process started");
        let line = "2022/05/03 10:00:00 [warn] 1#1: *3 an upstream response is buffered, client: [2001:db8::2], server: x";
        let got = render(|rec, time| parse_error(line, time, rec));
        assert_eq!(got["client"], "[2001:db8::2]");
        assert_eq!(got["level"], "warning");
    }

    fn render_in_paris(line: &str) -> serde_json::Value {
        crate::parse::testing::render_in("Europe/Paris", |rec, time| parse_error(line, time, rec))
    }
}
