//! The real logs of the loghub collection (a copy in `tests/data/loghub/`, with loghub's
//! LICENSE beside them as it requires) must come out structured: at least 99% of the lines of every
//! file by a built-in format or a pattern this crate ships. Each file also has loghub's
//! own hand-checked split (`*_structured.csv`); our fields must agree with it, so a parser
//! that merely accepts lines without splitting them right fails here too.
//!
//! Every line goes through the real `adapter parse` binary, once with the file's format
//! and once with the default `auto` (no options), exactly as a user runs it.
//!
//! The per-file table is committed as `LOGHUB_RATES.md`; this test fails when the table
//! no longer matches what the parsers do. Regenerate it with
//! `UPDATE_LOGHUB_RATES=1 cargo test -p adapter --test loghub`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use std::io::Write as _;
use std::process::{Command, Stdio};

use adapter::parse::Format;

/// A loghub file, how to parse it, and which of our fields must equal which CSV column.
struct Case {
    file: &'static str,
    format: Format,
    pattern: Option<&'static str>,
    /// (our field, loghub's column)
    checks: &'static [(&'static str, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        file: "Android_2k.log",
        format: Format::Logcat,
        pattern: None,
        checks: &[
            ("pid", "Pid"),
            ("tid", "Tid"),
            ("level_original", "Level"),
            ("tag", "Component"),
            ("message", "Content"),
        ],
    },
    Case {
        file: "Apache_2k.log",
        format: Format::ApacheError,
        pattern: None,
        checks: &[("severity", "Level"), (CLIENT_AND_MESSAGE, "Content")],
    },
    Case {
        file: "HDFS_2k.log",
        format: Format::Grok,
        pattern: Some("%{HDFS}"),
        checks: &[
            ("pid", "Pid"),
            ("level_original", "Level"),
            ("component", "Component"),
            ("message", "Content"),
        ],
    },
    Case {
        file: "Linux_2k.log",
        format: Format::Syslog,
        pattern: None,
        checks: &[
            ("hostname", "Level"),
            ("appname", "Component"),
            ("procid", "PID"),
            ("message", "Content"),
        ],
    },
    Case {
        file: "Mac_2k.log",
        format: Format::Syslog,
        pattern: None,
        checks: &[
            ("hostname", "User"),
            ("appname", "Component"),
            ("procid", "PID"),
            ("message", "Content"),
        ],
    },
    Case {
        file: "OpenSSH_2k.log",
        format: Format::LinuxAuthorization,
        pattern: None,
        checks: &[
            ("hostname", "Component"),
            ("appname", "Component_app"),
            ("procid", "Pid"),
            ("message", "Content"),
        ],
    },
    Case {
        file: "Thunderbird_2k.log",
        format: Format::Grok,
        pattern: Some("%{THUNDERBIRD}"),
        checks: &[
            ("alert", "Label"),
            ("node", "User"),
            ("location", "Location"),
            ("appname", "Component"),
            ("procid", "PID"),
            ("message", "Content"),
        ],
    },
    Case {
        file: "Zookeeper_2k.log",
        format: Format::Log4j,
        pattern: None,
        checks: &[("level_original", "Level"), ("message", "Content")],
    },
];

/// loghub leaves Apache's `[client …]` in the content; we split it into `client`.
const CLIENT_AND_MESSAGE: &str = "[client] message";

/// Runs `adapter parse ARGS` with `input` on stdin and returns its stdout records.
fn adapter_parse(args: &[&str], input: &[u8]) -> Vec<serde_json::Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adapter"))
        .arg("parse")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start adapter");
    let mut stdin = child.stdin.take().expect("stdin");
    // Feed stdin from a thread: the output is larger than a pipe holds.
    let output = std::thread::scope(|scope| {
        scope.spawn(move || stdin.write_all(input).expect("write stdin"));
        child.wait_with_output().expect("wait for adapter")
    });
    assert!(
        output.status.success(),
        "adapter parse {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("every record is JSON"))
        .collect()
}

fn loghub_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/loghub");
    assert!(
        dir.join("LICENSE").is_file(),
        "the loghub logs are missing: expected them in {}",
        dir.display()
    );
    dir
}

/// One RFC 4180 record (loghub's CSVs have no newlines inside fields).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '"') if field.is_empty() => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (_, c) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// A record's field as loghub would write it: numbers as digits, absent as empty.
fn as_text(value: Option<&serde_json::Value>) -> String {
    match value {
        None => String::new(),
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(other) => other.to_string(),
    }
}

fn expected_text(column: &str, row: &[String], header: &[String]) -> String {
    // OpenSSH's CSV names the host `Component` and has no column for the program, which is
    // sshd on every line.
    if column == "Component_app" {
        return "sshd".into();
    }
    let index = header
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    let value = row[index].trim();
    if value == "-" {
        String::new()
    } else {
        value.to_owned()
    }
}

struct Rate {
    file: &'static str,
    format: String,
    lines: usize,
    structured: usize,
    auto_structured: usize,
    checked: usize,
    agreeing: usize,
}

fn measure(case: &Case, dir: &Path) -> Rate {
    let text = std::fs::read(dir.join(case.file)).expect("read log");
    let csv = std::fs::read_to_string(dir.join(format!("{}_structured.csv", case.file)))
        .expect("read csv");
    let mut csv_lines = csv.lines();
    let header = csv_fields(csv_lines.next().expect("csv header"));
    let rows: Vec<Vec<String>> = csv_lines.map(csv_fields).collect();

    let mut args = vec!["--format", case.format.name()];
    if let Some(pattern) = case.pattern {
        args.extend(["--pattern", pattern]);
    }
    let records = adapter_parse(&args, &text);
    let auto = adapter_parse(&[], &text);
    let mut rate = Rate {
        file: case.file,
        format: match case.pattern {
            Some(pattern) => format!("`grok` `{pattern}`"),
            None => format!("`{}`", case.format),
        },
        lines: 0,
        structured: 0,
        auto_structured: auto
            .iter()
            .filter(|record| record.get("parse_error").is_none())
            .count(),
        checked: 0,
        agreeing: 0,
    };
    let lines: Vec<&[u8]> = text
        .strip_suffix(b"\n")
        .unwrap_or(&text)
        .split(|b| *b == b'\n')
        .collect();
    assert_eq!(
        lines.len(),
        rows.len(),
        "{}: log and CSV disagree on the line count",
        case.file
    );
    assert_eq!(
        records.len(),
        lines.len(),
        "{}: one record per line",
        case.file
    );
    assert_eq!(
        auto.len(),
        lines.len(),
        "{}: one record per line",
        case.file
    );
    let mut first_disagreements = Vec::new();
    for (record, row) in records.iter().zip(&rows) {
        rate.lines += 1;
        if record.get("parse_error").is_none() {
            rate.structured += 1;
        }
        assert!(
            record.get("timestamp").is_some() || record.get("parse_error").is_some(),
            "{}: no timestamp in {record}",
            case.file
        );
        for (field, column) in case.checks {
            rate.checked += 1;
            let ours = if *field == CLIENT_AND_MESSAGE {
                let message = as_text(record.get("message"));
                match record.get("client") {
                    Some(client) => format!("[client {}] {message}", as_text(Some(client))),
                    None => message,
                }
            } else {
                as_text(record.get(*field))
            };
            let theirs = expected_text(column, row, &header);
            if ours == theirs {
                rate.agreeing += 1;
            } else if first_disagreements.len() < 5 {
                first_disagreements.push(format!("{field}: ours {ours:?}, loghub {theirs:?}"));
            }
        }
    }
    if !first_disagreements.is_empty() {
        eprintln!(
            "{}: first disagreements:\n  {}",
            case.file,
            first_disagreements.join("\n  ")
        );
    }
    rate
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

fn table(rates: &[Rate]) -> String {
    let mut md = String::new();
    md.push_str("# loghub parse rates\n\n");
    md.push_str("How much of each log in the [loghub](https://github.com/logpai/loghub) collection the adapter structures,\n");
    md.push_str("with a built-in format or a pattern shipped in `patterns/`. *Structured* counts lines that came out\n");
    md.push_str("without `parse_error`; *fields agree* compares our fields with loghub's own hand-checked split of the\n");
    md.push_str("same lines (`*_structured.csv`), field by field. *auto* is the rate of `adapter parse` with no options\n");
    md.push_str("at all (format detection; the shipped patterns are only used when named with `--pattern`).\n\n");
    md.push_str("Produced by `adapter/tests/loghub.rs` from the copy of the logs in `adapter/tests/data/loghub/` (with\n");
    md.push_str("loghub's LICENSE beside them): `UPDATE_LOGHUB_RATES=1 cargo test -p adapter --test loghub` rewrites this file, and the\n");
    md.push_str("same test without the variable fails when this table is out of date or a rate drops below 99%.\n\n");
    md.push_str("Every count comes from the real `adapter parse` binary, run as `adapter parse --format F [--pattern P] < file`.\n\n");
    md.push_str("| file | lines | format | structured | rate | fields agree | auto |\n");
    md.push_str("|---|---:|---|---:|---:|---:|---:|\n");
    for r in rates {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2}% | {}/{} ({:.2}%) | {:.2}% |",
            r.file,
            r.lines,
            r.format,
            r.structured,
            percent(r.structured, r.lines),
            r.agreeing,
            r.checked,
            percent(r.agreeing, r.checked),
            percent(r.auto_structured, r.lines)
        );
    }
    md
}

#[test]
fn loghub_logs_are_structured_and_agree_with_loghub() {
    let dir = loghub_dir();
    let rates: Vec<Rate> = CASES.iter().map(|case| measure(case, &dir)).collect();
    let md = table(&rates);
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("LOGHUB_RATES.md");
    if std::env::var_os("UPDATE_LOGHUB_RATES").is_some() {
        std::fs::write(&committed, &md).expect("write LOGHUB_RATES.md");
    }
    for r in &rates {
        let structured = percent(r.structured, r.lines);
        let agreeing = percent(r.agreeing, r.checked);
        assert!(
            structured >= 99.0,
            "{}: only {structured:.2}% structured",
            r.file
        );
        assert!(
            agreeing >= 99.0,
            "{}: only {agreeing:.2}% of fields agree with loghub",
            r.file
        );
    }
    let on_disk = std::fs::read_to_string(&committed).unwrap_or_default();
    assert_eq!(
        on_disk, md,
        "LOGHUB_RATES.md is out of date: rerun with UPDATE_LOGHUB_RATES=1 and commit it"
    );
}
