//! Android logcat in its `threadtime` layout (the default of `adb logcat`):
//! `MM-DD HH:MM:SS.mmm  PID  TID L TAG: message`, also with the year (`-v year`).

use nom::Parser as _;

use super::level;
use super::syntax::{Failure, PResult, Syntax, expect, integer, offset, spaces, word};
use super::timestamp::{TimeContext, num, parse_clock};
use crate::record::Record;

fn priority(input: &str) -> PResult<'_, &str> {
    let (rest, letter) = word(input)?;
    if letter.len() == 1 && b"VDIWEFAS".contains(&letter.as_bytes()[0]) {
        Ok((rest, letter))
    } else {
        Err(nom::Err::Error(Syntax {
            rest: input,
            expected: "a priority letter (V, D, I, W, E, F, A)",
        }))
    }
}

/// The `logcat` format.
pub fn parse(line: &str, time: &mut TimeContext, rec: &mut Record<'_>) -> Result<(), Failure> {
    let fields = |input| -> PResult<'_, _> {
        let (input, date) = expect("the date as MM-DD", word).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, clock) = expect("the time", word).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, pid) = expect("the process id", integer).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, tid) = expect("the thread id", integer).parse(input)?;
        let (input, _) = spaces(input)?;
        let (input, priority) = expect("a priority letter", priority).parse(input)?;
        let (input, _) = spaces(input)?;
        Ok((input, (date, clock, pid, tid, priority)))
    };
    let start = line.trim_start();
    let (rest, (date, clock, pid, tid, priority)) =
        fields(start).map_err(|e| Failure::from_nom(line, e))?;
    let d = date.as_bytes();
    let bad_date = || Failure::Expected {
        what: "the date as MM-DD",
        at: offset(line, date),
    };
    let (year, month, day) = match d.len() {
        5 if d[2] == b'-' => (
            None,
            num(&d[..2]).ok_or_else(bad_date)?,
            num(&d[3..]).ok_or_else(bad_date)?,
        ),
        10 if d[4] == b'-' && d[7] == b'-' => (
            Some(num(&d[..4]).ok_or_else(bad_date)? as i32),
            num(&d[5..7]).ok_or_else(bad_date)?,
            num(&d[8..]).ok_or_else(bad_date)?,
        ),
        _ => return Err(bad_date()),
    };
    let clock = parse_clock(clock.as_bytes()).ok_or(Failure::Expected {
        what: "the time as HH:MM:SS.mmm",
        at: offset(line, clock),
    })?;
    let ts = time
        .resolve(year, month, day, clock)
        .ok_or_else(|| Failure::invalid(line, date, "timestamp"))?;
    // The tag ends at the first `: `; logcat pads short tags with spaces before it.
    let (tag, message) = match rest.find(": ") {
        Some(colon) => (rest[..colon].trim_end(), &rest[colon + 2..]),
        None => match rest.strip_suffix(':') {
            Some(tag) => (tag.trim_end(), ""),
            None => {
                return Err(Failure::Expected {
                    what: "`TAG: ` before the message",
                    at: offset(line, rest),
                });
            }
        },
    };
    rec.timestamp("timestamp", ts);
    rec.int("pid", pid);
    rec.int("tid", tid);
    rec.opt_str("level", level::normalise(priority));
    rec.str("level_original", priority);
    rec.str("tag", tag);
    rec.str("message", message.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    #[test]
    fn threadtime_lines() {
        let line = "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogsopening app wtoken";
        assert_eq!(
            render(|rec, time| parse(line, time, rec)),
            json!({
                "timestamp": "2024-03-17T16:13:38.811Z", "pid": 1702, "tid": 2395,
                "level": "debug", "level_original": "D", "tag": "WindowManager",
                "message": "printFreezingDisplayLogsopening app wtoken"
            })
        );
        let got = render(|rec, time| {
            parse(
                "2023-12-31 23:59:59.999 1 2 V Tag with spaces : x: y",
                time,
                rec,
            )
        });
        assert_eq!(got["timestamp"], "2023-12-31T23:59:59.999Z");
        assert_eq!(got["tag"], "Tag with spaces");
        assert_eq!(got["message"], "x: y");
        assert_eq!(got["level"], "trace");
        let got = render(|rec, time| parse("02-29 00:00:00.000 1 2 A DEBUG:", time, rec));
        assert_eq!(got["timestamp"], "2024-02-29T00:00:00Z");
        assert_eq!(got["level"], "fatal");
        assert_eq!(got["message"], "");
    }

    #[test]
    fn failures() {
        assert_eq!(
            failure(|rec, time| parse("03-17 16:13:38.811 x 2 D T: m", time, rec)),
            "expected the process id at byte 19"
        );
        assert_eq!(
            failure(|rec, time| parse("03-17 16:13:38.811 1 2 Q T: m", time, rec)),
            "expected a priority letter at byte 23"
        );
    }
}
