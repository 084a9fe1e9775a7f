//! The `adapter parse` command as a user runs it: stdin in, JSON lines out, exit codes.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

/// Kills the child if a test fails before it was waited for.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn adapter(args: &[&str], stdin: &[u8]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_adapter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start adapter");
    let mut running = Running(Some(child));
    let child = running.0.as_mut().expect("child");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    running
        .0
        .take()
        .expect("child")
        .wait_with_output()
        .expect("wait for adapter")
}

fn records(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

#[test]
fn parses_stdin_to_json_lines_until_eof() {
    let input = b"<13>1 2020-03-13T20:45:38.119Z h app 7 - - hello\nnot syslog\n\xff\xfe broken\nDec 31 23:59:59 host cron[1]: last line without newline";
    let output = adapter(
        &["parse", "--format", "syslog", "--timezone", "+01:00"],
        input,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records = records(&output);
    assert_eq!(records.len(), 4);
    assert_eq!(records[0]["appname"], "app");
    assert_eq!(records[0]["timestamp"], "2020-03-13T20:45:38.119Z");
    assert_eq!(records[1]["message"], "not syslog");
    assert!(
        records[1]["parse_error"]
            .as_str()
            .is_some_and(|r| r.starts_with("syslog: expected"))
    );
    assert_eq!(records[2]["invalid_utf8"], true);
    assert_eq!(records[3]["appname"], "cron");
    assert!(
        records[3]["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with("-12-31T22:59:59Z"))
    );
}

#[test]
fn caps_long_lines() {
    let output = adapter(
        &["parse", "--format", "logfmt", "--max-line-bytes", "10"],
        b"a=0123456789abcdef\n",
    );
    assert!(output.status.success());
    let records = records(&output);
    assert_eq!(records[0]["a"], "01234567");
    assert_eq!(records[0]["truncated"], true);
}

#[test]
fn grok_pattern_with_the_shipped_library() {
    let output = adapter(
        &[
            "parse",
            "--format",
            "grok",
            "--pattern",
            "%{IP:client} %{NUMBER:bytes:int}",
        ],
        b"10.0.0.1 512\n",
    );
    assert!(output.status.success());
    assert_eq!(
        records(&output)[0],
        serde_json::json!({"client": "10.0.0.1", "bytes": 512})
    );
}

#[test]
fn bad_configuration_exits_64_and_says_why() {
    let output = adapter(
        &[
            "parse",
            "--format",
            "grok",
            "--pattern",
            "%{IP:client} %{NOPE}",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "bad grok pattern `%{IP:client} %{NOPE}` at position 13: unknown pattern `NOPE`"
        ),
        "{stderr}"
    );
    let output = adapter(&["parse", "--format", "grok"], b"");
    assert_eq!(output.status.code(), Some(64));
    let output = adapter(&["parse", "--timezone", "Mars/Olympus"], b"");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown time zone"));
}
