//! Traffic management per route: fault injection (delay, abort, by share), request mirroring
//! (copies with a `-shadow` host, bodies under a limit, a hung shadow never slowing the
//! primary), and sticky weighted splits for canaries.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use e2e_tests::Sidecar;
use e2e_tests::body;
use e2e_tests::client::Client;
use e2e_tests::collector::Collector;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::eventually;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

async fn app(name: &str) -> Upstream {
    upstream::http1()
        .name(name)
        .fallback(Reply::echo())
        .run()
        .await
}

fn listener(routes: Value) -> Value {
    json!([{ "name": "in", "routes": routes }])
}

#[tokio::test]
async fn faults_delay_and_abort_their_share_of_requests() {
    let app = app("app").await;
    let proxy = Sidecar::start(json!({
        "listeners": listener(json!([
            { "name": "slow", "match": { "prefix": "/slow" }, "cluster": "app",
              "fault": { "delay": { "fixed_delay": "300ms", "percentage": 100 } } },
            { "name": "broken", "match": { "prefix": "/broken" }, "cluster": "app",
              "fault": { "abort": { "http_status": 503 } } },
            { "name": "flaky", "match": { "prefix": "/flaky" }, "cluster": "app",
              "fault": { "abort": { "http_status": 429, "percentage": 50 } } },
        ])),
        "clusters": [cluster("app", [app.addr()])],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let t = Instant::now();
    let reply = client.get("/slow").send().await;
    assert_eq!(reply.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    let before = app.requests();
    let reply = client.get("/broken").send().await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.sidecar_error(), Some("fault_abort"));
    assert_eq!(
        app.requests(),
        before,
        "an aborted request never reaches the app"
    );

    let n = 400;
    let mut aborted = 0;
    for _ in 0..n {
        match client.get("/flaky").send().await.status.as_u16() {
            429 => aborted += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (140..260).contains(&aborted),
        "{aborted} of {n} aborted at 50%"
    );

    let m = proxy.admin().metrics().await;
    let faults = |route, kind| {
        m.one(
            "sidecar_faults_injected_total",
            &[("route", route), ("kind", kind)],
        )
    };
    assert_eq!(faults("slow", "delay"), 1.0);
    assert_eq!(faults("broken", "abort"), 1.0);
    assert_eq!(faults("flaky", "abort"), f64::from(aborted));
    assert_eq!(
        m.sum("sidecar_local_replies_total", &[("reason", "fault_abort")]),
        f64::from(aborted + 1)
    );
}

#[tokio::test]
async fn mirrored_copies_carry_the_body_and_a_shadow_host() {
    let app = app("app").await;
    let shadow = Collector::start().await;
    let proxy = Sidecar::start(json!({
        "listeners": listener(json!([{
            "name": "orders", "cluster": "app",
            "request_mirror_policies": [{ "cluster": "shadow", "max_body": "1KiB" }],
        }])),
        "clusters": [cluster("app", [app.addr()]), cluster("shadow", [shadow.addr()])],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let reply = client
        .post("/orders?id=7")
        .host("orders.internal:8080")
        .header("x-trace-me", "yes")
        .body(body::full("a small order"))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.echoed().header("host"), Some("orders.internal:8080"));

    let copy = eventually("the mirrored copy", WAIT, async || {
        shadow.exports().into_iter().next().ok_or("none yet")
    })
    .await;
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.path, "/orders");
    assert_eq!(copy.header("host"), Some("orders.internal-shadow:8080"));
    assert_eq!(copy.header("x-trace-me"), Some("yes"));
    assert_eq!(copy.body.as_ref(), b"a small order");

    // Over the body limit: the primary gets the whole body, no copy is sent.
    let big = body::filler(64 * 1024);
    let reply = client
        .post("/big")
        .body(body::full(big.clone()))
        .send()
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echoed().body, body::digest(&big));

    eventually("mirror metrics", WAIT, async || {
        let m = proxy.admin().metrics().await;
        let get = |result| {
            m.one(
                "sidecar_mirror_requests_total",
                &[
                    ("route", "orders"),
                    ("cluster", "shadow"),
                    ("result", result),
                ],
            )
        };
        let seen = (get("success"), get("body_too_large"));
        if seen == (1.0, 1.0) {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    assert_eq!(shadow.exports().len(), 1);
}

#[tokio::test]
async fn a_hung_shadow_never_slows_the_primary() {
    let app = app("app").await;
    let hung = upstream::http1()
        .name("hung")
        .fallback(Reply::hang())
        .run()
        .await;
    let proxy = Sidecar::start(json!({
        "listeners": listener(json!([{
            "name": "r", "cluster": "app",
            "request_mirror_policies": [{
                "cluster": "hung", "max_in_flight": 10, "timeout": "30s",
            }],
        }])),
        "clusters": [cluster("app", [app.addr()]), cluster("hung", [hung.addr()])],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let mut slowest = Duration::ZERO;
    for i in 0..60 {
        let t = Instant::now();
        let reply = client.get(&format!("/p{i}")).send().await;
        assert_eq!(reply.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a primary request took {slowest:?} with the shadow hung"
    );
    let m = proxy.admin().metrics().await;
    let get = |result| {
        m.one(
            "sidecar_mirror_requests_total",
            &[("route", "r"), ("result", result)],
        )
    };
    assert_eq!(
        get("too_many_in_flight"),
        50.0,
        "10 copies in flight, the rest skipped"
    );
    assert_eq!(get("success"), 0.0);
}

#[tokio::test]
async fn mirroring_sends_its_share() {
    let app = app("app").await;
    let shadow = Collector::start().await;
    let proxy = Sidecar::start(json!({
        "listeners": listener(json!([{
            "name": "r", "cluster": "app",
            "request_mirror_policies": [{ "cluster": "shadow", "percentage": 25 }],
        }])),
        "clusters": [cluster("app", [app.addr()]), cluster("shadow", [shadow.addr()])],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let n = 400;
    for _ in 0..n {
        assert_eq!(client.get("/x").send().await.status, 200);
    }
    let m = proxy.admin().metrics().await;
    let mirrored = m.one(
        "sidecar_mirror_requests_total",
        &[("route", "r"), ("result", "success")],
    ) + m.one(
        "sidecar_mirror_requests_total",
        &[("route", "r"), ("result", "failure")],
    );
    let expected = eventually("every copy answered", WAIT, async || {
        let got = shadow.exports().len();
        if got as f64 >= mirrored {
            Ok(got)
        } else {
            Err(got)
        }
    })
    .await;
    assert!(
        (60..140).contains(&expected),
        "{expected} of {n} mirrored at 25%"
    );
}

#[tokio::test]
async fn a_sticky_split_keeps_each_client_on_one_side() {
    let stable = app("stable").await;
    let canary = app("canary").await;
    let proxy = Sidecar::start(json!({
        "listeners": listener(json!([{
            "name": "r",
            "weighted_clusters": [
                { "name": "stable", "weight": 50 },
                { "name": "canary", "weight": 50 },
            ],
            "hash_policy": { "header": "x-user" },
        }])),
        "clusters": [cluster("stable", [stable.addr()]), cluster("canary", [canary.addr()])],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let mut sides: HashMap<String, HashSet<String>> = HashMap::new();
    for user in 0..40 {
        for _ in 0..5 {
            let reply = client
                .get("/")
                .header("x-user", &format!("user-{user}"))
                .send()
                .await;
            sides
                .entry(format!("user-{user}"))
                .or_default()
                .insert(reply.upstream().to_owned());
        }
    }
    assert!(
        sides.values().all(|s| s.len() == 1),
        "a user moved between clusters: {sides:?}"
    );
    let on_canary = sides.values().filter(|s| s.contains("canary")).count();
    assert!(
        (8..32).contains(&on_canary),
        "{on_canary} of 40 users on the canary"
    );
}

#[test]
fn bad_traffic_settings_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        r#"
listeners:
  - name: in
    address: 127.0.0.1:1
    routes:
      - name: r
        cluster: app
        hash_policy: { header: x-user }
        fault: { abort: { http_status: 99, percentage: 150 } }
        request_mirror_policies: [{ cluster: nowhere, max_in_flight: 0 }]
clusters:
  - { name: app, endpoints: ["127.0.0.1:2"] }
"#,
    )
    .unwrap();
    let out = e2e_tests::process::cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(64), "{out:?}");
    for expected in [
        "listeners[0].routes[0].fault.abort.percentage: 150 is not a percentage between 0 and 100",
        "listeners[0].routes[0].fault.abort.http_status: 99 is not an HTTP status from 200 to 599",
        "listeners[0].routes[0].request_mirror_policies[0].cluster: unknown cluster \"nowhere\"",
        "listeners[0].routes[0].request_mirror_policies[0].max_in_flight: must be at least 1",
        "listeners[0].routes[0].hash_policy: only applies to weighted_clusters",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stderr
        );
    }
}
