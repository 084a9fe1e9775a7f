//! Responses the proxy makes itself: for every reason in the contract, the status, the
//! `x-sidecar-error` header, the `reason: detail` body, the access log entry and the metric.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::{Client, RawConn};
use e2e_tests::ports::{self, Refusing};
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::tcp::{self, TcpUpstream};
use e2e_tests::upstream::{self, Reply, Upstream};
use serde_json::json;
use tokio::time::Instant;

/// One proxy with a route for each way an upstream can fail.
struct Fixture {
    proxy: Sidecar,
    ok: Upstream,
    hang: Upstream,
    _reset: TcpUpstream,
    _garbage: TcpUpstream,
    _never_accepting: TcpUpstream,
    _refusing: Refusing,
}

const MAX_HEADER_BYTES: usize = 4096;
const MAX_HEADERS: usize = 20;

async fn fixture() -> Fixture {
    let ok = upstream::http1().name("ok").run().await;
    let hang = upstream::http1().fallback(Reply::hang()).run().await;
    let reset = tcp::close_after_request_head().await;
    let garbage = tcp::answer(b"SURPRISE this is not HTTP\r\n\r\n").await;
    let never_accepting = tcp::never_accepting().await;
    let refusing = ports::refusing();
    let route = |name: &str| json!({ "name": name, "match": { "prefix": format!("/{name}") }, "cluster": name });
    let mut timeout_route = route("timeout");
    timeout_route["timeout"] = json!("300ms");
    // To the same hanging upstream, with a timeout no test waits for.
    let abandoned_route = json!({ "name": "abandoned", "match": { "prefix": "/abandoned" }, "cluster": "timeout", "timeout": "60s" });
    let mut blackhole = cluster("connect-timeout", [never_accepting.addr()]);
    blackhole["connect_timeout"] = json!("200ms");
    let proxy = Sidecar::builder(json!({
        "listeners": [{
            "name": "in",
            "max_request_headers_size": MAX_HEADER_BYTES,
            "max_request_headers": MAX_HEADERS,
            "routes": [
                route("ok"),
                route("refused"),
                route("connect-timeout"),
                timeout_route,
                abandoned_route,
                route("reset"),
                route("garbage"),
                route("nodns"),
            ],
        }],
        "clusters": [
            cluster("ok", [ok.addr()]),
            cluster("refused", [refusing.addr()]),
            blackhole,
            cluster("timeout", [hang.addr()]),
            cluster("reset", [reset.addr()]),
            cluster("garbage", [garbage.addr()]),
            { "name": "nodns", "discovery": "dns", "endpoints": ["nothing.invalid:80"] },
        ],
    }))
    .access_log()
    .start()
    .await;
    Fixture {
        proxy,
        ok,
        hang,
        _reset: reset,
        _garbage: garbage,
        _never_accepting: never_accepting,
        _refusing: refusing,
    }
}

/// A response as the checks need it, however it was read.
struct Seen {
    status: u16,
    error: Option<String>,
    body: String,
}

async fn get(f: &Fixture, path: &str, id: &str) -> Seen {
    let reply = Client::http1(f.proxy.listener("in"))
        .await
        .get(path)
        .header("x-request-id", id)
        .send()
        .await;
    Seen {
        status: reply.status.as_u16(),
        error: reply.sidecar_error().map(str::to_owned),
        body: String::from_utf8_lossy(&reply.body).into_owned(),
    }
}

/// Sends `request` as raw bytes and reads the response head and body.
async fn raw(f: &Fixture, request: &[u8]) -> Seen {
    let mut conn = RawConn::connect(f.proxy.listener("in")).await;
    conn.write(request).await.expect("send the request");
    let head = conn
        .read_head(Duration::from_secs(5))
        .await
        .expect("a response head");
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a local reply has a content-length: {head:?}"));
    let body = conn
        .read_exact(len, Duration::from_secs(5))
        .await
        .expect("the body");
    Seen {
        status: head.status,
        error: head.header("x-sidecar-error").map(str::to_owned),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Checks the reply, its access log entry (found by request id) and the local reply counter.
async fn assert_local_reply(f: &Fixture, seen: &Seen, id: &str, status: u16, reason: &str) {
    assert_eq!(
        seen.status, status,
        "status for {reason}; body {:?}",
        seen.body
    );
    assert_eq!(
        seen.error.as_deref(),
        Some(reason),
        "x-sidecar-error for {reason}"
    );
    assert!(
        seen.body.starts_with(&format!("{reason}: ")) && seen.body.ends_with('\n'),
        "the body of a {reason} reply is `{reason}: <detail>\\n`, got {:?}",
        seen.body
    );
    let entry = f.proxy.access_log_entry(id).await;
    assert_eq!(entry["reason"], reason, "access log: {entry}");
    assert_eq!(entry["status"], status, "access log: {entry}");
    let metrics = f.proxy.admin().metrics().await;
    assert_eq!(
        metrics.sum(
            "sidecar_local_replies_total",
            &[("listener", "in"), ("reason", reason)]
        ),
        1.0,
        "sidecar_local_replies_total{{listener=\"in\",reason=\"{reason}\"}}"
    );
}

#[tokio::test]
async fn no_route_is_404() {
    let f = fixture().await;
    let seen = get(&f, "/nowhere", "lr-no-route").await;
    assert_local_reply(&f, &seen, "lr-no-route", 404, "no_route").await;
}

#[tokio::test]
async fn a_cluster_without_endpoints_is_503_no_healthy_upstream() {
    let f = fixture().await;
    let seen = get(&f, "/nodns", "lr-nodns").await;
    assert_local_reply(&f, &seen, "lr-nodns", 503, "no_healthy_upstream").await;
}

#[tokio::test]
async fn a_refused_connection_is_502_upstream_connect_failed() {
    let f = fixture().await;
    let seen = get(&f, "/refused", "lr-refused").await;
    assert_local_reply(&f, &seen, "lr-refused", 502, "upstream_connect_failed").await;
    let m = f.proxy.admin().metrics().await;
    assert!(
        m.sum(
            "sidecar_upstream_connect_failures_total",
            &[("cluster", "refused")]
        ) >= 1.0,
        "connect failures are counted per cluster"
    );
}

#[tokio::test]
async fn a_connect_that_never_completes_is_504_upstream_connect_timeout() {
    let f = fixture().await;
    let started = Instant::now();
    let seen = get(&f, "/connect-timeout", "lr-connect-timeout").await;
    let took = started.elapsed();
    assert_local_reply(
        &f,
        &seen,
        "lr-connect-timeout",
        504,
        "upstream_connect_timeout",
    )
    .await;
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(3),
        "connect_timeout is 200ms, the reply took {took:?}"
    );
}

#[tokio::test]
async fn an_upstream_slower_than_the_route_timeout_is_504_upstream_timeout() {
    let f = fixture().await;
    let started = Instant::now();
    let seen = get(&f, "/timeout", "lr-timeout").await;
    let took = started.elapsed();
    assert_local_reply(&f, &seen, "lr-timeout", 504, "upstream_timeout").await;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "the route timeout is 300ms, the reply took {took:?}"
    );
    let m = f.proxy.admin().metrics().await;
    assert_eq!(
        m.sum("sidecar_upstream_timeouts_total", &[("cluster", "timeout")]),
        1.0
    );
}

#[tokio::test]
async fn an_upstream_closing_before_headers_is_502_upstream_reset() {
    let f = fixture().await;
    let seen = get(&f, "/reset", "lr-reset").await;
    assert_local_reply(&f, &seen, "lr-reset", 502, "upstream_reset").await;
}

#[tokio::test]
async fn a_malformed_upstream_response_is_502_upstream_protocol_error() {
    let f = fixture().await;
    let seen = get(&f, "/garbage", "lr-garbage").await;
    assert_local_reply(&f, &seen, "lr-garbage", 502, "upstream_protocol_error").await;
}

#[tokio::test]
async fn headers_over_the_size_limit_are_431_request_headers_too_large() {
    let f = fixture().await;
    let big = "v".repeat(MAX_HEADER_BYTES + 2048);
    let request = format!(
        "GET /ok HTTP/1.1\r\nhost: app\r\nx-request-id: lr-too-large\r\nx-big: {big}\r\n\r\n"
    );
    let seen = raw(&f, request.as_bytes()).await;
    assert_local_reply(&f, &seen, "lr-too-large", 431, "request_headers_too_large").await;
    assert_eq!(
        f.ok.requests(),
        0,
        "a rejected request must not reach the upstream"
    );
}

#[tokio::test]
async fn more_header_fields_than_allowed_are_431_too_many_headers() {
    let f = fixture().await;
    let mut request =
        String::from("GET /ok HTTP/1.1\r\nhost: app\r\nx-request-id: lr-too-many\r\n");
    for i in 0..MAX_HEADERS + 10 {
        request.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let seen = raw(&f, request.as_bytes()).await;
    assert_local_reply(&f, &seen, "lr-too-many", 431, "too_many_headers").await;
    assert_eq!(
        f.ok.requests(),
        0,
        "a rejected request must not reach the upstream"
    );
    // Exactly at the limit, counted as the client sent them (the request id the proxy adds
    // is not the client's): accepted.
    let mut request = String::from("GET /ok HTTP/1.1\r\nhost: app\r\n");
    for i in 0..MAX_HEADERS - 1 {
        request.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let head = RawConn::head_of(f.proxy.listener("in"), request.as_bytes()).await;
    assert_eq!(head.status, 200, "{MAX_HEADERS} fields: {head:?}");
    assert_eq!(f.ok.requests(), 1);
}

#[tokio::test]
async fn a_request_without_host_is_400_bad_request() {
    let f = fixture().await;
    let seen = raw(&f, b"GET /ok HTTP/1.1\r\nx-request-id: lr-no-host\r\n\r\n").await;
    assert_local_reply(&f, &seen, "lr-no-host", 400, "bad_request").await;
    assert_eq!(
        f.ok.requests(),
        0,
        "a rejected request must not reach the upstream"
    );
}

#[tokio::test]
async fn the_access_log_describes_a_proxied_request() {
    let f = fixture().await;
    let reply = Client::http1(f.proxy.listener("in"))
        .await
        .post("/ok/path?q=1")
        .host("app.test")
        .header("x-request-id", "al-proxied")
        .header("user-agent", "e2e-test/1")
        .body(e2e_tests::body::full("12345"))
        .send()
        .await;
    assert_eq!(reply.status, 200);
    let e = f.proxy.access_log_entry("al-proxied").await;
    let rfc3339 =
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$").unwrap();
    assert!(
        e["start_time"]
            .as_str()
            .is_some_and(|t| rfc3339.is_match(t)),
        "start_time: {e}"
    );
    assert_eq!(e["method"], "POST", "{e}");
    assert_eq!(e["authority"], "app.test", "{e}");
    assert!(
        e["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/ok/path")),
        "{e}"
    );
    assert_eq!(e["protocol"], "HTTP/1.1", "{e}");
    assert_eq!(e["status"], 200, "{e}");
    assert!(
        e.get("reason").is_none_or(|r| r.is_null()),
        "no reason on a proxied reply: {e}"
    );
    assert_eq!(e["bytes_received"], 5, "{e}");
    assert_eq!(e["bytes_sent"], reply.body.len(), "{e}");
    assert!(e["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
    assert_eq!(e["upstream_host"], f.ok.addr().to_string(), "{e}");
    assert_eq!(e["upstream_cluster"], "ok", "{e}");
    assert_eq!(e["route"], "ok", "{e}");
    assert_eq!(e["listener"], "in", "{e}");
    assert!(
        e["downstream_remote_address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{e}"
    );
    assert_eq!(e["user_agent"], "e2e-test/1", "{e}");
}

/// A client that gives up while its request waits for the upstream (HTTP/1: it closes the
/// connection; HTTP/2: it resets the stream, the connection staying open) is recorded as
/// `499 downstream_closed`, and the requests in flight come back down to none.
#[tokio::test]
async fn a_request_the_client_abandons_is_recorded_as_499_downstream_closed() {
    let f = fixture().await;
    let upstream_has = |n: u64| {
        let hang = &f.hang;
        async move {
            e2e_tests::wait::eventually(
                "the hanging upstream to have the request",
                Duration::from_secs(5),
                async || e2e_tests::wait::equal(hang.requests(), n),
            )
            .await
        }
    };

    let mut conn = RawConn::connect(f.proxy.listener("in")).await;
    conn.write(b"GET /abandoned/h1 HTTP/1.1\r\nhost: app\r\nx-request-id: ab-h1\r\n\r\n")
        .await
        .expect("send the request");
    upstream_has(1).await;
    drop(conn);
    let entry = f.proxy.access_log_entry("ab-h1").await;
    assert_eq!(entry["status"], 499, "{entry}");
    assert_eq!(entry["reason"], "downstream_closed", "{entry}");
    assert_eq!(entry["route"], "abandoned", "{entry}");

    let client = Client::h2c(f.proxy.listener("in")).await;
    let mut sender = client
        .share()
        .expect("an HTTP/2 client shares its connection");
    let waiting = tokio::spawn(async move {
        sender
            .get("/abandoned/h2")
            .header("x-request-id", "ab-h2")
            .try_send()
            .await
    });
    upstream_has(2).await;
    waiting.abort();
    let entry = f.proxy.access_log_entry("ab-h2").await;
    assert_eq!(entry["status"], 499, "{entry}");
    assert_eq!(entry["reason"], "downstream_closed", "{entry}");
    assert_eq!(entry["protocol"], "HTTP/2", "{entry}");

    e2e_tests::wait::eventually("no request in flight", Duration::from_secs(5), async || {
        let m = f.proxy.admin().metrics().await;
        e2e_tests::wait::equal(
            m.one("sidecar_downstream_active_requests", &[("listener", "in")]),
            0.0,
        )
    })
    .await;
    let m = f.proxy.admin().metrics().await;
    assert_eq!(
        m.sum(
            "sidecar_requests_total",
            &[("route", "abandoned"), ("code_class", "4xx")]
        ),
        2.0
    );
    // Not an answer the proxy made.
    assert_eq!(m.sum("sidecar_local_replies_total", &[]), 0.0);
    drop(client);
}
