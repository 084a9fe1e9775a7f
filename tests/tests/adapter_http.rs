//! The HTTP output against an endpoint that fails (500), then stalls, then recovers: every
//! record arrives exactly once per acknowledged request, the child is held back meanwhile
//! (the adapter stops reading), and the adapter's memory stays bounded. Also: `/metrics`
//! passes `promtool check metrics` and counts the retries.

use std::collections::HashSet;
use std::time::Duration;

use e2e_tests::adapter::{Adapter, Collector, Mode, records};
use e2e_tests::wait::eventually;

const LINES: u64 = 400_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn metrics(port: u16) -> Option<String> {
    get(port, "/metrics").await
}

/// The body of a 200 answer to `GET path` on the admin server.
async fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_then_stalled_endpoint_loses_nothing_and_memory_stays_bounded() {
    let collector = Collector::start(Mode::Fail).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("adapter.out");
    let admin = free_port();
    let url = format!("http://{}/ingest", collector.addr);
    let admin_addr = format!("127.0.0.1:{admin}");
    // About 30 MB of log lines, far more than the adapter may buffer.
    let script = format!(
        "seq 0 {} | sed 's/^/level=info pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx seq=/'",
        LINES - 1
    );
    let mut adapter = Adapter::start(
        &[
            "run",
            "--format",
            "logfmt",
            "--http",
            &url,
            "--http-gzip",
            "--http-max-wait",
            "50ms",
            "--http-timeout",
            "500ms",
            "--http-max-backoff",
            "200ms",
            "--admin",
            &admin_addr,
            "--",
            "sh",
            "-c",
            &script,
        ],
        &out,
    );
    eventually(
        "retries against the failing endpoint",
        Duration::from_secs(20),
        async || {
            let text = metrics(admin)
                .await
                .ok_or_else(|| "no metrics".to_owned())?;
            let opened = metric(&text, "adapter_output_breaker_open") == 1.0;
            if metric(&text, "adapter_output_retries_total") >= 5.0 && opened {
                Ok(text)
            } else {
                Err("no retries or breaker still closed".to_owned())
            }
        },
    )
    .await;
    assert_eq!(get(admin, "/ready").await.as_deref(), Some("ready\n"));
    collector.set_mode(Mode::Stall);
    let stalled_at = collector.requests();
    eventually(
        "a stalled request to time out",
        Duration::from_secs(20),
        async || {
            if collector.requests() >= stalled_at + 2 {
                Ok(())
            } else {
                Err("waiting")
            }
        },
    )
    .await;
    assert!(
        collector.lines().is_empty(),
        "nothing accepted while failing"
    );
    let held_back = adapter
        .peak_rss()
        .expect("the adapter runs while its sink refuses");
    collector.set_mode(Mode::Accept);
    let mut peak = held_back;
    let mut text = String::new();
    while adapter.try_exit().is_none() {
        peak = peak.max(adapter.peak_rss().unwrap_or(0));
        if let Some(t) = metrics(admin).await {
            text = t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = adapter.exited(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0));
    let lines = collector.lines();
    let mut seen = HashSet::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("NDJSON line");
        let seq: u64 = v["seq"].as_str().and_then(|s| s.parse().ok()).expect("seq");
        assert!(seen.insert(seq), "seq {seq} accepted twice");
    }
    assert_eq!(seen.len() as u64, LINES, "every line arrived");
    eprintln!("adapter peak RSS {} KiB", peak >> 10);
    assert!(
        peak < 32 << 20,
        "peak RSS {peak} bytes while the endpoint failed and stalled"
    );
    assert!(records(&out).is_empty(), "nothing went to stdout");
    assert!(
        adapter.stderr_text().contains("breaker open"),
        "{}",
        adapter.stderr_text()
    );
    assert_eq!(
        metric(&text, "adapter_output_breaker_open"),
        0.0,
        "closed after recovery"
    );
    assert!(
        metric(&text, "adapter_records_by_level_total{level=\"info\"}") > 0.0,
        "{text}"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (tests/run.sh installs it)");
    let mut promtool = promtool;
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("feed promtool");
    }
    let result = promtool.wait_with_output().expect("promtool");
    assert!(
        result.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}
