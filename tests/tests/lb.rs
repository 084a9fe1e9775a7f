//! Load balancing over three replicas: each `lb_policy`'s distribution, endpoint weights,
//! `weighted_clusters` splits, and DNS discovery.

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply, Upstream};
use serde_json::{Value, json};

async fn replicas(names: &[&str]) -> Vec<Upstream> {
    let mut up = Vec::new();
    for n in names {
        up.push(upstream::http1().name(n).run().await);
    }
    up
}

/// Listener `in` sending everything to cluster `pool`, shaped by `cluster_fields`.
fn pool_config(pool: &[&Upstream], cluster_fields: Value) -> Value {
    let mut c = cluster("pool", pool.iter().map(|u| u.addr()));
    for (k, v) in cluster_fields
        .as_object()
        .expect("cluster fields are an object")
    {
        c[k] = v.clone();
    }
    json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "pool" }] }],
        "clusters": [c],
    })
}

/// Sends `n` sequential requests on one connection; counts answers per replica.
async fn distribution(proxy: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut client = Client::http1(proxy).await;
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let reply = client.get("/").send().await;
        assert_eq!(reply.status, 200, "{reply:?}");
        *counts.entry(reply.upstream().to_owned()).or_default() += 1;
    }
    counts
}

fn count(counts: &BTreeMap<String, usize>, name: &str) -> usize {
    counts.get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn round_robin_splits_exactly_evenly() {
    let up = replicas(&["a", "b", "c"]).await;
    let proxy = Sidecar::start(pool_config(
        &up.iter().collect::<Vec<_>>(),
        json!({ "lb_policy": "round_robin" }),
    ))
    .await;
    let counts = distribution(proxy.listener("in"), 30).await;
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)]),
        "round_robin over three equal replicas"
    );
}

#[tokio::test]
async fn round_robin_honours_endpoint_weights() {
    let up = replicas(&["a", "b", "c"]).await;
    let mut config = pool_config(&[], json!({ "lb_policy": "round_robin" }));
    config["clusters"][0]["endpoints"] = json!([
        { "address": up[0].addr().to_string(), "weight": 1 },
        { "address": up[1].addr().to_string(), "weight": 2 },
        { "address": up[2].addr().to_string(), "weight": 3 },
    ]);
    let proxy = Sidecar::start(config).await;
    // 20 whole rounds of 1 + 2 + 3.
    let counts = distribution(proxy.listener("in"), 120).await;
    for (name, want) in [("a", 20), ("b", 40), ("c", 60)] {
        let got = count(&counts, name);
        assert!(
            got.abs_diff(want) <= 2,
            "weights 1:2:3 over 120 requests: {name} got {got}, want {want}; all: {counts:?}"
        );
    }
}

#[tokio::test]
async fn random_spreads_roughly_evenly() {
    let up = replicas(&["a", "b", "c"]).await;
    let proxy = Sidecar::start(pool_config(
        &up.iter().collect::<Vec<_>>(),
        json!({ "lb_policy": "random" }),
    ))
    .await;
    let counts = distribution(proxy.listener("in"), 300).await;
    // Expected 100 each; the bounds are about 5 standard deviations wide.
    for name in ["a", "b", "c"] {
        let got = count(&counts, name);
        assert!(
            (60..=140).contains(&got),
            "random over 300: {name} got {got}; all: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_prefers_idle_replicas_over_a_slow_one() {
    let fast_a = upstream::http1().name("a").run().await;
    let fast_b = upstream::http1().name("b").run().await;
    let slow = upstream::http1()
        .name("slow")
        .fallback(Reply::echo().after(Duration::from_millis(400)))
        .run()
        .await;
    let proxy = Sidecar::start(pool_config(
        &[&fast_a, &fast_b, &slow],
        json!({ "lb_policy": "least_request" }),
    ))
    .await;

    const WORKERS: usize = 6;
    const PER_WORKER: usize = 15;
    let addr = proxy.listener("in");
    let workers = (0..WORKERS).map(|_| tokio::spawn(distribution(addr, PER_WORKER)));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for w in futures_util::future::join_all(workers).await {
        for (name, n) in w.expect("a worker finishes") {
            *counts.entry(name).or_default() += n;
        }
    }
    let total = WORKERS * PER_WORKER;
    // Round robin would give the slow replica a third; least_request sends it a request only
    // while it is no busier than the one it is compared with.
    let slow_share = count(&counts, "slow");
    assert!(
        slow_share * 6 <= total,
        "the slow replica got {slow_share} of {total} requests (more than a sixth): {counts:?}"
    );
    assert!(
        count(&counts, "a") > 0 && count(&counts, "b") > 0,
        "{counts:?}"
    );
}

#[tokio::test]
async fn ring_hash_sticks_per_header_value_and_spreads_across_values() {
    let up = replicas(&["a", "b", "c"]).await;
    let proxy = Sidecar::start(pool_config(
        &up.iter().collect::<Vec<_>>(),
        json!({ "lb_policy": "ring_hash", "hash_policy": { "header": "x-user" } }),
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let users: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let mut sticky: BTreeMap<&str, String> = BTreeMap::new();
    for round in 0..3 {
        for user in &users {
            let reply = client.get("/").header("x-user", user).send().await;
            assert_eq!(reply.status, 200, "{reply:?}");
            let got = reply.upstream().to_owned();
            let first = sticky.entry(user).or_insert_with(|| got.clone());
            assert_eq!(
                *first, got,
                "{user} moved from {first} to {got} in round {round}"
            );
        }
    }
    let mut per_replica: BTreeMap<&str, usize> = BTreeMap::new();
    for replica in sticky.values() {
        *per_replica.entry(replica).or_default() += 1;
    }
    assert_eq!(
        per_replica.len(),
        3,
        "60 users should land on all three replicas: {per_replica:?}"
    );
}

#[tokio::test]
async fn weighted_clusters_split_traffic_by_weight() {
    let stable = upstream::http1().name("stable").run().await;
    let canary = upstream::http1().name("canary").run().await;
    let proxy = Sidecar::start(json!({
        "listeners": [{
            "name": "in",
            "routes": [{
                "name": "split",
                "weighted_clusters": [
                    { "name": "stable", "weight": 3 },
                    { "name": "canary", "weight": 1 },
                ],
            }],
        }],
        "clusters": [cluster("stable", [stable.addr()]), cluster("canary", [canary.addr()])],
    }))
    .await;
    let counts = distribution(proxy.listener("in"), 400).await;
    let got = count(&counts, "canary");
    // Expected 100 of 400; the bounds are about 4.6 standard deviations wide.
    assert!(
        (60..=140).contains(&got),
        "canary weight 1 of 4 got {got} of 400: {counts:?}"
    );
    assert_eq!(got + count(&counts, "stable"), 400, "{counts:?}");
}

#[tokio::test]
async fn dns_discovery_resolves_localhost() {
    let replica = upstream::http1().name("by-name").run().await;
    // `localhost` may also resolve to ::1 elsewhere; answer there too, on the same port, when
    // this machine has IPv6 loopback.
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, replica.addr().port()));
    let _replica_v6 = upstream::http1()
        .name("by-name")
        .bind(v6)
        .try_run()
        .await
        .ok();
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "named" }] }],
        "clusters": [{
            "name": "named",
            "discovery": "dns",
            "dns_refresh_rate": "200ms",
            "endpoints": [format!("localhost:{}", replica.addr().port())],
        }],
    }))
    .await;
    let counts = distribution(proxy.listener("in"), 10).await;
    assert_eq!(count(&counts, "by-name"), 10, "{counts:?}");

    let clusters = proxy.admin().json("/clusters").await;
    let named = clusters["clusters"]
        .as_array()
        .expect("clusters is a list")
        .iter()
        .find(|c| c["name"] == "named")
        .unwrap_or_else(|| panic!("no cluster `named` in {clusters}"));
    assert_eq!(named["discovery"], "dns");
    let addresses: Vec<&str> = named["endpoints"]
        .as_array()
        .expect("endpoints is a list")
        .iter()
        .filter_map(|e| e["address"].as_str())
        .collect();
    assert!(
        addresses.contains(&replica.addr().to_string().as_str()),
        "localhost:{} should resolve to {}: {named}",
        replica.addr().port(),
        replica.addr()
    );
}
