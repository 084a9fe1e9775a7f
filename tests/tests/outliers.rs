//! Outlier detection end to end: one of three replicas dies mid-load and comes back. The
//! clients must not notice (retries cover the failures, ejection stops them), the dead
//! endpoint is ejected, and it is readmitted once it answers again.
//!
//! `cargo nextest run -p e2e-tests --test outliers --no-capture` prints the figures of the
//! run: requests sent, failed, retried, and the latency percentiles during the fault.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::eventually;
use serde_json::{Value, json};
use tokio::time::Instant;

/// What one request of the load saw: when it started, how long it took, whether it was 200.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    took: Duration,
    ok: bool,
}

/// `workers` clients sending `GET /` in a loop, each on its own connection, until `stop`
/// is set, at most `max_each` requests each and for at most `max_duration`.
fn load(
    addr: std::net::SocketAddr,
    workers: usize,
    max_each: usize,
    max_duration: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<Sample>, Vec<String>)>> {
    (0..workers)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + max_duration;
                let mut samples = Vec::new();
                let mut failures = Vec::new();
                let mut client: Option<Client> = None;
                while !stop.load(Ordering::Relaxed)
                    && samples.len() < max_each
                    && Instant::now() < deadline
                {
                    let at = Instant::now();
                    let c = match &mut client {
                        Some(c) => c,
                        None => match Client::try_http1(addr).await {
                            Ok(c) => client.insert(c),
                            Err(e) => {
                                failures.push(format!("connect: {e}"));
                                samples.push(Sample {
                                    at,
                                    took: at.elapsed(),
                                    ok: false,
                                });
                                continue;
                            }
                        },
                    };
                    let ok = match c.get("/").try_send().await {
                        Ok(r) if r.status == 200 => true,
                        Ok(r) => {
                            failures.push(format!("status {} {:?}", r.status, r.text()));
                            false
                        }
                        Err(e) => {
                            failures.push(e.to_string());
                            client = None;
                            false
                        }
                    };
                    samples.push(Sample {
                        at,
                        took: at.elapsed(),
                        ok,
                    });
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (samples, failures)
            })
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn endpoint_view(proxy: &Sidecar, addr: std::net::SocketAddr) -> Value {
    let view = proxy.admin().json("/clusters").await;
    view["clusters"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["address"] == addr.to_string())
        .cloned()
        .expect("the endpoint is listed")
}

#[tokio::test]
async fn one_replica_killed_mid_load_goes_unnoticed_and_is_readmitted() {
    let a = upstream::http1().name("a").run().await;
    let b = upstream::http1().name("b").run().await;
    let c = upstream::http1().name("c").run().await;
    let a_addr = a.addr();
    let mut pool = cluster("pool", [a.addr(), b.addr(), c.addr()]);
    pool["connect_timeout"] = json!("250ms");
    pool["outlier_detection"] = json!({
        "consecutive_local_origin_failure": 3,
        "interval": "200ms",
        "base_ejection_time": "1s",
    });
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [{
            "name": "all",
            "cluster": "pool",
            "timeout": "3s",
            "retry_policy": { "num_retries": 2, "per_try_timeout": "500ms" },
        }] }],
        "clusters": [pool],
    }))
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(
        proxy.listener("in"),
        4,
        20_000,
        Duration::from_secs(30),
        stop.clone(),
    );
    eventually(
        "the load to reach every replica",
        Duration::from_secs(10),
        async || {
            if a.requests() >= 50 {
                Ok(())
            } else {
                Err(a.requests())
            }
        },
    )
    .await;
    let a_before = a.requests();
    assert!(a_before > 0, "a took traffic before the fault");

    let fault = Instant::now();
    drop(a);
    let ejected = eventually("a to be ejected", Duration::from_secs(5), async || {
        let e = endpoint_view(&proxy, a_addr).await;
        if e["healthy"] == false && e["ejected_until"].is_string() {
            Ok(e)
        } else {
            Err(e)
        }
    })
    .await;
    assert!(ejected["ejections_total"].as_u64() >= Some(1), "{ejected}");
    // Keep the replica down for a while: it returns from ejection, fails, goes out again.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let a = eventually(
        "a's port to be free again",
        Duration::from_secs(5),
        async || upstream::http1().name("a").bind(a_addr).try_run().await,
    )
    .await;
    let back = eventually("a to be readmitted", Duration::from_secs(10), async || {
        let e = endpoint_view(&proxy, a_addr).await;
        if e["healthy"] == true && a.requests() > 0 {
            Ok(Instant::now())
        } else {
            Err(e)
        }
    })
    .await;
    // A little traffic after the return, so the run covers the readmitted replica too.
    let readmitted_at = a.requests();
    eventually(
        "the readmitted replica to serve more",
        Duration::from_secs(10),
        async || {
            if a.requests() >= readmitted_at + 20 {
                Ok(())
            } else {
                Err(a.requests())
            }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);

    let mut samples = Vec::new();
    let mut failures = Vec::new();
    for w in workers {
        let (s, f) = w.await.expect("load workers do not panic");
        samples.extend(s);
        failures.extend(f);
    }
    let m = proxy.admin().metrics().await;
    let retried = m.sum("sidecar_upstream_retries_total", &[("cluster", "pool")]);
    let ejections = m.sum("sidecar_outlier_ejections_total", &[("cluster", "pool")]);
    let mut during: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at >= fault && s.at <= back)
        .map(|s| s.took)
        .collect();
    during.sort();
    println!(
        "kill-one-replica: sent {} failed {} retried {} ejections {} | during the fault ({:?}): {} requests, p50 {:?} p99 {:?} max {:?}",
        samples.len(),
        failures.len(),
        retried,
        ejections,
        back - fault,
        during.len(),
        percentile(&during, 0.50),
        percentile(&during, 0.99),
        during.last().copied().unwrap_or_default(),
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    assert!(samples.iter().all(|s| s.ok));
    assert!(retried >= 1.0, "the fault was covered by retries");
    assert!(ejections >= 1.0);
    assert!(
        percentile(&during, 0.99) < Duration::from_millis(600),
        "p99 during the fault: {:?}",
        percentile(&during, 0.99)
    );
    drop(a);
    drop((b, c));
}

/// A replica answering 503 to everything is ejected by `consecutive_5xx` and its share of
/// the traffic goes to the others, without any retry policy.
#[tokio::test]
async fn consecutive_5xx_ejects_a_failing_replica() {
    let bad: Upstream = upstream::http1()
        .name("bad")
        .fallback(Reply::echo().status(503))
        .run()
        .await;
    let good = upstream::http1().name("good").run().await;
    let mut pool = cluster("pool", [bad.addr(), good.addr()]);
    pool["outlier_detection"] = json!({ "consecutive_5xx": 3, "base_ejection_time": "30s" });
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "pool" }] }],
        "clusters": [pool],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let mut errors = 0;
    for _ in 0..40 {
        if client.get("/").send().await.status != 200 {
            errors += 1;
        }
    }
    assert_eq!(errors, 3, "three 503s in a row, then the replica is out");
    assert_eq!(bad.requests(), 3);
    let e = endpoint_view(&proxy, bad.addr()).await;
    assert_eq!(e["healthy"], false, "{e}");
    let m = proxy.admin().metrics().await;
    assert_eq!(
        m.one(
            "sidecar_outlier_ejections_total",
            &[("cluster", "pool"), ("reason", "consecutive_5xx")]
        ),
        1.0
    );
    assert_eq!(
        m.one("sidecar_outlier_ejected_endpoints", &[("cluster", "pool")]),
        1.0
    );
}
