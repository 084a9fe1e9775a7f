//! The admin API: health endpoints, the JSON views of clusters, listeners and config, method and
//! path errors, and the metrics page (valid for `promtool`, and counting exactly what was sent).

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::metrics::promtool_check;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Upstream, tcp};
use e2e_tests::wait::eventually;
use http::Method;
use serde_json::{Value, json};

/// An HTTP listener with one timed route and a TCP listener, so every view has something in it.
async fn proxy(backend: &Upstream, tcp_echo: &tcp::TcpUpstream) -> Sidecar {
    Sidecar::start(json!({
        "listeners": [
            {
                "name": "in",
                "routes": [{ "name": "all", "cluster": "backend", "timeout": "250ms" }],
            },
            { "name": "raw", "protocol": "tcp", "cluster": "echo" },
        ],
        "clusters": [
            cluster("backend", [backend.addr()]),
            cluster("echo", [tcp_echo.addr()]),
        ],
    }))
    .await
}

#[tokio::test]
async fn live_and_ready() {
    let backend = upstream::http1().run().await;
    let echo = tcp::echo().await;
    let proxy = proxy(&backend, &echo).await;
    let admin = proxy.admin();
    let live = admin.get("/live").await;
    assert_eq!((live.status.as_u16(), live.text().trim()), (200, "live"));
    let ready = admin.get("/ready").await;
    assert_eq!((ready.status.as_u16(), ready.text().trim()), (200, "ready"));
}

#[tokio::test]
async fn clusters_view_shows_endpoints_and_their_counters() {
    let backend = upstream::http1().run().await;
    let echo = tcp::echo().await;
    let proxy = proxy(&backend, &echo).await;
    let mut client = Client::http1(proxy.listener("in")).await;
    for _ in 0..3 {
        assert_eq!(client.get("/").send().await.status, 200);
    }

    let view = proxy.admin().json("/clusters").await;
    let clusters = view["clusters"]
        .as_array()
        .unwrap_or_else(|| panic!("{view}"));
    let names: Vec<&str> = clusters.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["backend", "echo"], "{view}");
    let c = &clusters[0];
    assert_eq!(c["discovery"], "static", "{c}");
    assert_eq!(c["lb_policy"], "round_robin", "{c}");
    assert_eq!(c["protocol"], "http1", "{c}");
    let endpoints = c["endpoints"].as_array().unwrap_or_else(|| panic!("{c}"));
    assert_eq!(endpoints.len(), 1, "{c}");
    let e = &endpoints[0];
    assert_eq!(e["address"], backend.addr().to_string(), "{e}");
    assert_eq!(e["weight"], 1, "{e}");
    assert_eq!(e["healthy"], true, "{e}");
    assert_eq!(e["active_requests"], 0, "{e}");
    assert_eq!(e["requests_total"], 3, "{e}");
    assert_eq!(e["connect_failures_total"], 0, "{e}");
    assert!(
        e["idle_connections"].is_u64(),
        "idle_connections is a count: {e}"
    );
}

#[tokio::test]
async fn listeners_view_shows_routes_and_tcp_clusters() {
    let backend = upstream::http1().run().await;
    let echo = tcp::echo().await;
    let proxy = proxy(&backend, &echo).await;
    let view = proxy.admin().json("/listeners").await;
    let listeners = view["listeners"]
        .as_array()
        .unwrap_or_else(|| panic!("{view}"));
    let find = |name: &str| -> &Value {
        listeners
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no listener {name} in {view}"))
    };
    let http = find("in");
    assert_eq!(http["address"], proxy.listener("in").to_string(), "{http}");
    assert_eq!(http["protocol"], "auto", "{http}");
    assert_eq!(http["routes"], json!(["all"]), "{http}");
    assert!(
        http["cluster"].is_null(),
        "an HTTP listener has no cluster: {http}"
    );
    let raw = find("raw");
    assert_eq!(raw["address"], proxy.listener("raw").to_string(), "{raw}");
    assert_eq!(raw["protocol"], "tcp", "{raw}");
    assert_eq!(raw["cluster"], "echo", "{raw}");
    assert!(
        raw["routes"].as_array().is_none_or(Vec::is_empty),
        "a TCP listener has no routes: {raw}"
    );
}

#[tokio::test]
async fn config_dump_is_the_running_config() {
    let backend = upstream::http1().run().await;
    let echo = tcp::echo().await;
    let proxy = proxy(&backend, &echo).await;
    let dump = proxy.admin().json("/config_dump").await;
    assert_eq!(
        dump["admin"]["address"],
        proxy.admin().addr().to_string(),
        "{dump}"
    );
    assert_eq!(dump["listeners"][0]["name"], "in", "{dump}");
    assert_eq!(
        dump["listeners"][0]["address"],
        proxy.listener("in").to_string(),
        "{dump}"
    );
    let route = &dump["listeners"][0]["routes"][0];
    assert_eq!(route["name"], "all", "{dump}");
    assert_eq!(route["cluster"], "backend", "{dump}");
    assert_eq!(
        route["timeout"], "250ms",
        "durations keep their human units: {dump}"
    );
    assert_eq!(dump["listeners"][1]["protocol"], "tcp", "{dump}");
    let endpoint = &dump["clusters"][0]["endpoints"][0];
    let address = endpoint.as_str().or_else(|| endpoint["address"].as_str());
    assert_eq!(address, Some(backend.addr().to_string().as_str()), "{dump}");
    assert_eq!(
        dump["runtime"]["drain_grace"], "5s",
        "defaults are filled in: {dump}"
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let backend = upstream::http1().run().await;
    let echo = tcp::echo().await;
    let proxy = proxy(&backend, &echo).await;
    let admin = proxy.admin();
    assert_eq!(admin.get("/nope").await.status, 404);
    assert_eq!(admin.get("/clusters/extra").await.status, 404);
    for (method, path) in [
        (Method::POST, "/live"),
        (Method::POST, "/ready"),
        (Method::DELETE, "/metrics"),
        (Method::PUT, "/config_dump"),
        (Method::GET, "/drain"),
        (Method::GET, "/shutdown"),
    ] {
        let reply = admin.call(method.clone(), path).await;
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
    }
    assert!(
        proxy.admin().ready().await.is_ok(),
        "GET /drain and /shutdown must not drain"
    );
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_exactly_what_was_sent() {
    let backend = upstream::http1()
        .route("/app/teapot", upstream::Reply::echo().status(418))
        .run()
        .await;
    let proxy = Sidecar::start(json!({
        "listeners": [{
            "name": "in",
            "routes": [{ "name": "app", "match": { "prefix": "/app/" }, "cluster": "backend" }],
        }],
        "clusters": [cluster("backend", [backend.addr()])],
    }))
    .await;
    let admin = proxy.admin();
    let before = admin.metrics().await;

    const OK: usize = 7;
    const TEAPOTS: usize = 2;
    const UNROUTED: usize = 3;
    let mut client = Client::http1(proxy.listener("in")).await;
    for _ in 0..OK {
        assert_eq!(client.get("/app/x").send().await.status, 200);
    }
    for _ in 0..TEAPOTS {
        assert_eq!(client.get("/app/teapot").send().await.status, 418);
    }
    for _ in 0..UNROUTED {
        assert_eq!(client.get("/elsewhere").send().await.status, 404);
    }
    // Gauges settle once the last response has been read to its end.
    let after = eventually("no request in flight", Duration::from_secs(5), async || {
        let m = admin.metrics().await;
        match m.sum("sidecar_downstream_active_requests", &[("listener", "in")]) {
            0.0 => Ok(m),
            n => Err(n),
        }
    })
    .await;

    let output = promtool_check(&after.text);
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n---- metrics ----\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        after.text
    );
    let alias = admin.get("/stats/prometheus").await;
    assert_eq!(alias.status, 200);
    assert!(
        alias.text().contains("sidecar_requests_total"),
        "/stats/prometheus serves the metrics page"
    );

    let moved =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let app = [("listener", "in"), ("route", "app"), ("cluster", "backend")];
    let unrouted = [("listener", "in"), ("route", ""), ("cluster", "")];
    let with_class = |base: &[(&'static str, &'static str)], class: &'static str| {
        let mut l = base.to_vec();
        l.push(("code_class", class));
        l
    };
    assert_eq!(
        moved("sidecar_requests_total", &with_class(&app, "2xx")),
        OK as f64
    );
    assert_eq!(
        moved("sidecar_requests_total", &with_class(&app, "4xx")),
        TEAPOTS as f64
    );
    assert_eq!(
        moved("sidecar_requests_total", &with_class(&unrouted, "4xx")),
        UNROUTED as f64,
        "local replies count as requests, with empty route and cluster labels"
    );
    assert_eq!(
        moved(
            "sidecar_local_replies_total",
            &[("listener", "in"), ("reason", "no_route")]
        ),
        UNROUTED as f64
    );
    assert_eq!(
        moved("sidecar_request_duration_seconds_count", &app),
        (OK + TEAPOTS) as f64,
        "one duration observation per proxied request"
    );
    let upstream_class = |class| [("cluster", "backend"), ("code_class", class)];
    assert_eq!(
        moved("sidecar_upstream_requests_total", &upstream_class("2xx")),
        OK as f64
    );
    assert_eq!(
        moved("sidecar_upstream_requests_total", &upstream_class("4xx")),
        TEAPOTS as f64
    );
    assert_eq!(
        moved(
            "sidecar_downstream_connections_total",
            &[("listener", "in")]
        ),
        1.0,
        "every request came on one connection"
    );
    assert_eq!(backend.requests(), (OK + TEAPOTS) as u64);
    assert_eq!(after.one("sidecar_build_info", &[]), 1.0);
    assert!(
        after.find("sidecar_build_info", &[])[0]
            .labels
            .contains_key("version"),
        "sidecar_build_info has a version label"
    );
}
