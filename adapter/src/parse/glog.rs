//! Google glog: `LYYYYMMDD hh:mm:ss.uuuuuu threadid file:line] message`, as Vector's
//! `parse_glog`. Times carry no offset: the configured zone applies (UTC by default, which
//! is what Vector assumes).

use super::klog::parse_dated;
use super::syntax::Failure;
use super::timestamp::TimeContext;
use crate::record::Record;

/// The glog format.
pub fn parse(line: &str, time: &mut TimeContext, rec: &mut Record<'_>) -> Result<(), Failure> {
    parse_dated(line, time, rec, 8, "the date as YYYYMMDD")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::{failure, render};
    use serde_json::json;

    #[test]
    fn vector_documented_examples() {
        let line = "I20210131 14:48:54.411655 15520 main.c++:9] Hello world!";
        assert_eq!(
            render(|rec, time| parse(line, time, rec)),
            json!({
                "file": "main.c++", "id": 15520, "level": "info", "line": 9,
                "message": "Hello world!", "timestamp": "2021-01-31T14:48:54.411655Z"
            })
        );
        let padded = "\n  I20210131 14:48:54.411655    20 main.c++:9] Hello world!  \n";
        let got = render(|rec, time| parse(padded.trim_matches('\n'), time, rec));
        assert_eq!(got["id"], 20);
        assert_eq!(got["message"], "Hello world!");
    }

    #[test]
    fn failures_match_vectors_cases() {
        assert!(
            failure(|rec, time| parse("not a glog line", time, rec))
                .starts_with("expected a level letter")
        );
        assert_eq!(
            failure(|rec, time| parse(
                "I20210000 14:48:54.411655 15520 main.c++:9] Hello",
                time,
                rec
            )),
            "invalid timestamp at byte 1"
        );
        assert!(
            failure(|rec, time| parse(
                "I20210131 14:48:54.411655 99999999999999999999999999999 main.c++:9] x",
                time,
                rec
            ))
            .starts_with("expected the thread id")
        );
    }

    #[test]
    fn leap_day_and_zone() {
        let got = crate::parse::testing::render_in("+05:30", |rec, time| {
            parse("F20240229 01:00:00.000000 1 x.cc:2] boom", time, rec)
        });
        assert_eq!(got["timestamp"], "2024-02-28T19:30:00Z");
        assert_eq!(got["level"], "fatal");
    }
}
