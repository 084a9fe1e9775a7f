//! A real Prometheus server (the Debian package's `/usr/bin/prometheus`) scrapes the sidecar
//! every second while the test sends a known mix of traffic; its HTTP API must then report the
//! request rate and error ratio the test sent. This is what an operator's dashboard computes,
//! so the metric names, types, labels and histogram buckets are checked end to end.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e_tests::client::Client;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply};
use e2e_tests::wait::eventually;
use e2e_tests::{Sidecar, ports};
use serde_json::{Value, json};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus server in its own temporary directory, killed when dropped.
struct Prometheus {
    child: Child,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: std::net::SocketAddr) -> Prometheus {
        assert!(
            PathBuf::from(PROMETHEUS).is_file(),
            "{PROMETHEUS} is missing: install the Debian package `prometheus` (tests/run.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("prometheus-e2e-")
            .tempdir()
            .expect("a temporary directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: sidecar\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr = ports::loopback();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus { child, addr, dir };
        eventually("prometheus /-/ready", Duration::from_secs(30), async || {
            if let Some(status) = p.child.try_wait().expect("poll prometheus") {
                panic!("prometheus exited with {status}:\n{}", p.log());
            }
            match Client::try_http1(p.addr).await {
                Ok(mut c) => match c.get("/-/ready").try_send().await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("{} {}", r.status, r.text())),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query at `time` (unix seconds; now when `None`): the vector's values.
    async fn query(&self, promql: &str, time: Option<f64>) -> Vec<f64> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("query", promql);
        if let Some(t) = time {
            q.append_pair("time", &format!("{t:.3}"));
        }
        let q = q.finish();
        let mut c = Client::http1(self.addr).await;
        let r = c.get(&format!("/api/v1/query?{q}")).send().await;
        assert_eq!(r.status, 200, "{promql}: {}", r.text());
        let doc: Value = r.json();
        assert_eq!(doc["status"], "success", "{promql}: {doc}");
        doc["data"]["result"]
            .as_array()
            .expect("a vector")
            .iter()
            .map(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            })
            .collect()
    }

    async fn one(&self, promql: &str, time: Option<f64>) -> Result<f64, String> {
        match self.query(promql, time).await.as_slice() {
            [v] if v.is_finite() => Ok(*v),
            other => Err(format!("{promql} gave {other:?}")),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn prometheus_scrapes_the_request_rate_and_error_ratio_that_were_sent() {
    let ok = upstream::http1().name("ok").run().await;
    let failing = upstream::http1()
        .name("failing")
        .fallback(Reply::echo().status(503))
        .run()
        .await;
    let proxy = Sidecar::start(json!({
        "listeners": [{
            "name": "in",
            "routes": [
                { "name": "fail", "match": { "prefix": "/fail" }, "cluster": "failing" },
                { "name": "ok", "cluster": "ok" },
            ],
        }],
        "clusters": [cluster("ok", [ok.addr()]), cluster("failing", [failing.addr()])],
    }))
    .await;
    let prom = Prometheus::start(proxy.admin().addr()).await;
    eventually(
        "the sidecar target is up",
        Duration::from_secs(20),
        async || {
            prom.one("up{job=\"sidecar\"}", None).await.and_then(|v| {
                if v == 1.0 {
                    Ok(())
                } else {
                    Err(format!("up = {v}"))
                }
            })
        },
    )
    .await;

    // Bounded traffic: 100 rounds of 3 successes and 1 failure, one round every 100 ms.
    let mut c = Client::http1(proxy.listener("in")).await;
    let started = now();
    let mut sent = 0u32;
    for _ in 0..100 {
        for _ in 0..3 {
            assert_eq!(c.get("/").send().await.status, 200);
        }
        assert_eq!(c.get("/fail").send().await.status, 503);
        sent += 4;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(now() - started < 30.0, "traffic took over 30s");
    }
    let ended = now();
    let rate_sent = f64::from(sent) / (ended - started);

    // Prometheus has the final counts once it scraped after the last request.
    let total = "sum(sidecar_requests_total{listener=\"in\"})";
    eventually("the last scrape", Duration::from_secs(10), async || {
        prom.one(total, None).await.and_then(|v| {
            if v == f64::from(sent) {
                Ok(())
            } else {
                Err(format!("{total} = {v}"))
            }
        })
    })
    .await;
    let fivexx = "sum(sidecar_requests_total{listener=\"in\",code_class=\"5xx\"})";
    assert_eq!(prom.one(fivexx, None).await, Ok(f64::from(sent / 4)));

    // Rates over a 5 s window inside the traffic, as a dashboard would compute them.
    let mid = (started + ended) / 2.0;
    let rate = prom
        .one(
            "sum(rate(sidecar_requests_total{listener=\"in\"}[5s]))",
            Some(mid),
        )
        .await
        .expect("a request rate");
    assert!(
        (rate - rate_sent).abs() <= rate_sent * 0.35,
        "request rate {rate:.1}/s, sent {rate_sent:.1}/s"
    );
    let ratio = prom
        .one(
            "sum(rate(sidecar_requests_total{listener=\"in\",code_class=\"5xx\"}[5s])) \
             / sum(rate(sidecar_requests_total{listener=\"in\"}[5s]))",
            Some(mid),
        )
        .await
        .expect("an error ratio");
    assert!(
        (ratio - 0.25).abs() <= 0.05,
        "error ratio {ratio:.3}, sent 0.25"
    );
    let upstream_ratio = prom
        .one(
            "sum(rate(sidecar_upstream_requests_total{cluster=\"failing\",code_class=\"5xx\"}[5s])) \
             / sum(rate(sidecar_upstream_requests_total[5s]))",
            Some(mid),
        )
        .await
        .expect("an upstream error ratio");
    assert!(
        (upstream_ratio - 0.25).abs() <= 0.05,
        "upstream error ratio {upstream_ratio:.3}"
    );

    // The latency histogram answers a quantile: loopback requests take well under 50 ms,
    // so the median lands in the sub-millisecond to millisecond buckets.
    let p50 = prom
        .one(
            "histogram_quantile(0.5, sum by (le) (rate(sidecar_request_duration_seconds_bucket{listener=\"in\"}[5s])))",
            Some(mid),
        )
        .await
        .expect("a median");
    assert!(p50 > 0.0 && p50 < 0.05, "median {p50}s");
    // The upstream's share: every attempt went to one of the two clusters.
    let attempts = prom
        .one("sum(sidecar_upstream_request_duration_seconds_count)", None)
        .await;
    assert_eq!(attempts, Ok(f64::from(sent)));
    let up_p50 = prom
        .one(
            "histogram_quantile(0.5, sum by (le) (rate(sidecar_upstream_request_duration_seconds_bucket[5s])))",
            Some(mid),
        )
        .await
        .expect("an upstream median");
    assert!(up_p50 > 0.0 && up_p50 < 0.05, "upstream median {up_p50}s");
    eprintln!(
        "sent {rate_sent:.1} req/s; prometheus: rate {rate:.1}/s, error ratio {ratio:.3}, \
         upstream error ratio {upstream_ratio:.3}, median {:.3} ms (upstream {:.3} ms)",
        p50 * 1000.0,
        up_p50 * 1000.0
    );
}
