//! Retries under a route's `retry_policy`, against replicas the tests make fail: retries go
//! to another replica, per-try and route timeouts bound the wait, the retry budget caps the
//! load on a failing cluster, POST and large bodies are never sent twice, `Retry-After` is
//! honoured within its cap, and `circuit_breakers` thresholds overflow at once with 503.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::body;
use e2e_tests::client::Client;
use e2e_tests::metrics::Metrics;
use e2e_tests::ports;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply, Upstream};
use http::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

const ATTEMPT: &str = "x-sidecar-attempt-count";

/// Listener `in` with one route per `(prefix, cluster, route fields)`.
fn config(routes: &[(&str, &str, Value)], clusters: Vec<Value>) -> Value {
    let routes: Vec<Value> = routes
        .iter()
        .map(|(prefix, cluster, fields)| {
            let mut r = json!({
                "name": cluster,
                "match": { "prefix": prefix },
                "cluster": cluster,
            });
            for (k, v) in fields.as_object().expect("route fields are an object") {
                r[k] = v.clone();
            }
            r
        })
        .collect();
    json!({ "listeners": [{ "name": "in", "routes": routes }], "clusters": clusters })
}

/// `sidecar_upstream_retries_total` of `cluster` for `reason`.
fn retries(m: &Metrics, cluster: &str, reason: &str) -> f64 {
    m.one(
        "sidecar_upstream_retries_total",
        &[("cluster", cluster), ("reason", reason)],
    )
}

/// `sidecar_upstream_retries_skipped_total` of `cluster` for `reason`.
async fn skipped(proxy: &Sidecar, cluster: &str, reason: &str) -> f64 {
    proxy.admin().metrics().await.one(
        "sidecar_upstream_retries_skipped_total",
        &[("cluster", cluster), ("reason", reason)],
    )
}

fn pool(name: &str, replicas: &[&Upstream]) -> Value {
    cluster(name, replicas.iter().map(|u| u.addr()))
}

async fn failing(name: &str, status: u16) -> Upstream {
    upstream::http1()
        .name(name)
        .fallback(Reply::echo().status(status))
        .run()
        .await
}

async fn hanging(name: &str) -> Upstream {
    upstream::http1()
        .name(name)
        .fallback(Reply::hang())
        .run()
        .await
}

#[tokio::test]
async fn a_replica_answering_503_is_retried_on_another() {
    let bad = failing("bad", 503).await;
    let b = upstream::http1().name("b").run().await;
    let c = upstream::http1().name("c").run().await;
    let proxy = Sidecar::start(config(
        &[(
            "/",
            "pool",
            json!({ "retry_policy": { "retry_on": ["5xx"], "num_retries": 2 } }),
        )],
        vec![pool("pool", &[&bad, &b, &c])],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let mut retried = 0;
    for i in 0..30 {
        let reply = client.get("/").send().await;
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
        let echoed = reply.echoed();
        assert_ne!(echoed.upstream, "bad");
        match echoed.header(ATTEMPT) {
            Some("1") => {}
            Some("2") => retried += 1,
            other => panic!("request {i}: attempt header {other:?}"),
        }
    }
    assert!(bad.requests() >= 10, "round robin reaches the bad replica");
    assert_eq!(
        retried,
        bad.requests(),
        "each of its answers was retried once, elsewhere"
    );
    let m = proxy.admin().metrics().await;
    assert_eq!(retries(&m, "pool", "5xx"), retried as f64);
    assert_eq!(
        m.one(
            "sidecar_upstream_requests_total",
            &[("cluster", "pool"), ("code_class", "5xx")]
        ),
        retried as f64,
        "every attempt is an upstream request"
    );
}

#[tokio::test]
async fn a_refusing_replica_is_retried_by_default() {
    let refusing = ports::refusing();
    let b = upstream::http1().name("b").run().await;
    let mut c = cluster("pool", [refusing.addr(), b.addr()]);
    c["connect_timeout"] = json!("200ms");
    let proxy = Sidecar::start(config(
        &[("/", "pool", json!({ "retry_policy": {} }))],
        vec![c],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    for i in 0..10 {
        let reply = client.get("/").send().await;
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
    }
    let m = proxy.admin().metrics().await;
    let failures = m.one(
        "sidecar_upstream_connect_failures_total",
        &[("cluster", "pool")],
    );
    assert!(failures >= 5.0, "{}", m.text);
    assert_eq!(
        retries(&m, "pool", "connect-failure"),
        failures,
        "every connect failure was retried"
    );
}

#[tokio::test]
async fn a_hanging_replica_hits_the_per_try_timeout_and_the_retry_goes_elsewhere() {
    let hang = hanging("hang").await;
    let b = upstream::http1().name("b").run().await;
    let proxy = Sidecar::start(config(
        &[(
            "/",
            "pool",
            json!({
                "timeout": "3s",
                "retry_policy": { "per_try_timeout": "200ms" },
            }),
        )],
        vec![pool("pool", &[&hang, &b])],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    for i in 0..6 {
        let start = Instant::now();
        let reply = client.get("/").send().await;
        let took = start.elapsed();
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
        assert_eq!(reply.upstream(), "b");
        assert!(
            took < Duration::from_secs(1),
            "request {i} took {took:?}: the per-try timeout should have cut the hang short"
        );
    }
    assert!(
        hang.requests() >= 3,
        "round robin reaches the hanging replica"
    );
    let m = proxy.admin().metrics().await;
    assert_eq!(
        m.one(
            "sidecar_upstream_per_try_timeouts_total",
            &[("cluster", "pool")]
        ),
        hang.requests() as f64
    );
    assert_eq!(
        retries(&m, "pool", "reset"),
        hang.requests() as f64,
        "a per-try timeout is retried under the default retry_on (reset)"
    );
}

#[tokio::test]
async fn the_route_timeout_bounds_all_attempts() {
    let a = hanging("a").await;
    let b = hanging("b").await;
    let proxy = Sidecar::start(config(
        &[(
            "/",
            "pool",
            json!({
                "timeout": "700ms",
                "retry_policy": {
                    "num_retries": 10,
                    "per_try_timeout": "200ms",
                    "retry_back_off": { "base_interval": "1ms" },
                },
            }),
        )],
        vec![pool("pool", &[&a, &b])],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let start = Instant::now();
    let reply = client.get("/").send().await;
    let took = start.elapsed();
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        matches!(
            reply.sidecar_error(),
            Some("upstream_timeout" | "upstream_per_try_timeout")
        ),
        "{reply:?}"
    );
    assert!(
        (Duration::from_millis(550)..Duration::from_millis(1200)).contains(&took),
        "took {took:?}; the route timeout is 700ms"
    );
    let attempts = a.requests() + b.requests();
    assert!(
        (3..=4).contains(&attempts),
        "{attempts} attempts of 200ms fit in 700ms"
    );
}

#[tokio::test]
async fn the_retry_budget_caps_attempts_when_every_replica_fails() {
    let replicas = [
        failing("a", 503).await,
        failing("b", 503).await,
        failing("c", 503).await,
    ];
    let mut c = pool("pool", &replicas.iter().collect::<Vec<_>>());
    c["retry_budget"] = json!({ "budget_percent": 20, "min_retries_per_second": 0 });
    let proxy = Sidecar::start(config(
        &[(
            "/",
            "pool",
            json!({
                "retry_policy": {
                    "retry_on": ["5xx"],
                    "num_retries": 3,
                    "retry_back_off": { "base_interval": "1ms" },
                },
            }),
        )],
        vec![c],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    const REQUESTS: u64 = 100;
    for _ in 0..REQUESTS {
        let reply = client.get("/").send().await;
        assert_eq!(reply.status, 503, "{reply:?}");
    }
    let attempts: u64 = replicas.iter().map(Upstream::requests).sum();
    assert!(
        attempts > REQUESTS,
        "some retries were allowed: {attempts} attempts"
    );
    assert!(
        attempts <= REQUESTS + REQUESTS / 5,
        "{attempts} attempts for {REQUESTS} requests: more than the 20% budget (without it: {})",
        REQUESTS * 4
    );
    let m = proxy.admin().metrics().await;
    assert!(
        m.one(
            "sidecar_retry_budget_exhausted_total",
            &[("cluster", "pool")]
        ) >= 50.0,
        "{}",
        m.text
    );
}

#[tokio::test]
async fn post_is_retried_only_when_the_route_opts_in() {
    let bad = failing("bad", 503).await;
    let good = upstream::http1().name("good").run().await;
    let policy = json!({ "retry_on": ["5xx"] });
    let proxy = Sidecar::start(config(
        &[
            ("/plain", "plain", json!({ "retry_policy": policy })),
            (
                "/opted",
                "opted",
                json!({ "retry_policy": { "retry_on": ["5xx"], "retry_non_idempotent": true } }),
            ),
        ],
        vec![pool("plain", &[&bad, &good]), pool("opted", &[&bad, &good])],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let reply = client
        .post("/plain")
        .body(body::full("order 1"))
        .send()
        .await;
    assert_eq!(reply.status, 503, "POST without opt-in: {reply:?}");
    assert_eq!((bad.requests(), good.requests()), (1, 0));

    let reply = client
        .post("/opted")
        .body(body::full("order 2"))
        .send()
        .await;
    assert_eq!(reply.status, 200, "POST with opt-in: {reply:?}");
    let echoed = reply.echoed();
    assert_eq!(echoed.upstream, "good");
    assert_eq!(echoed.body.len, 7, "the replayed body is whole");
    assert_eq!(echoed.header(ATTEMPT), Some("2"));
    assert_eq!((bad.requests(), good.requests()), (2, 1));
    assert_eq!(skipped(&proxy, "plain", "method").await, 1.0);
}

#[tokio::test]
async fn a_body_over_the_buffer_limit_is_streamed_once_and_never_retried() {
    let bad = failing("bad", 503).await;
    let good = upstream::http1().name("good").run().await;
    let policy =
        json!({ "retry_policy": { "retry_on": ["5xx"], "per_request_buffer_limit": "1KiB" } });
    let proxy = Sidecar::start(config(
        &[
            ("/small", "small", policy.clone()),
            ("/large", "large", policy),
        ],
        vec![pool("small", &[&bad, &good]), pool("large", &[&bad, &good])],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let reply = client
        .request(Method::PUT, "/small")
        .body(body::full(vec![b'x'; 1024]))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.echoed().body.len, 1024);
    assert_eq!((bad.requests(), good.requests()), (1, 1));

    // Streamed without a length, so the proxy finds out only by reading past the limit.
    let reply = client
        .request(Method::PUT, "/large")
        .body(body::then_trailers(
            body::full(vec![b'y'; 4096]),
            http::HeaderMap::new(),
        ))
        .send()
        .await;
    assert_eq!(reply.status, 503, "a large body is not retried: {reply:?}");
    assert_eq!((bad.requests(), good.requests()), (2, 1));
    assert_eq!(skipped(&proxy, "large", "body_too_large").await, 1.0);
}

#[tokio::test]
async fn retry_after_is_honoured_within_its_cap() {
    let busy = upstream::http1()
        .name("busy")
        .fallback(Reply::echo().status(503).header("retry-after", "1"))
        .run()
        .await;
    let good = upstream::http1().name("good").run().await;
    let policy = |cap: &str| json!({ "timeout": "5s", "retry_policy": { "retry_on": ["5xx"], "max_retry_after": cap } });
    let proxy = Sidecar::start(config(
        &[
            ("/wait", "wait", policy("2s")),
            ("/cap", "cap", policy("500ms")),
        ],
        vec![pool("wait", &[&busy, &good]), pool("cap", &[&busy, &good])],
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let start = Instant::now();
    let reply = client.get("/wait").send().await;
    let took = start.elapsed();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.upstream(), "good");
    assert!(
        (Duration::from_millis(950)..Duration::from_millis(1900)).contains(&took),
        "Retry-After: 1 within a 2s cap: waited {took:?}"
    );

    let start = Instant::now();
    let reply = client.get("/cap").send().await;
    let took = start.elapsed();
    assert_eq!(
        reply.status, 503,
        "over the cap, the 503 goes back as it is: {reply:?}"
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert_eq!(skipped(&proxy, "cap", "retry_after_too_long").await, 1.0);
}

#[tokio::test]
async fn max_requests_overflows_at_once_with_503() {
    let hang = hanging("hang").await;
    let mut c = pool("pool", &[&hang]);
    c["circuit_breakers"] = json!({ "max_requests": 2 });
    let proxy = Sidecar::start(config(
        &[("/", "pool", json!({ "timeout": "10s" }))],
        vec![c],
    ))
    .await;
    let addr = proxy.listener("in");
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::spawn(async move {
            let mut c = Client::http1(addr).await;
            c.get("/").try_send().await
        }));
    }
    e2e_tests::wait::eventually(
        "two requests at the upstream",
        Duration::from_secs(5),
        async || e2e_tests::wait::equal(hang.active(), 2),
    )
    .await;
    let view = proxy.admin().json("/clusters").await;
    let breakers = &view["clusters"][0]["circuit_breakers"];
    assert_eq!(breakers["max_requests"]["remaining"], 0, "{view}");
    assert_eq!(breakers["max_requests"]["max"], 2, "{view}");

    let start = Instant::now();
    let reply = Client::http1(addr).await.get("/").send().await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.sidecar_error(), Some("overflow"));
    assert!(reply.text().contains("max_requests"), "{reply:?}");
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(
        hang.requests(),
        2,
        "the overflowing request never reached the upstream"
    );

    let m = proxy.admin().metrics().await;
    assert_eq!(
        m.one(
            "sidecar_upstream_overflow_total",
            &[("cluster", "pool"), ("resource", "max_requests")]
        ),
        1.0
    );
    assert_eq!(
        m.one(
            "sidecar_circuit_breaker_remaining",
            &[("cluster", "pool"), ("resource", "max_requests")]
        ),
        0.0
    );
    for h in held {
        h.abort();
    }
}

#[tokio::test]
async fn an_application_asks_for_a_retry_with_a_header() {
    let asks = upstream::http1()
        .name("asks")
        .fallback(Reply::echo().header("x-retry-me", "yes"))
        .run()
        .await;
    let b = upstream::http1().name("b").run().await;
    let proxy = Sidecar::start(config(
        &[(
            "/",
            "pool",
            json!({ "retry_policy": {
                "retry_on": ["retriable-headers"],
                "retriable_headers": [{ "name": "x-retry-me", "exact": "yes" }],
            } }),
        )],
        vec![pool("pool", &[&asks, &b])],
    ))
    .await;
    let reply = Client::http1(proxy.listener("in"))
        .await
        .get("/")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.upstream(),
        "b",
        "the 200 asking for a retry was retried"
    );
    assert_eq!(reply.header("x-retry-me"), None);
    assert_eq!(asks.requests(), 1);
    let m = proxy.admin().metrics().await;
    assert_eq!(retries(&m, "pool", "retriable-headers"), 1.0);
}

#[tokio::test]
async fn retries_replay_the_body_to_http2_upstreams() {
    let bad = upstream::h2c()
        .name("bad")
        .fallback(Reply::echo().status(503))
        .run()
        .await;
    let good = upstream::h2c().name("good").run().await;
    let mut c = pool("pool", &[&bad, &good]);
    c["protocol"] = json!("http2");
    let proxy = Sidecar::start(config(
        &[(
            "/",
            "pool",
            json!({ "retry_policy": { "retry_on": ["5xx"] } }),
        )],
        vec![c],
    ))
    .await;
    let reply = Client::http1(proxy.listener("in"))
        .await
        .request(Method::PUT, "/doc")
        .body(body::full(vec![b'z'; 3000]))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let echoed = reply.echoed();
    assert_eq!(echoed.upstream, "good");
    assert_eq!(echoed.version, "HTTP/2.0");
    assert_eq!(echoed.body.len, 3000);
    assert_eq!(echoed.header(ATTEMPT), Some("2"));
    assert_eq!(bad.requests(), 1);
}
