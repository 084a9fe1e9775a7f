//! Active health checks end to end: an HTTP check with expected statuses takes a replica out
//! of load balancing, a TCP check finds a dead one, and `healthy_panic_threshold` decides
//! what happens when no endpoint is healthy: fail fast, or try them anyway.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::ports;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply};
use e2e_tests::wait::eventually;
use serde_json::{Value, json};

fn checks(http: Option<&str>) -> Value {
    let mut hc = json!({
        "interval": "100ms",
        "timeout": "100ms",
        "unhealthy_threshold": 2,
        "healthy_threshold": 1,
    });
    if let Some(path) = http {
        hc["http_health_check"] = json!({ "path": path, "expected_statuses": [200] });
    }
    hc
}

async fn health_of(proxy: &Sidecar, cluster: &str) -> Vec<Value> {
    let view = proxy.admin().json("/clusters").await;
    view["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|c| c["name"] == cluster)
        .expect("the cluster is listed")["endpoints"]
        .as_array()
        .expect("endpoints")
        .clone()
}

#[tokio::test]
async fn a_replica_failing_its_http_check_takes_no_traffic() {
    let sick = upstream::http1()
        .name("sick")
        .route("/healthz", Reply::echo().status(503))
        .run()
        .await;
    let well = upstream::http1().name("well").run().await;
    let mut pool = cluster("pool", [sick.addr(), well.addr()]);
    pool["health_checks"] = checks(Some("/healthz"));
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "pool" }] }],
        "clusters": [pool],
    }))
    .await;
    eventually(
        "sick to fail its checks",
        Duration::from_secs(5),
        async || {
            let eps = health_of(&proxy, "pool").await;
            if eps[0]["health_check"] == "failing" && eps[0]["healthy"] == false {
                Ok(())
            } else {
                Err(eps)
            }
        },
    )
    .await;
    assert_eq!(
        health_of(&proxy, "pool").await[1]["health_check"],
        "passing"
    );
    let mut client = Client::http1(proxy.listener("in")).await;
    for i in 0..20 {
        let reply = client.get("/").send().await;
        assert_eq!(reply.status, 200, "request {i}: {reply:?}");
        assert_eq!(reply.upstream(), "well", "request {i}");
    }
    let m = proxy.admin().metrics().await;
    assert!(
        m.one(
            "sidecar_health_checks_total",
            &[("cluster", "pool"), ("result", "failure")]
        ) >= 2.0
    );
}

#[tokio::test]
async fn with_no_healthy_endpoint_the_panic_threshold_decides() {
    let dead = ports::refusing();
    let mut strict = cluster("strict", [dead.addr()]);
    strict["health_checks"] = checks(None);
    strict["healthy_panic_threshold"] = json!(0);
    let mut panicky = cluster("panicky", [dead.addr()]);
    panicky["health_checks"] = checks(None);
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [
            { "name": "strict", "match": { "prefix": "/strict" }, "cluster": "strict" },
            { "name": "panicky", "match": { "prefix": "/panicky" }, "cluster": "panicky" },
        ] }],
        "clusters": [strict, panicky],
    }))
    .await;
    for name in ["strict", "panicky"] {
        eventually(
            &format!("{name}'s endpoint to fail its TCP checks"),
            Duration::from_secs(5),
            async || {
                let eps = health_of(&proxy, name).await;
                if eps[0]["healthy"] == false {
                    Ok(())
                } else {
                    Err(eps)
                }
            },
        )
        .await;
    }
    let mut client = Client::http1(proxy.listener("in")).await;
    let reply = client.get("/strict").send().await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.sidecar_error(), Some("no_healthy_upstream"));
    let reply = client.get("/panicky").send().await;
    assert_eq!(
        reply.status, 502,
        "panic mode tries the endpoint anyway: {reply:?}"
    );
    assert_eq!(reply.sidecar_error(), Some("upstream_connect_failed"));
    let clusters = proxy.admin().json("/clusters").await;
    let panic_mode = |name: &str| {
        clusters["clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .map(|c| c["panic_mode"].clone())
    };
    assert_eq!(panic_mode("panicky"), Some(json!(true)), "{clusters}");
    assert_eq!(panic_mode("strict"), Some(json!(false)), "{clusters}");
}

#[tokio::test]
async fn an_http2_cluster_is_checked_over_http2() {
    let h2 = upstream::h2c().name("h2").run().await;
    let mut pool = cluster("pool", [h2.addr()]);
    pool["protocol"] = json!("http2");
    pool["health_checks"] = checks(Some("/healthz"));
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "pool" }] }],
        "clusters": [pool],
    }))
    .await;
    eventually("three passed checks", Duration::from_secs(5), async || {
        let m = proxy.admin().metrics().await;
        let passed = m.sum(
            "sidecar_health_checks_total",
            &[("cluster", "pool"), ("result", "success")],
        );
        if passed >= 3.0 { Ok(()) } else { Err(m.text) }
    })
    .await;
    let m = proxy.admin().metrics().await;
    assert_eq!(
        m.sum(
            "sidecar_health_checks_total",
            &[("cluster", "pool"), ("result", "failure")]
        ),
        0.0,
        "an h2c-only upstream answers checks made in its protocol"
    );
    assert_eq!(
        health_of(&proxy, "pool").await[0]["health_check"],
        "passing"
    );
}
