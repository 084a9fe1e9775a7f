//! Live inspection of a running sidecar: `GET /tap` streams the requests passing now (filtered,
//! limited, headers redacted), `GET /debug/failures` keeps the last failures with their reason
//! chain, and `sidecar tap` / `sidecar status` print them as tables (or JSON with `-o json`).

use std::process::{Command, Stdio};
use std::time::Duration;

use e2e_tests::client::Client;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::eventually;
use e2e_tests::{Sidecar, process};
use http_body_util::BodyExt;
use serde_json::{Value, json};

/// Route `api` (/api) to a healthy echo; route `flaky` (/flaky) to two replicas answering 503,
/// retried once on 5xx. Nothing else is routed.
async fn proxy(ok: &Upstream, bad: &[Upstream; 2]) -> Sidecar {
    Sidecar::start(json!({
        "listeners": [{
            "name": "in",
            "routes": [
                { "name": "api", "match": { "prefix": "/api" }, "cluster": "ok" },
                {
                    "name": "flaky",
                    "match": { "prefix": "/flaky" },
                    "cluster": "bad",
                    "retry_policy": { "retry_on": ["5xx"], "num_retries": 1,
                                      "retry_back_off": { "base_interval": "1ms" } },
                },
            ],
        }],
        "clusters": [
            cluster("ok", [ok.addr()]),
            cluster("bad", [bad[0].addr(), bad[1].addr()]),
        ],
    }))
    .await
}

async fn upstreams() -> (Upstream, [Upstream; 2]) {
    let ok = upstream::http1().name("ok").run().await;
    let bad = [
        upstream::http1()
            .name("bad-1")
            .fallback(Reply::echo().status(503))
            .run()
            .await,
        upstream::http1()
            .name("bad-2")
            .fallback(Reply::echo().status(503))
            .run()
            .await,
    ];
    (ok, bad)
}

/// Opens `/tap?query` and returns its body; the tap is subscribed once the head is back.
async fn open_tap(proxy: &Sidecar, query: &str) -> hyper::body::Incoming {
    let mut admin = Client::http1(proxy.admin().addr()).await;
    let resp = admin
        .get(&format!("/tap?{query}"))
        .send_streaming()
        .await
        .expect("the tap answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-ndjson")
    );
    resp.into_body()
}

/// Every JSON line of a tap stream until it ends (at its `limit`), within 10 s.
async fn read_lines(body: hyper::body::Incoming) -> Vec<Value> {
    let all = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the tap stream ends at its limit within 10s")
        .expect("the tap stream reads")
        .to_bytes();
    String::from_utf8_lossy(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn tap_streams_matching_requests_with_stage_timings_up_to_its_limit() {
    let (ok, bad) = upstreams().await;
    let proxy = proxy(&ok, &bad).await;
    let tap = open_tap(&proxy, "route=api&prefix=%2Fapi%2Fv1&limit=3").await;

    let mut c = Client::http1(proxy.listener("in")).await;
    assert_eq!(c.get("/nowhere").send().await.status, 404);
    for i in 0..4 {
        if i == 1 {
            assert_eq!(c.get("/api/v2/skip").send().await.status, 200);
        }
        let r = c
            .get(&format!("/api/v1/{i}"))
            .header("authorization", "Bearer hunter2")
            .header("x-team", "blue")
            .send()
            .await;
        assert_eq!(r.status, 200);
    }
    let lines = read_lines(tap).await;
    assert_eq!(lines.len(), 3, "limit=3: {lines:#?}");
    for (i, e) in lines.iter().enumerate() {
        assert_eq!(e["path"], format!("/api/v1/{i}"), "{e}");
        assert_eq!(
            (&e["route"], &e["cluster"]),
            (&json!("api"), &json!("ok")),
            "{e}"
        );
        assert_eq!(e["status"], 200);
        assert_eq!(e["method"], "GET");
        assert_eq!(e["upstream"], ok.addr().to_string());
        assert_eq!(e["retries"], 0);
        assert!(e["bytes_sent"].as_u64().is_some_and(|b| b > 0), "{e}");
        assert_eq!(e["bytes_received"], 0, "{e}");
        let total = e["duration_ms"].as_f64().expect("duration_ms");
        let before = e["before_upstream_ms"]
            .as_f64()
            .expect("before_upstream_ms");
        let attempt = &e["attempts"][0];
        let headers = attempt["response_headers_ms"]
            .as_f64()
            .expect("response_headers_ms");
        assert!(
            before + headers <= total + 0.01,
            "stages within the total: {e}"
        );
        // The first request opened the upstream connection; the others reused it.
        assert_eq!(attempt["connect_ms"].is_f64(), i == 0, "{e}");
        // Names are shown, values redacted by default; credentials never.
        assert_eq!(e["request_headers"]["x-team"], "[redacted]", "{e}");
        assert_eq!(e["request_headers"]["authorization"], "[redacted]", "{e}");
    }

    // With headers=true values show, except those carrying credentials.
    let tap = open_tap(&proxy, "headers=true&limit=1").await;
    c.get("/api/v1/h")
        .header("authorization", "Bearer hunter2")
        .header("x-team", "blue")
        .send()
        .await;
    let lines = read_lines(tap).await;
    assert_eq!(lines[0]["request_headers"]["x-team"], "blue");
    assert_eq!(lines[0]["request_headers"]["authorization"], "[redacted]");
    assert!(!lines[0].to_string().contains("hunter2"));
}

#[tokio::test]
async fn tap_filters_on_status_class_and_shows_the_retry_chain() {
    let (ok, bad) = upstreams().await;
    let proxy = proxy(&ok, &bad).await;
    let tap = open_tap(&proxy, "status=5xx&limit=1").await;
    let mut c = Client::http1(proxy.listener("in")).await;
    assert_eq!(c.get("/api/fine").send().await.status, 200);
    assert_eq!(c.get("/flaky/x").send().await.status, 503);
    let lines = read_lines(tap).await;
    let e = &lines[0];
    assert_eq!(
        (&e["path"], &e["status"], &e["route"]),
        (&json!("/flaky/x"), &json!(503), &json!("flaky"))
    );
    assert_eq!(e["retries"], 1, "{e}");
    let attempts = e["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{e}");
    assert_eq!(attempts[0]["retried_on"], "5xx", "{e}");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[1]["status"], 503);
    assert_ne!(
        attempts[0]["endpoint"], attempts[1]["endpoint"],
        "retried elsewhere: {e}"
    );

    let bad_filter = proxy.admin().get("/tap?status=9xx").await;
    assert_eq!(bad_filter.status, 400);
    assert!(
        bad_filter.text().contains("status"),
        "{}",
        bad_filter.text()
    );
}

/// `GET /debug/failures` once it has recorded `total` failures (within 5 s).
async fn failures(proxy: &Sidecar, total: u64) -> Value {
    let admin = proxy.admin();
    eventually(
        &format!("{total} failure(s) recorded"),
        Duration::from_secs(5),
        async || {
            let d = admin.json("/debug/failures").await;
            if d["failures_total"] == total {
                Ok(d)
            } else {
                Err(d)
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_failure_counts_the_body_it_buffered_for_retries() {
    // With the access log on, the retried POST's body is read whole for replay: the failure
    // record counts it as the log line does.
    let (ok, bad) = upstreams().await;
    let proxy = Sidecar::builder(json!({
        "listeners": [{
            "name": "in",
            "routes": [{
                "name": "flaky",
                "match": { "prefix": "/flaky" },
                "cluster": "bad",
                "retry_policy": { "retry_on": ["5xx"], "num_retries": 1,
                                  "retry_non_idempotent": true,
                                  "retry_back_off": { "base_interval": "1ms" } },
            }],
        }],
        "clusters": [
            cluster("ok", [ok.addr()]),
            cluster("bad", [bad[0].addr(), bad[1].addr()]),
        ],
    }))
    .access_log()
    .start()
    .await;
    let r = Client::http1(proxy.listener("in"))
        .await
        .post("/flaky/upload")
        .header("x-request-id", "buffered-body")
        .body(e2e_tests::body::full("hello world"))
        .send()
        .await;
    assert_eq!(r.status, 503);
    let doc = failures(&proxy, 1).await;
    let f = &doc["failures"][0];
    assert_eq!(f["attempts"].as_array().map(Vec::len), Some(2), "{f}");
    assert_eq!(f["bytes_received"], 11, "{f}");
    let logged = proxy.access_log_entry("buffered-body").await;
    assert_eq!(logged["bytes_received"], 11, "{logged}");
}

#[tokio::test]
async fn failures_ring_keeps_local_replies_and_upstream_errors_with_reasons() {
    let (ok, bad) = upstreams().await;
    let proxy = proxy(&ok, &bad).await;
    let mut c = Client::http1(proxy.listener("in")).await;
    assert_eq!(c.get("/api/fine").send().await.status, 200);
    assert_eq!(c.get("/nowhere").send().await.status, 404);
    assert_eq!(c.get("/flaky/x").send().await.status, 503);

    let admin = proxy.admin();
    let doc = failures(&proxy, 2).await;
    assert_eq!(doc["kept"], 2);
    let newest = &doc["failures"][0];
    assert_eq!(
        (&newest["status"], &newest["path"]),
        (&json!(503), &json!("/flaky/x"))
    );
    assert_eq!(newest["attempts"][0]["retried_on"], "5xx", "{newest}");
    assert_eq!(newest["attempts"].as_array().map(Vec::len), Some(2));
    assert!(newest["request_id"].is_string(), "{newest}");
    let older = &doc["failures"][1];
    assert_eq!(
        (&older["status"], &older["reason"]),
        (&json!(404), &json!("no_route"))
    );
    assert!(
        older["error"]
            .as_str()
            .is_some_and(|e| e.contains("/nowhere")),
        "{older}"
    );
    // A successful request is no failure.
    assert!(!doc.to_string().contains("/api/fine"));

    // `sidecar status failures`: the same, as a table and as JSON.
    let admin_addr = admin.addr().to_string();
    let table = status(&["failures", "--admin", &admin_addr]);
    assert!(table.starts_with("2 failure(s) in all, 2 kept"), "{table}");
    let header = table.lines().nth(1).expect("a header");
    assert!(
        header.starts_with("TIME") && header.contains("CHAIN"),
        "{table}"
    );
    assert!(
        table.contains("-> retry(5xx)") && table.contains("reply no_route"),
        "{table}"
    );
    let as_json: Value =
        serde_json::from_str(&status(&["failures", "--admin", &admin_addr, "-o", "json"]))
            .expect("-o json is JSON");
    assert_eq!(as_json["failures"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn status_prints_listeners_routes_and_clusters() {
    let (ok, bad) = upstreams().await;
    let proxy = proxy(&ok, &bad).await;
    let mut c = Client::http1(proxy.listener("in")).await;
    assert_eq!(c.get("/api/x").send().await.status, 200);
    let admin = proxy.admin().addr().to_string();

    let listeners = status(&["listeners", "--admin", &admin]);
    let rows: Vec<Vec<&str>> = listeners
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "ADDRESS", "PROTOCOL", "TO"],
        "{listeners}"
    );
    assert_eq!(
        rows[1],
        [
            "in",
            &proxy.listener("in").to_string(),
            "auto",
            "routes",
            "api,flaky"
        ],
        "{listeners}"
    );

    let routes = status(&["routes", "--admin", &admin]);
    let lines: Vec<&str> = routes.lines().collect();
    assert!(
        lines[0].starts_with("LISTENER") && lines[0].contains("RETRIES"),
        "{routes}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["in", "api", "prefix=/api", "ok", "15s", "-"],
        "{routes}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["in", "flaky", "prefix=/flaky", "bad", "15s", "1x", "5xx"],
        "{routes}"
    );

    let clusters = status(&["clusters", "--admin", &admin]);
    let row = clusters
        .lines()
        .find(|l| l.starts_with("ok "))
        .unwrap_or_else(|| panic!("{clusters}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            "ok",
            "round_robin",
            &ok.addr().to_string(),
            "1",
            "healthy",
            "0",
            "1",
            "0",
            "-"
        ],
        "{clusters}"
    );
    assert_eq!(
        clusters.lines().filter(|l| l.starts_with("bad ")).count(),
        2
    );

    let json: Value = serde_json::from_str(&status(&["clusters", "--admin", &admin, "-o", "json"]))
        .expect("-o json is JSON");
    assert_eq!(json["clusters"][1]["name"], "ok");
    let json: Value = serde_json::from_str(&status(&["routes", "--admin", &admin, "-o", "json"]))
        .expect("-o json is JSON");
    assert_eq!(json["routes"][1]["listener"], "in");
    assert_eq!(json["routes"][1]["retry_policy"]["num_retries"], 1);

    // A sidecar that is not there: a clear error, not a hang.
    let gone = process::cli(&["status", "listeners", "--admin", "127.0.0.1:1"], &[]);
    assert_eq!(gone.code, Some(1));
    assert!(
        gone.stderr
            .contains("cannot reach the admin API at 127.0.0.1:1"),
        "{}",
        gone.stderr
    );
}

#[tokio::test]
async fn sidecar_tap_prints_a_live_table() {
    let (ok, bad) = upstreams().await;
    let proxy = proxy(&ok, &bad).await;
    let admin = proxy.admin().addr().to_string();
    let mut child = Command::new(process::binary())
        .args(["tap", "--admin", &admin, "--route", "api", "-n", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sidecar tap");
    let _kill = KillOnDrop(child.id());
    // The command subscribes when it starts; send until it has printed its two rows and exited
    // (bounded: 100 requests, 10 s).
    let mut c = Client::http1(proxy.listener("in")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut sent = 0;
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll sidecar tap") {
            break s;
        }
        assert!(
            sent < 100 && tokio::time::Instant::now() < deadline,
            "sidecar tap did not end"
        );
        assert_eq!(c.get("/flaky/x").send().await.status, 503);
        assert_eq!(c.get("/api/row").send().await.status, 200);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().expect("tap output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {text}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("IN_PROXY"),
        "{text}"
    );
    for row in &lines[1..] {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[1..6],
            ["200", "GET", "/api/row", "api", "ok"],
            "{text}"
        );
    }
}

fn status(args: &[&str]) -> String {
    let mut full = vec!["status"];
    full.extend_from_slice(args);
    let out = process::cli(&full, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.stdout
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0).expect("pid fits"));
        // Already gone after a normal end; that is fine.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}
