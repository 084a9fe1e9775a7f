//! The error-rate breaker end to end, against a single-endpoint dependency: it opens on the
//! failure rate, answers at once with 503 `circuit_open` and `Retry-After` while open
//! (nothing reaches the upstream), lets probes through once `open_duration` has passed,
//! and closes when they succeed.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply};
use e2e_tests::wait::eventually;
use serde_json::json;
use tokio::time::Instant;

#[tokio::test]
async fn opens_on_failures_refuses_at_once_and_closes_after_probes() {
    let api = upstream::http1()
        .name("api")
        .fallback(Reply::echo().status(500))
        .run()
        .await;
    let addr = api.addr();
    let mut c = cluster("api", [addr]);
    c["error_rate_breaker"] = json!({
        "failure_rate_threshold": 50,
        "minimum_requests": 10,
        "open_duration": "1s",
        "half_open_requests": 2,
    });
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "api" }] }],
        "clusters": [c],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    for i in 0..10 {
        let reply = client.get("/").send().await;
        assert_eq!(reply.status, 500, "request {i} reaches the API: {reply:?}");
        assert_eq!(reply.sidecar_error(), None);
    }
    let state = |v: &serde_json::Value| v["clusters"][0]["error_rate_breaker"]["state"].clone();
    let view = proxy.admin().json("/clusters").await;
    assert_eq!(state(&view), "open", "{view}");

    let start = Instant::now();
    let reply = client.get("/").send().await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.sidecar_error(), Some("circuit_open"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(start.elapsed() < Duration::from_millis(100));
    assert_eq!(api.requests(), 10, "an open breaker sends nothing upstream");

    // The API recovers; after open_duration, two probes pass and the breaker closes.
    drop(api);
    // The old listener closes when its aborted task is next dropped by the runtime.
    let api = eventually(
        "the API's port to be free again",
        Duration::from_secs(5),
        async || upstream::http1().name("api").bind(addr).try_run().await,
    )
    .await;
    let reopened = eventually(
        "a request to pass again",
        Duration::from_secs(5),
        async || {
            let reply = client.get("/").send().await;
            if reply.status == 200 {
                Ok(Instant::now())
            } else {
                Err(reply)
            }
        },
    )
    .await;
    assert!(
        reopened - start >= Duration::from_millis(900),
        "probes only after open_duration"
    );
    let reply = client.get("/").send().await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let view = proxy.admin().json("/clusters").await;
    assert_eq!(state(&view), "closed", "{view}");
    assert_eq!(api.requests(), 2);

    let m = proxy.admin().metrics().await;
    for (to, n) in [("open", 1.0), ("half_open", 1.0), ("closed", 1.0)] {
        assert_eq!(
            m.one(
                "sidecar_error_rate_breaker_transitions_total",
                &[("cluster", "api"), ("state", to)]
            ),
            n,
            "transitions to {to}"
        );
    }
    assert_eq!(
        m.one(
            "sidecar_error_rate_breaker_state",
            &[("cluster", "api"), ("state", "closed")]
        ),
        1.0
    );
    assert!(
        m.sum(
            "sidecar_local_replies_total",
            &[("listener", "in"), ("reason", "circuit_open")]
        ) >= 1.0
    );
}
