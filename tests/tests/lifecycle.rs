//! The process over time: hot reload (SIGHUP, file change, ConfigMap symlink swap) without
//! dropping a request, rejected reloads that leave the old config serving, and draining on
//! SIGTERM, SIGINT, `POST /drain` and `POST /shutdown`.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::load;
use e2e_tests::process::Signal;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::{consistently, equal, eventually};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Routes `/v1` (and `/v2` when `with_v2`) to the upstream; anything else is `no_route`.
fn versioned(upstream: &Upstream, with_v2: bool, runtime: Value) -> Value {
    let mut routes =
        vec![json!({ "name": "v1", "match": { "prefix": "/v1" }, "cluster": "backend" })];
    if with_v2 {
        routes.push(json!({ "name": "v2", "match": { "prefix": "/v2" }, "cluster": "backend" }));
    }
    json!({
        "runtime": runtime,
        "listeners": [{ "name": "in", "routes": routes }],
        "clusters": [cluster("backend", [upstream.addr()])],
    })
}

async fn status_of(proxy: &Sidecar, path: &str) -> u16 {
    Client::http1(proxy.listener("in"))
        .await
        .get(path)
        .send()
        .await
        .status
        .as_u16()
}

async fn until_route_serves(proxy: &Sidecar, path: &str) {
    eventually(
        &format!("{path} to be routed"),
        Duration::from_secs(10),
        async || equal(status_of(proxy, path).await, 200),
    )
    .await;
}

async fn reloads(proxy: &Sidecar, result: &str) -> f64 {
    proxy
        .admin()
        .metrics()
        .await
        .sum("sidecar_config_reloads_total", &[("result", result)])
}

/// Requests the load loop sends before a change and after it has applied.
const LOAD_AROUND_CHANGE: u64 = 20;

/// Starts a bounded load on `/v1` and returns once it has been served for a while, so the
/// change a test makes next lands in the middle of it.
async fn steady_load_on_v1(proxy: &Sidecar) -> load::Load {
    let load = load::start(proxy.listener("in"), "/v1", 5_000, Duration::from_secs(20));
    until_route_serves(proxy, "/v1").await;
    load.run_for(LOAD_AROUND_CHANGE).await;
    load
}

/// Lets the load run a while past the change, stops it, and checks nothing failed.
async fn assert_no_failures(load: load::Load) {
    load.run_for(LOAD_AROUND_CHANGE).await;
    let report = load.stop().await;
    assert!(
        report.sent >= 2 * LOAD_AROUND_CHANGE,
        "the load loop barely ran: {report:?}"
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed around the change: {:#?}",
        report.failures.len(),
        report.sent,
        report.failures
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_without_failing_requests() {
    let backend = upstream::http1().run().await;
    let mut proxy =
        Sidecar::start(versioned(&backend, false, json!({ "watch_config": false }))).await;
    let load = steady_load_on_v1(&proxy).await;
    assert_eq!(status_of(&proxy, "/v2").await, 404);

    proxy.rewrite_config(versioned(&backend, true, json!({ "watch_config": false })));
    // With watching off, the new file waits for the signal.
    consistently(
        "the old config to keep running until SIGHUP",
        Duration::from_millis(500),
        async || equal(status_of(&proxy, "/v2").await, 404),
    )
    .await;
    proxy.signal(Signal::SIGHUP);
    until_route_serves(&proxy, "/v2").await;

    assert_no_failures(load).await;
    assert_eq!(reloads(&proxy, "success").await, 1.0);
    assert_eq!(reloads(&proxy, "failure").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_reloaded_without_failing_requests() {
    let backend = upstream::http1().run().await;
    let mut proxy = Sidecar::start(versioned(&backend, false, json!({}))).await;
    let load = steady_load_on_v1(&proxy).await;
    assert_eq!(status_of(&proxy, "/v2").await, 404);

    proxy.rewrite_config(versioned(&backend, true, json!({})));
    until_route_serves(&proxy, "/v2").await;

    assert_no_failures(load).await;
    assert!(reloads(&proxy, "success").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_symlink_swap_is_reloaded_every_time() {
    let backend = upstream::http1().run().await;
    let mut proxy = Sidecar::builder(versioned(&backend, false, json!({})))
        .configmap_layout()
        .start()
        .await;
    let load = steady_load_on_v1(&proxy).await;

    proxy.rewrite_config(versioned(&backend, true, json!({})));
    until_route_serves(&proxy, "/v2").await;
    // A watcher on the old file's inode would miss every swap after the first.
    proxy.rewrite_config(versioned(&backend, false, json!({})));
    eventually(
        "/v2 to be gone after the second swap",
        Duration::from_secs(10),
        async || equal(status_of(&proxy, "/v2").await, 404),
    )
    .await;

    assert_no_failures(load).await;
    assert!(reloads(&proxy, "success").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_new_config_is_rejected_and_the_old_one_keeps_serving() {
    let backend = upstream::http1().run().await;
    let mut proxy = Sidecar::start(versioned(&backend, false, json!({}))).await;
    let load = steady_load_on_v1(&proxy).await;

    // Broken YAML, picked up by the watcher.
    proxy.rewrite_config_text("listeners: [");
    eventually(
        "the broken file to be rejected",
        Duration::from_secs(10),
        async || match reloads(&proxy, "failure").await {
            n if n >= 1.0 => Ok(()),
            n => Err(n),
        },
    )
    .await;
    assert!(
        proxy.stderr().contains("invalid YAML"),
        "the rejection says why in the log"
    );

    // Valid YAML with a dangling reference, delivered by SIGHUP.
    let before = reloads(&proxy, "failure").await;
    let mut dangling = versioned(&backend, true, json!({}));
    dangling["listeners"][0]["routes"][1]["cluster"] = json!("missing");
    proxy.rewrite_config(dangling);
    proxy.signal(Signal::SIGHUP);
    eventually(
        "the dangling reference to be rejected",
        Duration::from_secs(10),
        async || match reloads(&proxy, "failure").await {
            n if n > before => Ok(()),
            n => Err(n),
        },
    )
    .await;
    assert!(
        proxy.stderr().contains("unknown cluster \"missing\""),
        "the rejection names the problem in the log"
    );
    assert_eq!(
        status_of(&proxy, "/v2").await,
        404,
        "the rejected routes must not apply"
    );
    assert_eq!(
        proxy.try_exit(),
        None,
        "a rejected reload must not stop the proxy"
    );

    // A good file afterwards still applies.
    proxy.rewrite_config(versioned(&backend, true, json!({})));
    until_route_serves(&proxy, "/v2").await;
    assert_no_failures(load).await;
}

async fn until_draining(proxy: &Sidecar, within: Duration) {
    eventually(
        "/ready to answer 503 draining",
        within,
        async || match proxy.admin().ready_state().await {
            Ok((503, body)) if body == "draining" => Ok(()),
            other => Err(other),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    const SLOW: Duration = Duration::from_secs(3);
    const IN_FLIGHT: usize = 4;
    let backend = upstream::http1()
        .route("/fast", Reply::echo())
        .fallback(Reply::echo().after(SLOW))
        .run()
        .await;
    let mut proxy = Sidecar::start(json!({
        "runtime": { "drain_grace": "1s", "drain_deadline": "10s" },
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "backend" }] }],
        "clusters": [cluster("backend", [backend.addr()])],
    }))
    .await;
    let addr = proxy.listener("in");
    let slow = (0..IN_FLIGHT).map(|i| {
        tokio::spawn(async move {
            Client::http1(addr)
                .await
                .get(&format!("/slow/{i}"))
                .send()
                .await
        })
    });
    let slow: Vec<_> = slow.collect();
    eventually(
        "every slow request to reach the upstream",
        Duration::from_secs(5),
        async || equal(backend.active(), IN_FLIGHT as u64),
    )
    .await;

    let signalled = Instant::now();
    proxy.signal(Signal::SIGTERM);
    until_draining(&proxy, Duration::from_millis(500)).await;
    // During the grace period new requests are still served ...
    assert_eq!(
        status_of(&proxy, "/fast").await,
        200,
        "requests during drain_grace are served"
    );
    // ... after it, new connections are no longer accepted, while the slow ones go on.
    eventually(
        "the listener to stop accepting",
        Duration::from_millis(2500),
        async || match Client::try_http1(addr).await {
            Err(_) => Ok(()),
            Ok(mut c) => match c.get("/fast").try_send().await {
                Err(_) => Ok(()),
                Ok(r) => Err(format!("still served: {}", r.status)),
            },
        },
    )
    .await;
    assert!(
        signalled.elapsed() < SLOW,
        "the check ran while slow requests were in flight"
    );

    for (i, handle) in slow.into_iter().enumerate() {
        let reply = handle.await.expect("the request task finishes");
        assert_eq!(
            reply.status, 200,
            "in-flight request {i} must complete: {reply:?}"
        );
    }
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "a drained sidecar exits 0: {status}"
    );
}

// The grace period is the window in which /ready answers 503 before the process exits: it
// is wide here so a busy machine cannot make the test miss it.
#[tokio::test]
async fn sigint_drains_like_sigterm() {
    let backend = upstream::http1().run().await;
    let mut proxy = Sidecar::start(versioned(
        &backend,
        false,
        json!({ "drain_grace": "2s", "drain_deadline": "5s" }),
    ))
    .await;
    proxy.signal(Signal::SIGINT);
    until_draining(&proxy, Duration::from_millis(1500)).await;
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn post_drain_drains_like_sigterm() {
    let backend = upstream::http1().run().await;
    let mut proxy = Sidecar::start(versioned(
        &backend,
        false,
        json!({ "drain_grace": "2s", "drain_deadline": "5s" }),
    ))
    .await;
    let reply = proxy.admin().post("/drain").await;
    assert!(reply.status.is_success(), "POST /drain: {reply:?}");
    until_draining(&proxy, Duration::from_millis(1500)).await;
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Starts a request to `path` and returns once the upstream holds it.
async fn in_flight(
    proxy: &Sidecar,
    backend: &Upstream,
    path: &'static str,
) -> tokio::task::JoinHandle<Result<e2e_tests::client::Reply, e2e_tests::client::ClientError>> {
    let addr = proxy.listener("in");
    let request = tokio::spawn(async move { Client::http1(addr).await.get(path).try_send().await });
    eventually(
        &format!("{path} to reach the upstream"),
        Duration::from_secs(5),
        async || equal(backend.active(), 1),
    )
    .await;
    request
}

#[tokio::test]
async fn post_shutdown_skips_the_grace_period_waits_for_in_flight_and_exits_0() {
    let backend = upstream::http1()
        .route("/v1/slow", Reply::echo().after(Duration::from_secs(1)))
        .run()
        .await;
    // A grace period longer than the test allows: only skipping it passes.
    let mut proxy = Sidecar::start(versioned(
        &backend,
        false,
        json!({ "drain_grace": "60s", "drain_deadline": "5s" }),
    ))
    .await;
    let in_flight = in_flight(&proxy, &backend, "/v1/slow").await;

    let reply = proxy.admin().post("/shutdown").await;
    assert!(reply.status.is_success(), "POST /shutdown: {reply:?}");
    let slow = in_flight
        .await
        .expect("the request task finishes")
        .expect("the in-flight request gets a response");
    assert_eq!(
        slow.status, 200,
        "the in-flight request completes: {slow:?}"
    );
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{status}");
}

#[tokio::test]
async fn drain_deadline_bounds_the_wait_for_requests_that_never_finish() {
    let backend = upstream::http1()
        .route("/v1/hang", Reply::hang())
        .run()
        .await;
    let mut proxy = Sidecar::start(versioned(
        &backend,
        false,
        json!({ "drain_grace": "200ms", "drain_deadline": "1s" }),
    ))
    .await;
    let stuck = in_flight(&proxy, &backend, "/v1/hang").await;

    let signalled = Instant::now();
    proxy.signal(Signal::SIGTERM);
    let status = proxy.exited(Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        took >= Duration::from_millis(1000),
        "exited after {took:?}, before drain_grace + drain_deadline (1.2s) had passed"
    );
    assert!(
        stuck.await.expect("the request task finishes").is_err(),
        "a request cut off at the deadline cannot have completed"
    );
}

#[tokio::test]
async fn a_reload_changes_drain_settings_but_keeps_start_only_ones() {
    let backend = upstream::http1().run().await;
    let start = json!({ "watch_config": false, "worker_threads": 2, "drain_grace": "30s", "drain_deadline": "5s" });
    let mut proxy = Sidecar::start(versioned(&backend, false, start)).await;
    let next = json!({ "watch_config": false, "worker_threads": 3, "drain_grace": "100ms", "drain_deadline": "5s" });
    proxy.rewrite_config(versioned(&backend, true, next));
    proxy.signal(Signal::SIGHUP);
    until_route_serves(&proxy, "/v2").await;

    // /config_dump shows what runs: the thread count needs a restart, the grace period not.
    let dump = proxy.admin().json("/config_dump").await;
    assert_eq!(dump["runtime"]["worker_threads"], 2, "{dump}");
    assert_eq!(dump["runtime"]["drain_grace"], "100ms", "{dump}");

    // The drain uses the reloaded 100ms grace, not the 30s it started with.
    proxy.signal(Signal::SIGTERM);
    let status = proxy.exited(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{status}");
}

/// A reload (and the sidecar's own read of its file that comes with it) must not swallow
/// the admin API's stop: `POST /shutdown` after a hot reload still ends the process, and the
/// file is not read over and over once the reload is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_still_works_after_a_hot_reload() {
    let upstream = upstream::http1().fallback(Reply::echo()).run().await;
    let runtime = json!({ "drain_grace": "0s" });
    let mut proxy = Sidecar::start(versioned(&upstream, false, runtime.clone())).await;
    proxy.rewrite_config(versioned(&upstream, true, runtime));
    eventually("the reload", Duration::from_secs(10), async || {
        equal(reloads(&proxy, "success").await, 1.0)
    })
    .await;
    // No reload follows from the reload's own reads of the file.
    consistently("one reload only", Duration::from_millis(500), async || {
        equal(reloads(&proxy, "success").await, 1.0)
    })
    .await;
    let reply = proxy.admin().post("/shutdown").await;
    assert_eq!(reply.status.as_u16(), 200);
    let status = proxy.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}
