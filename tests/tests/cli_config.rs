//! The command line: `check-config`, `default-config`, and `run` refusing a bad config.

use std::path::{Path, PathBuf};

use e2e_tests::process::{Output, cli};

/// Exit code for a config that does not validate (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a config file");
    path
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Asserts that each of `lines` is a whole line of the command's stderr.
#[track_caller]
fn assert_reports(out: &Output, lines: &[&str]) {
    let stderr: Vec<&str> = out.stderr.lines().map(str::trim_end).collect();
    for want in lines {
        assert!(
            stderr.contains(want),
            "missing problem line {want:?} in stderr:\n{}",
            out.stderr
        );
    }
}

/// Asserts that some line of stderr starts with `prefix` (for messages that go on to list
/// every accepted field).
#[track_caller]
fn assert_reports_prefix(out: &Output, prefix: &str) {
    assert!(
        out.stderr.lines().any(|l| l.starts_with(prefix)),
        "no line starting with {prefix:?} in stderr:\n{}",
        out.stderr
    );
}

/// Shared with the config unit tests.
const GOOD: &str = include_str!("../../proxy-core/src/config/testdata/full.yaml");

/// Problems spread over every section, so one run must show them all.
const BAD: &str = r#"
listeners:
  - name: in
    adress: 127.0.0.1:1
  - name: ok
    address: 127.0.0.1:2
    routes: [{ name: r, cluster: nope }]
clusters:
  - name: c
    endpoints: ["127.0.0.1:80a", "example.com:80", "::1:80", { address: "127.0.0.1:1", weight: 0 }]
    connect_timeout: 5
"#;

const BAD_LINES: [&str; 4] = [
    "listeners[1].routes[0].cluster: unknown cluster \"nope\"",
    "clusters[0].connect_timeout: duration 5 needs a unit, like \"5s\" or \"5ms\"",
    "clusters[0].endpoints[0]: invalid port \"80a\": expected 1 to 65535",
    "clusters[0].endpoints[2]: invalid address \"::1:80\": write IPv6 addresses in brackets, like \"[::1]:8080\"",
];

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempdir();
    let file = write(dir.path(), "good.yaml", GOOD);
    let out = cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.trim_end(),
        format!("{}: ok", file.display()),
        "{out:?}"
    );
}

#[test]
fn check_config_reports_every_problem_with_its_path() {
    let dir = tempdir();
    let file = write(dir.path(), "bad.yaml", BAD);
    let out = cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(EXIT_CONFIG), "{out:?}");
    assert!(
        !out.stdout.contains(": ok"),
        "a bad file was called ok: {out:?}"
    );
    assert_reports_prefix(&out, "listeners[0].adress: unknown field \"adress\"");
    // The connect_timeout problem makes clusters[0] fail to parse as a whole, so its endpoint
    // problems are found by the next run; check them on a file of their own.
    assert_reports(&out, &BAD_LINES[..2]);

    let file = write(
        dir.path(),
        "endpoints.yaml",
        r#"
clusters:
  - name: c
    endpoints: ["127.0.0.1:80a", "example.com:80", "::1:80", { address: "127.0.0.1:1", weight: 0 }]
"#,
    );
    let out = cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(EXIT_CONFIG), "{out:?}");
    assert_reports(
        &out,
        &[
            BAD_LINES[2],
            "clusters[0].endpoints[1]: \"example.com\" is not an IP address; static endpoints are IP:port (use discovery: dns for host names)",
            BAD_LINES[3],
            "clusters[0].endpoints[3].weight: must be at least 1",
        ],
    );
}

#[test]
fn check_config_reports_cross_reference_and_shape_problems() {
    let dir = tempdir();
    let file = write(
        dir.path(),
        "shapes.yaml",
        r#"
listeners:
  - name: a
    address: 127.0.0.1:1
    protocol: tcp
  - name: a
    address: 127.0.0.1:1
    routes:
      - name: r
        cluster: c
        weighted_clusters: [{ name: c, weight: 1 }]
        match: { prefix: api, regex: "(" }
clusters:
  - name: c
    endpoints: ["127.0.0.1:1"]
    lb_policy: ring_hash
"#,
    );
    let out = cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(EXIT_CONFIG), "{out:?}");
    assert_reports(
        &out,
        &[
            "clusters[0].hash_policy: lb_policy ring_hash needs hash_policy.header",
            "listeners[0].cluster: a tcp listener needs a cluster",
            "listeners[1].name: duplicate listener name \"a\"",
            "listeners[1].address: 127.0.0.1:1 is used by another listener",
            "listeners[1].routes[0]: set either cluster or weighted_clusters, not both",
            "listeners[1].routes[0].match: use only one of prefix, path and regex",
            "listeners[1].routes[0].match.prefix: \"api\" must start with '/'",
        ],
    );
    assert_reports_prefix(&out, "listeners[1].routes[0].match.regex: invalid regex");
}

#[test]
fn check_config_reports_yaml_syntax_and_unreadable_files() {
    let dir = tempdir();
    let file = write(dir.path(), "syntax.yaml", "listeners: [");
    let out = cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(EXIT_CONFIG), "{out:?}");
    assert_reports_prefix(&out, "invalid YAML");

    let missing = dir.path().join("missing.yaml");
    let out = cli(&["check-config", missing.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(EXIT_CONFIG), "{out:?}");
    assert!(out.stderr.contains("cannot read"), "{out:?}");
}

#[test]
fn default_config_is_itself_valid() {
    let out = cli(&["default-config"], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    for expected in [
        "0.0.0.0:15006",
        "127.0.0.1:15001",
        "127.0.0.1:15000",
        "127.0.0.1:8080",
    ] {
        assert!(
            out.stdout.contains(expected),
            "default config lacks {expected}:\n{}",
            out.stdout
        );
    }
    let dir = tempdir();
    let file = write(dir.path(), "default.yaml", &out.stdout);
    let checked = cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(checked.code, Some(0), "{checked:?}");
    assert_eq!(checked.stdout.trim_end(), format!("{}: ok", file.display()));
}

#[test]
fn run_with_a_bad_config_exits_64_with_the_problems() {
    let dir = tempdir();
    let file = write(dir.path(), "bad.yaml", BAD);
    let path = file.to_str().unwrap();
    for args in [&["run", "--config", path][..], &["--config", path][..]] {
        let out = cli(args, &[]);
        assert_eq!(out.code, Some(EXIT_CONFIG), "sidecar {args:?}: {out:?}");
        assert_reports(&out, &BAD_LINES[..2]);
    }
    // The same file named by the environment instead of the flag.
    let out = cli(&["run"], &[("SIDECAR_CONFIG", path)]);
    assert_eq!(
        out.code,
        Some(EXIT_CONFIG),
        "SIDECAR_CONFIG=bad.yaml sidecar run: {out:?}"
    );
    assert_reports(&out, &BAD_LINES[..2]);
}
