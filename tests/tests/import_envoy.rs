//! `sidecar import-envoy`: a realistic Envoy v3 bootstrap (tests/fixtures/envoy-bootstrap.yaml)
//! is converted; every field that did not convert is reported with its path; the result passes
//! `sidecar check-config`; and the sidecar running it routes traffic as the Envoy config meant,
//! to upstreams this test starts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use e2e_tests::client::Client;
use e2e_tests::upstream::{self, tcp};
use e2e_tests::{Sidecar, ports, process};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURE: &str = include_str!("../fixtures/envoy-bootstrap.yaml");

/// The fixture with its `${NAME}` port placeholders filled in.
fn fixture(ports: &[(&str, SocketAddr)]) -> String {
    let mut text = FIXTURE.to_owned();
    for (name, addr) in ports {
        text = text.replace(&format!("${{{name}}}"), &addr.port().to_string());
    }
    assert!(
        !text.contains("port_value: ${"),
        "a placeholder was left unfilled"
    );
    text
}

/// What `import-envoy` must report for the fixture, sorted by path: each field it could
/// not convert, with its path.
const REPORT: &[&str] = &[
    "admin.access_log_path: not supported",
    "node: not supported",
    "static_resources.clusters[0].circuit_breakers.thresholds[1]: only DEFAULT priority is supported: HIGH thresholds dropped",
    "static_resources.clusters[0].outlier_detection.enforcing_consecutive_5xx: not supported",
    "static_resources.clusters[6].transport_socket: TLS to upstreams is not supported: cluster skipped",
    "static_resources.clusters[7].eds_cluster_config: not supported",
    "static_resources.clusters[7].type: EDS is not supported: cluster skipped",
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]: envoy.filters.http.cors is not supported",
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1]: envoy.filters.http.lua is not supported",
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[1].cors: not supported",
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[1].routes[1].route.retry_policy.retry_on: condition \"retriable-4xx\" is not supported",
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[1].routes[2]: cluster \"payments\" was not converted: route skipped",
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[1].routes[3]: only routes with a `route` action (cluster or weighted_clusters) are supported: route skipped",
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[1].routes[3].redirect: not supported",
    "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.access_log[0]: one access log per sidecar: this one is not used",
    "static_resources.listeners[2]: no filter chain could be converted (one with an http_connection_manager or tcp_proxy filter): listener skipped",
    "static_resources.listeners[2].filter_chains[0].transport_socket: TLS termination is not supported: filter chain skipped",
];

#[tokio::test]
async fn envoy_bootstrap_converts_reports_what_it_cannot_and_serves() {
    let users_a = upstream::http1().name("users-a").run().await;
    let users_b = upstream::http1().name("users-b").run().await;
    let items = upstream::h2c().name("items").run().await;
    let stable = upstream::http1().name("stable").run().await;
    let next = upstream::h2c().name("next").run().await;
    let sessions = upstream::http1().name("sessions").run().await;
    let cache = tcp::echo().await;
    let (admin, http, tcp_in, tls) = (
        ports::loopback(),
        ports::loopback(),
        ports::loopback(),
        ports::loopback(),
    );
    let envoy = fixture(&[
        ("ADMIN", admin),
        ("HTTP", http),
        ("TCP", tcp_in),
        ("TLS", tls),
        ("USERS_A", users_a.addr()),
        ("USERS_B", users_b.addr()),
        ("ITEMS", items.addr()),
        ("STABLE", stable.addr()),
        ("NEXT", next.addr()),
        ("SESSIONS", sessions.addr()),
        ("CACHE", cache.addr()),
    ]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let envoy_path = dir.path().join("envoy.yaml");
    std::fs::write(&envoy_path, envoy).expect("write envoy.yaml");

    // Convert: the config on stdout, the report on stderr.
    let out = process::cli(&["import-envoy", path(&envoy_path)], &[]);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let mut report: Vec<&str> = out.stderr.lines().collect();
    let summary = report.pop().expect("a summary line");
    assert_eq!(
        summary,
        format!(
            "{}: {} field(s) not converted",
            envoy_path.display(),
            REPORT.len()
        )
    );
    assert_eq!(report, REPORT, "stderr:\n{}", out.stderr);

    // The result is a valid sidecar config.
    let sidecar_path = dir.path().join("sidecar.yaml");
    std::fs::write(&sidecar_path, &out.stdout).expect("write sidecar.yaml");
    let check = process::cli(&["check-config", path(&sidecar_path)], &[]);
    assert_eq!(check.code, Some(0), "{}\n{}", check.stderr, out.stdout);

    // Run it.
    let doc: Value = serde_norway::from_str(&out.stdout).expect("the output is YAML");
    // `api.shop.test` and `api.shop.test:8080` are one host without the port.
    let users = doc["listeners"][0]["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "users-me"))
        .unwrap_or_else(|| panic!("a users-me route: {}", out.stdout));
    assert_eq!(
        users["match"]["hosts"],
        serde_json::json!(["api.shop.test"]),
        "{users}"
    );
    let proxy = Sidecar::start(doc).await;
    assert_eq!(proxy.listener("ingress_http"), http);
    assert_eq!(proxy.admin().addr(), admin);

    let mut c = Client::http1(http).await;
    // users-me: exact path, a header that must be there and one that must not; route and
    // virtual-host header changes on the way in and out.
    let r = c
        .get("/users/me")
        .host("api.shop.test")
        .header("x-tenant", "blue")
        .header("x-drop-me", "1")
        .header("x-vhost", "client")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert!(
        ["users-a", "users-b"].contains(&e.upstream.as_str()),
        "{e:?}"
    );
    assert_eq!(e.header("x-route"), Some("users-me"), "{e:?}");
    assert_eq!(e.header_all("x-vhost"), ["api"], "overwritten: {e:?}");
    assert_eq!(e.header("x-drop-me"), None, "{e:?}");
    assert_eq!(r.header("x-served-by"), Some("sidecar"));
    // The inverted header match: with x-debug the request falls through to the default.
    let r = c
        .get("/users/me")
        .host("api.shop.test:8080")
        .header("x-tenant", "blue")
        .header("x-debug", "1")
        .send()
        .await;
    assert_eq!(r.upstream(), "stable", "{}", r.text());

    // item: a regex path and a header prefix, to an HTTP/2 cluster found by DNS.
    let r = c
        .get("/items/42")
        .host("api.shop.test")
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert_eq!(
        (e.upstream.as_str(), e.version.as_str()),
        ("items", "HTTP/2.0")
    );

    // storefront: a regex header match and a 50/50 split over two clusters.
    let mut seen = HashSet::new();
    for _ in 0..40 {
        let r = c
            .get("/")
            .host("api.shop.test")
            .header("x-canary", "yes")
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        // The route's prefix_rewrite: its match prefix `/` became `/v2/`.
        assert_eq!(r.echoed().uri, "/v2/", "{}", r.text());
        seen.insert(r.upstream().to_owned());
    }
    assert_eq!(
        seen,
        HashSet::from(["stable".to_owned(), "next".to_owned()])
    );

    // Any other host: the "*" virtual host, which the conversion put last.
    let r = c
        .get("/cart")
        .host("shop.test")
        .header("x-user", "u1")
        .send()
        .await;
    assert_eq!(r.upstream(), "sessions", "{}", r.text());
    // The skipped route's path is not routed to anything else in its virtual host.
    let r = c.get("/pay/now").host("api.shop.test").send().await;
    assert_eq!(r.upstream(), "stable", "{}", r.text());

    // The TCP listener copies bytes to the echo server; the TLS one was not converted.
    let mut s = tokio::net::TcpStream::connect(tcp_in)
        .await
        .expect("connect to the tcp listener");
    s.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo within 5s")
        .expect("read");
    assert_eq!(&buf, b"ping");
    assert!(tokio::net::TcpStream::connect(tls).await.is_err());

    // What the running sidecar made of the fields that have no traffic to show them.
    let dump = proxy.admin().json("/config_dump").await;
    let cluster = |name: &str| {
        dump["clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no cluster {name} in {dump}"))
    };
    let users = cluster("users");
    assert_eq!(users["lb_policy"], "least_request");
    assert_eq!(users["connect_timeout"], "250ms");
    assert_eq!(users["idle_timeout"], "30s");
    assert_eq!(users["healthy_panic_threshold"], 25);
    assert_eq!(users["endpoints"][0]["weight"], 2, "{users}");
    let cb = &users["circuit_breakers"];
    assert_eq!(
        [
            &cb["max_connections"],
            &cb["max_pending_requests"],
            &cb["max_requests"],
            &cb["max_retries"]
        ],
        [100, 50, 200, 5],
        "{cb}"
    );
    let od = &users["outlier_detection"];
    assert_eq!(
        [
            &od["consecutive_5xx"],
            &od["consecutive_gateway_failure"],
            &od["consecutive_local_origin_failure"],
            &od["max_ejection_percent"],
            &od["success_rate_minimum_hosts"],
            &od["success_rate_request_volume"],
            &od["success_rate_stdev_factor"],
        ],
        [4, 3, 6, 30, 3, 50, 1500],
        "{od}"
    );
    assert_eq!(
        [
            &od["interval"],
            &od["base_ejection_time"],
            &od["max_ejection_time"]
        ],
        ["2s", "15s", "2m"],
        "{od}"
    );
    let hc = &users["health_checks"];
    assert_eq!([&hc["interval"], &hc["timeout"]], ["1s", "500ms"], "{hc}");
    assert_eq!(
        [&hc["healthy_threshold"], &hc["unhealthy_threshold"]],
        [1, 3],
        "{hc}"
    );
    assert_eq!(hc["http_health_check"]["path"], "/healthz");
    assert_eq!(
        hc["http_health_check"]["expected_statuses"],
        serde_json::json!([200, 201])
    );
    let items_c = cluster("items");
    assert_eq!(
        [
            &items_c["discovery"],
            &items_c["protocol"],
            &items_c["dns_refresh_rate"]
        ],
        ["dns", "http2", "10s"]
    );
    assert_eq!(cluster("storefront-stable")["lb_policy"], "random");
    assert_eq!(cluster("storefront-next")["protocol"], "http2");
    let sess = cluster("sessions");
    assert_eq!(sess["lb_policy"], "ring_hash");
    assert_eq!(sess["hash_policy"]["header"], "x-user");
    assert!(
        sess["health_checks"]["http_health_check"].is_null(),
        "tcp check: {sess}"
    );

    let l = &dump["listeners"][0];
    assert_eq!(
        [
            &l["idle_timeout"],
            &l["request_header_timeout"],
            &l["max_request_headers"],
            &l["max_concurrent_streams"]
        ],
        [
            &Value::from("2m"),
            &Value::from("5s"),
            &Value::from(80),
            &Value::from(128)
        ],
        "{l}"
    );
    assert_eq!(l["max_request_headers_size"], "32KiB", "{l}");
    let routes: Vec<&str> = l["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        routes,
        [
            "users-me",
            "item",
            "storefront",
            "storefront-default",
            "sticky"
        ]
    );
    let item = &l["routes"][1];
    assert_eq!(item["timeout"], "1s 500ms");
    let rp = &item["retry_policy"];
    assert_eq!(rp["num_retries"], 3);
    assert_eq!(
        rp["retry_on"],
        serde_json::json!([
            "5xx",
            "gateway-error",
            "retriable-status-codes",
            "retriable-headers"
        ])
    );
    assert_eq!(rp["per_try_timeout"], "500ms");
    assert_eq!(rp["retriable_status_codes"], serde_json::json!([409]));
    assert_eq!(rp["retriable_headers"][0]["exact"], "yes");
    assert_eq!(rp["retry_back_off"]["base_interval"], "10ms");
    assert_eq!(rp["retry_back_off"]["max_interval"], "100ms");
    // The virtual host's retry policy fills in for routes without one.
    assert_eq!(l["routes"][0]["retry_policy"]["num_retries"], 2);
    assert_eq!(
        l["routes"][0]["retry_policy"]["retry_on"],
        serde_json::json!(["connect-failure", "reset"])
    );
    assert_eq!(dump["listeners"][1]["protocol"], "tcp");
    assert_eq!(dump["listeners"][1]["idle_timeout"], "30s");
    assert_eq!(dump["access_log"]["path"], "stdout");
}

#[test]
fn unreadable_or_unconvertible_input_fails_with_a_reason() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.yaml");
    let out = process::cli(&["import-envoy", path(&missing)], &[]);
    assert_eq!(out.code, Some(65), "{out:?}");
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);

    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "static_resources: { clusters: [] }\n").expect("write");
    let out = process::cli(&["import-envoy", path(&empty)], &[]);
    assert_eq!(out.code, Some(65), "{out:?}");
    assert!(
        out.stderr.contains("no listener that could be converted"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
