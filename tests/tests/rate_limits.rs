//! Rate limits end to end: local token buckets keyed by a header and by the client address
//! (429 `local_rate_limited` with `Retry-After` and `RateLimit-*` headers), and a global limit
//! in a real `redis-server` shared by three sidecars, with both failure modes when Redis dies.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::proxy_config::cluster;
use e2e_tests::redis::Redis;
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::eventually;
use serde_json::{Value, json};

async fn app() -> Upstream {
    upstream::http1()
        .name("app")
        .fallback(Reply::echo())
        .run()
        .await
}

fn limited(app: &Upstream, rules: Value, service: Option<Value>) -> Value {
    let mut doc = json!({
        "listeners": [{ "name": "in", "routes": [{
            "name": "api", "cluster": "app", "rate_limits": rules,
        }]}],
        "clusters": [cluster("app", [app.addr()])],
    });
    if let Some(s) = service {
        doc["rate_limit_service"] = s;
    }
    doc
}

#[tokio::test]
async fn a_local_limit_per_header_value() {
    let app = app().await;
    let proxy = Sidecar::start(limited(
        &app,
        json!([{ "name": "per-user", "key": { "header": "x-user" }, "requests": 5, "per": "1m" }]),
        None,
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let mut remaining = Vec::new();
    for _ in 0..5 {
        let reply = client.get("/").header("x-user", "alice").send().await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-limit"), Some("5"));
        remaining.push(reply.header("ratelimit-remaining").unwrap().to_owned());
    }
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);

    let before = app.requests();
    let reply = client.get("/").header("x-user", "alice").send().await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.sidecar_error(), Some("local_rate_limited"));
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=12).contains(&retry_after),
        "one token every 12 s: {retry_after}"
    );
    assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
    assert_eq!(
        app.requests(),
        before,
        "a limited request never reaches the app"
    );

    // Another value has its own bucket; a request without the header is not limited.
    assert_eq!(
        client.get("/").header("x-user", "bob").send().await.status,
        200
    );
    for _ in 0..10 {
        let reply = client.get("/").send().await;
        assert_eq!(reply.status, 200);
        assert!(reply.header("ratelimit-limit").is_none());
    }

    let m = proxy.admin().metrics().await;
    let get = |result| {
        m.one(
            "sidecar_rate_limit_decisions_total",
            &[("route", "api"), ("rule", "per-user"), ("result", result)],
        )
    };
    assert_eq!((get("allowed"), get("limited")), (6.0, 1.0));
    assert_eq!(
        m.sum(
            "sidecar_local_replies_total",
            &[("reason", "local_rate_limited")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_local_limit_per_client_address_with_a_burst() {
    let app = app().await;
    let proxy = Sidecar::start(limited(
        &app,
        json!([{ "name": "per-ip", "key": { "remote_address": true },
                 "requests": 2, "per": "1s", "burst": 3 }]),
        None,
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(client.get("/").send().await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200, 429], "a burst of 3, then limited");
    // The bucket refills at 2 per second.
    eventually(
        "a token back",
        Duration::from_secs(3),
        async || match client.get("/").send().await.status.as_u16() {
            200 => Ok(()),
            s => Err(s),
        },
    )
    .await;
}

#[tokio::test]
async fn three_sidecars_share_one_global_limit_in_redis() {
    let mut redis = Redis::start().await;
    let app = app().await;
    let rules = json!([{ "name": "shared", "requests": 30, "per": "30s", "global": true }]);
    let service = |mode: &str| json!({ "redis": redis.url(), "timeout": "200ms", "failure_mode": mode, "key_prefix": "e2e" });
    let mut proxies = Vec::new();
    for mode in ["allow", "allow", "deny"] {
        proxies.push(Sidecar::start(limited(&app, rules.clone(), Some(service(mode)))).await);
    }
    let mut clients = Vec::new();
    for p in &proxies {
        clients.push(Client::http1(p.listener("in")).await);
    }
    // Wait until each sidecar has connected to Redis (the first counted request is allowed).
    for c in clients.iter_mut() {
        eventually(
            "the sidecar to reach Redis",
            Duration::from_secs(10),
            async || {
                let reply = c.get("/warm").send().await;
                match reply.header("ratelimit-limit") {
                    Some(_) => Ok(()),
                    None => Err(reply.status),
                }
            },
        )
        .await;
    }
    let mut ok = 3;
    let mut limited = 0;
    for i in 0..90 {
        let reply = clients[i % 3].get("/").send().await;
        match reply.status.as_u16() {
            200 => ok += 1,
            429 => {
                assert_eq!(reply.sidecar_error(), Some("rate_limited"));
                assert!(reply.header("retry-after").is_some());
                limited += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 30, "exactly the shared limit across three replicas");
    assert_eq!(limited, 63);
    let key = redis.command(&["GET", "e2e:in:api:shared:"]).await.unwrap();
    assert!(key.contains("93"), "the count lives in Redis: {key:?}");

    // Redis gone: the fail-open sidecars allow, the fail-closed one refuses with 503.
    redis.kill();
    let reply = clients[0].get("/").send().await;
    assert_eq!(reply.status, 200, "fail open");
    let reply = clients[2].get("/").send().await;
    assert_eq!(reply.status, 503, "fail closed");
    assert_eq!(reply.sidecar_error(), Some("rate_limit_unavailable"));
    let m = proxies[0].admin().metrics().await;
    assert!(m.one("sidecar_rate_limit_redis_errors_total", &[]) >= 1.0);
}
