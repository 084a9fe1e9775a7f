//! Kubernetes klog: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] message`, as Vector's
//! `parse_klog`. The line has no year; it is inferred per stream (see `timestamp`).

use nom::Parser as _;

use super::syntax::{Failure, PResult, Syntax, digits, expect, integer, opt_spaces, spaces};
use super::timestamp::{TimeContext, num, parse_clock};
use crate::record::Record;

/// `I`, `W`, `E`, `F` → the level names Vector uses.
pub(crate) fn level_name(letter: u8) -> Option<&'static str> {
    Some(match letter {
        b'I' => "info",
        b'W' => "warning",
        b'E' => "error",
        b'F' => "fatal",
        _ => return None,
    })
}

pub(crate) fn level_letter(input: &str) -> PResult<'_, &'static str> {
    match input.as_bytes().first().copied().and_then(level_name) {
        Some(name) => Ok((&input[1..], name)),
        None => Err(nom::Err::Error(Syntax {
            rest: input,
            expected: "a level letter (I, W, E or F)",
        })),
    }
}

/// What follows the time in both klog and glog: `threadid file:line] message`.
pub(crate) struct Tail<'a> {
    pub id: i64,
    pub file: &'a str,
    pub line: i64,
    pub message: &'a str,
}

pub(crate) fn tail(input: &str) -> PResult<'_, Tail<'_>> {
    let (input, _) = spaces(input)?;
    let (input, id) = expect("the thread id", integer).parse(input)?;
    let (input, _) = spaces(input)?;
    let close = input
        .find("] ")
        .or_else(|| input.strip_suffix(']').map(str::len));
    let Some(close) = close else {
        return Err(nom::Err::Error(Syntax {
            rest: input,
            expected: "`file:line]`",
        }));
    };
    let location = &input[..close];
    let Some((file, line)) = location.rsplit_once(':') else {
        return Err(nom::Err::Error(Syntax {
            rest: input,
            expected: "`file:line]`",
        }));
    };
    let (_, line_number) = expect("the line number", integer).parse(line)?;
    if file.is_empty() || line.len() != line.trim().len() {
        return Err(nom::Err::Error(Syntax {
            rest: input,
            expected: "`file:line]`",
        }));
    }
    let message = input[close + 1..].strip_prefix(' ').unwrap_or("");
    Ok((
        "",
        Tail {
            id,
            file,
            line: line_number,
            message,
        },
    ))
}

pub(crate) fn write_tail(rec: &mut Record<'_>, tail: &Tail<'_>) {
    rec.int("id", tail.id);
    rec.str("file", tail.file);
    rec.int("line", tail.line);
    rec.str("message", tail.message.trim_end());
}

/// klog and glog differ only in their date: `mmdd` (year inferred) or `YYYYMMDD`.
pub(crate) fn parse_dated(
    line: &str,
    time: &mut TimeContext,
    rec: &mut Record<'_>,
    date_len: usize,
    date_what: &'static str,
) -> Result<(), Failure> {
    let head = |input| -> PResult<'_, _> {
        let (input, _) = opt_spaces(input)?;
        let (input, level) = level_letter(input)?;
        let (input, date) = expect(date_what, digits).parse(input)?;
        if date.len() != date_len {
            return Err(nom::Err::Error(Syntax {
                rest: date,
                expected: date_what,
            }));
        }
        let (input, _) = spaces(input)?;
        let clock_len = input.find(' ').unwrap_or(input.len());
        let (input, clock) = (&input[clock_len..], &input[..clock_len]);
        let (input, tail) = tail(input)?;
        Ok((input, (level, date, clock, tail)))
    };
    let (_, (level, date, clock, tail)) = head(line).map_err(|e| Failure::from_nom(line, e))?;
    let clock = parse_clock(clock.as_bytes()).ok_or(Failure::Expected {
        what: "the time as hh:mm:ss.uuuuuu",
        at: super::syntax::offset(line, clock),
    })?;
    let d = date.as_bytes();
    let (year, month_day) = match d.len() {
        8 => (num(&d[..4]).map(|y| y as i32), &d[4..]),
        _ => (None, d),
    };
    let ts = time
        .resolve(
            year,
            num(&month_day[..2]).unwrap_or(0),
            num(&month_day[2..]).unwrap_or(0),
            clock,
        )
        .ok_or_else(|| Failure::invalid(line, date, "timestamp"))?;
    rec.str("level", level);
    rec.timestamp("timestamp", ts);
    write_tail(rec, &tail);
    Ok(())
}

/// The klog format.
pub fn parse(line: &str, time: &mut TimeContext, rec: &mut Record<'_>) -> Result<(), Failure> {
    parse_dated(line, time, rec, 4, "the date as mmdd")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    #[test]
    fn vector_documented_example() {
        let line = "I0505 17:59:40.692994   28133 klog.go:70] hello from klog";
        assert_eq!(
            render(|rec, time| parse(line, time, rec)),
            json!({
                "file": "klog.go", "id": 28133, "level": "info", "line": 70,
                "message": "hello from klog", "timestamp": "2024-05-05T17:59:40.692994Z"
            })
        );
    }

    #[test]
    fn awkward_cases() {
        let line = "E1231 23:59:59.000001 7 controller.go:12] sync failed: [a] b";
        let got = render(|rec, time| parse(line, time, rec));
        // 31 December is after the pinned "today" of 15 June 2024: last year.
        assert_eq!(got["timestamp"], "2023-12-31T23:59:59.000001Z");
        assert_eq!(got["level"], "error");
        assert_eq!(got["message"], "sync failed: [a] b");
        let got = render(|rec, time| parse("W0101 00:00:00.000000 1 f.go:1]", time, rec));
        assert_eq!(got["message"], "");
        assert_eq!(
            failure(|rec, time| parse("X0505 17:59:40.692994 1 a.go:1] x", time, rec)),
            "expected a level letter (I, W, E or F) at byte 0"
        );
        assert_eq!(
            failure(|rec, time| parse("I1332 17:59:40.692994 1 a.go:1] x", time, rec)),
            "invalid timestamp at byte 1"
        );
    }

    #[test]
    fn a_stream_crosses_new_year_and_a_leap_day_in_its_zone() {
        use crate::parse::testing::TODAY;
        use crate::parse::timestamp::{TimeContext, YearResolver};
        use crate::record::Record;

        let mut time = TimeContext::new(
            "Europe/Berlin".parse().expect("zone"),
            YearResolver::new(TODAY),
        );
        let lines = [
            (
                "I1231 23:59:59.500000 1 a.go:1] old year",
                "2023-12-31T22:59:59.500Z",
            ),
            (
                "I0101 00:00:01.000000 1 a.go:1] new year",
                "2023-12-31T23:00:01Z",
            ),
            (
                "I0229 12:00:00.000000 1 a.go:1] leap day",
                "2024-02-29T11:00:00Z",
            ),
            (
                "I0701 12:00:00.000000 1 a.go:1] summer time",
                "2024-07-01T10:00:00Z",
            ),
        ];
        for (line, expected) in lines {
            let mut out = Vec::new();
            let mut rec = Record::begin(&mut out);
            parse(line, &mut time, &mut rec).expect("parses");
            rec.finish();
            let got: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
            assert_eq!(got["timestamp"], expected, "{line}");
        }
    }
}
