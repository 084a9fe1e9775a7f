//! Java-style logs from log4j, logback and their imitators:
//! `2024-01-15 10:23:45,123 INFO  [main] com.example.App - Started`, also with the thread
//! before the level (`… [main] INFO com.example.App - …`), a ` - ` after the time, and
//! without a logger (ZooKeeper's `%d - %-5p [%t:%C{1}@%L] - %m`). Threads may hold
//! brackets (`[QuorumPeer[myid=1]/0.0.0.0:2181]`).

use super::level;
use super::syntax::{Failure, nested_bracketed, offset, word};
use super::timestamp::{TimeContext, parse_iso8601};
use crate::record::Record;

struct Fields<'a> {
    level: &'a str,
    thread: Option<&'a str>,
    logger: Option<&'a str>,
    message: &'a str,
}

fn skip_spaces(input: &str) -> &str {
    input.trim_start_matches([' ', '\t'])
}

/// A word that names a level.
fn level_word(input: &str) -> Option<(&str, &str)> {
    let (rest, word) = word(input).ok()?;
    level::normalise(word).map(|_| (word, rest))
}

/// `[thread]` then optionally `LEVEL`, or `LEVEL` then optionally `[thread]`, then an
/// optional logger and ` - `, then the message.
fn after_time(input: &str) -> Option<Fields<'_>> {
    let mut rest = skip_spaces(input);
    if let Some(after) = rest.strip_prefix("- ") {
        rest = skip_spaces(after);
    }
    let (level, thread, after) = if rest.starts_with('[') {
        let (after, thread) = nested_bracketed(rest).ok()?;
        let (level, after) = level_word(skip_spaces(after))?;
        (level, Some(thread), after)
    } else {
        let (level, after) = level_word(rest)?;
        let after = skip_spaces(after);
        if after.starts_with('[') {
            let (after, thread) = nested_bracketed(after).ok()?;
            (level, Some(thread), after)
        } else {
            (level, None, after)
        }
    };
    let rest = skip_spaces(after);
    let (logger, message) = if let Some(message) = rest
        .strip_prefix("- ")
        .or(rest.strip_prefix('-').filter(|m| m.is_empty()))
    {
        (None, message)
    } else {
        let (after_logger, logger) = word(rest).ok()?;
        let after_logger = skip_spaces(after_logger);
        match after_logger.strip_prefix("- ") {
            Some(message) => (Some(logger.trim_end_matches(':')), message),
            None if after_logger == "-" => (Some(logger), ""),
            // No ` - ` separator: `LEVEL logger: message` without a dash, or just a message.
            None => match logger.strip_suffix(':') {
                Some(logger) => (Some(logger), after_logger),
                None => (None, rest),
            },
        }
    };
    Some(Fields {
        level,
        thread,
        logger,
        message,
    })
}

/// The `log4j` format.
pub fn parse(line: &str, time: &mut TimeContext, rec: &mut Record<'_>) -> Result<(), Failure> {
    let start = line.trim_start();
    // The time is the first word, or the first two when the date and time are apart.
    let first_end = start.find(' ').unwrap_or(start.len());
    let after_first = &start[first_end..];
    let second_start = first_end + (after_first.len() - after_first.trim_start_matches(' ').len());
    let second_end = start[second_start..]
        .find(' ')
        .map_or(start.len(), |n| second_start + n);
    let (ts, rest) = match parse_iso8601(&start[..second_end], time) {
        Some(ts) => (ts, &start[second_end..]),
        None => match parse_iso8601(&start[..first_end], time) {
            Some(ts) => (ts, &start[first_end..]),
            None => {
                return Err(Failure::Expected {
                    what: "a date and time such as 2024-01-15 10:23:45,123",
                    at: offset(line, start),
                });
            }
        },
    };
    let fields = after_time(rest).ok_or(Failure::Expected {
        what: "a level and `[thread]`",
        at: offset(line, rest),
    })?;
    rec.timestamp("timestamp", ts);
    rec.opt_str("level", level::normalise(fields.level));
    rec.str("level_original", fields.level);
    rec.opt_str("thread", fields.thread);
    rec.opt_str("logger", fields.logger);
    rec.str("message", fields.message.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render, render_in};
    use serde_json::json;

    fn log4j(line: &str) -> serde_json::Value {
        render(|rec, time| parse(line, time, rec))
    }

    #[test]
    fn log4j_and_logback_layouts() {
        assert_eq!(
            log4j("2024-01-15 10:23:45,123 INFO  [main] com.example.App - Started in 1.2s"),
            json!({
                "timestamp": "2024-01-15T10:23:45.123Z", "level": "info", "level_original": "INFO",
                "thread": "main", "logger": "com.example.App", "message": "Started in 1.2s"
            })
        );
        let got =
            log4j("2024-01-15 10:23:45.123 [http-nio-8080-exec-1] WARN  o.a.c.Foo - slow: 3 s");
        assert_eq!(got["thread"], "http-nio-8080-exec-1");
        assert_eq!(got["level"], "warning");
        assert_eq!(got["logger"], "o.a.c.Foo");
        assert_eq!(got["message"], "slow: 3 s");
        let got = log4j("2024-01-15T10:23:45.123+01:00 ERROR [main] App - failed - retrying");
        assert_eq!(got["timestamp"], "2024-01-15T09:23:45.123Z");
        assert_eq!(got["message"], "failed - retrying");
    }

    #[test]
    fn zookeeper_layout() {
        let got = log4j(
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
        );
        assert_eq!(
            got,
            json!({
                "timestamp": "2015-07-29T17:41:44.747Z", "level": "info", "level_original": "INFO",
                "thread": "QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774",
                "message": "Notification time out: 3200"
            })
        );
        let got = render_in("Asia/Shanghai", |rec, time| {
            parse(
                "2015-07-29 19:04:29,071 - WARN  [SendWorker:188978561024:QuorumCnxManager$SendWorker@688] - Send worker leaving thread",
                time,
                rec,
            )
        });
        assert_eq!(got["timestamp"], "2015-07-29T11:04:29.071Z");
        assert_eq!(got["level"], "warning");
    }

    #[test]
    fn failures() {
        assert!(
            failure(|rec, time| parse("hello world", time, rec))
                .starts_with("expected a date and time")
        );
        assert_eq!(
            failure(|rec, time| parse("2024-01-15 10:23:45,123 something else", time, rec)),
            "expected a level and `[thread]` at byte 23"
        );
    }
}
