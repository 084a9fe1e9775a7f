//! `adapter run`: a child's stdout and stderr become records marked with their stream, every
//! line is delivered even when the child crashes, and its exit code (or 128 + signal) is
//! the adapter's; multiline joining keeps a Java stack trace in one record.

use std::time::Duration;

use e2e_tests::adapter::{Adapter, Signal, records};
use e2e_tests::wait::eventually;

#[tokio::test]
async fn a_crashing_child_has_every_line_delivered_and_its_exit_code_propagated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.jsonl");
    let script =
        "for i in $(seq 1 5000); do echo \"seq=$i\"; done; echo 'msg=dying' >&2; kill -SEGV $$";
    let mut adapter = Adapter::start(
        &["run", "--format", "logfmt", "--", "sh", "-c", script],
        &out,
    );
    let status = adapter.exited(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(128 + 11), "killed by SIGSEGV: 128 + 11");
    let recs = records(&out);
    let stdout: Vec<_> = recs.iter().filter(|r| r["stream"] == "stdout").collect();
    assert_eq!(stdout.len(), 5000, "every line before the crash");
    for (i, r) in stdout.iter().enumerate() {
        assert_eq!(r["seq"], (i + 1).to_string());
    }
    assert!(
        recs.iter()
            .any(|r| r["stream"] == "stderr" && r["msg"] == "dying")
    );

    let out3 = tmp.path().join("out3.jsonl");
    let mut missing = Adapter::start(&["run", "--", "/nonexistent/program"], &out3);
    assert_eq!(
        missing.exited(Duration::from_secs(10)).await.code(),
        Some(127)
    );
    assert!(
        missing
            .stderr_text()
            .contains("cannot start `/nonexistent/program`")
    );

    let out2 = tmp.path().join("out2.jsonl");
    let mut adapter = Adapter::start(&["run", "--", "sh", "-c", "echo hi; exit 3"], &out2);
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(3)
    );
    assert_eq!(records(&out2).len(), 1);
}

#[tokio::test]
async fn sigterm_is_forwarded_and_the_childs_last_words_arrive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.jsonl");
    let script = "trap 'echo msg=bye; exit 7' TERM; echo msg=up; while true; do sleep 0.05; done";
    let mut adapter = Adapter::start(
        &["run", "--format", "logfmt", "--", "sh", "-c", script],
        &out,
    );
    eventually("the child to start", Duration::from_secs(10), async || {
        if records(&out).iter().any(|r| r["msg"] == "up") {
            Ok(())
        } else {
            Err("no")
        }
    })
    .await;
    adapter.signal(Signal::SIGTERM);
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(7)
    );
    assert!(records(&out).iter().any(|r| r["msg"] == "bye"));
}

#[tokio::test]
async fn a_java_stack_trace_is_one_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.jsonl");
    let trace = "2024-01-01 12:00:00,000 ERROR [main] com.x.App - request failed\n\
java.lang.IllegalStateException: bad\n\tat com.x.App.run(App.java:10)\n\tat com.x.App.main(App.java:3)\n\
Caused by: java.io.IOException: disk\n\tat com.x.Disk.read(Disk.java:7)\n\t... 2 more\n\
2024-01-01 12:00:01,000 INFO [main] com.x.App - next";
    let script = format!("printf '%s\\n' '{trace}'; sleep 0.3");
    let mut adapter = Adapter::start(
        &[
            "run",
            "--format",
            "log4j",
            "--multiline",
            "java",
            "--multiline-flush",
            "200ms",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &out,
    );
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 3, "{recs:?}");
    let text = recs[1].to_string();
    assert!(
        text.contains("IllegalStateException") && text.contains("... 2 more"),
        "{text}"
    );
    assert!(recs[2].to_string().contains("next"));
}

#[tokio::test]
async fn a_ten_mib_line_is_capped_without_unbounded_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out.jsonl");
    let script = "head -c 10485760 /dev/zero | tr '\\0' x; echo; echo next=1";
    let mut adapter = Adapter::start(
        &["run", "--format", "logfmt", "--", "sh", "-c", script],
        &out,
    );
    let mut peak = 0;
    while adapter.try_exit().is_none() {
        peak = peak.max(adapter.peak_rss().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["truncated"], true);
    assert_eq!(recs[1]["next"], "1");
    assert!(peak > 0, "the adapter's memory was read while it ran");
    assert!(peak < 32 << 20, "peak RSS {peak} bytes for a 10 MiB line");
}

#[tokio::test]
async fn a_config_file_drives_a_tail_and_check_config_names_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("svc.log");
    std::fs::write(&log, "level=warn msg=one\nlevel=error msg=two\n").expect("write log");
    let records_file = tmp.path().join("records.jsonl");
    let config = tmp.path().join("adapter.yaml");
    std::fs::write(
        &config,
        format!(
            "input:\n  tail:\n    paths: [\"{}\"]\n    state_dir: {}\n    poll_interval: 20ms\nparser:\n  format: logfmt\noutput:\n  file:\n    path: {}\n",
            tmp.path().join("svc.*").display(),
            tmp.path().join("state").display(),
            records_file.display()
        ),
    )
    .expect("write config");
    let out = tmp.path().join("stdout");
    let check = Adapter::start(&["check-config", config.to_str().expect("utf8")], &out);
    let mut check = check;
    assert_eq!(check.exited(Duration::from_secs(10)).await.code(), Some(0));

    let mut adapter = Adapter::start(&["run", "--config", config.to_str().expect("utf8")], &out);
    eventually(
        "both records in the output file",
        Duration::from_secs(10),
        async || {
            if records(&records_file).len() == 2 {
                Ok(())
            } else {
                Err("not yet")
            }
        },
    )
    .await;
    adapter.signal(Signal::SIGTERM);
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    let recs = records(&records_file);
    assert_eq!(recs[1]["msg"], "two");
    assert!(
        recs[1]["input"]["id"]
            .as_str()
            .is_some_and(|id| id.ends_with(":19"))
    );
    let state =
        std::fs::read_to_string(tmp.path().join("state/checkpoints.json")).expect("state file");
    assert!(state.contains("\"offset\": 39"), "{state}");

    std::fs::write(
        &config,
        "input:\n  stdin: {}\noutput:\n  http:\n    url: http://127.0.0.1:1/\n    gzip: maybe\n",
    )
    .expect("write config");
    let mut bad = Adapter::start(&["check-config", config.to_str().expect("utf8")], &out);
    assert_eq!(bad.exited(Duration::from_secs(10)).await.code(), Some(64));
    assert!(
        bad.stderr_text().contains("output.http.gzip: "),
        "{}",
        bad.stderr_text()
    );
}
