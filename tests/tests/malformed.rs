//! Clients that break the rules: garbage bytes, enormous or countless headers, and slowloris.
//! Each must be turned away without hurting the proxy or the clients that behave.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::client::{Client, RawConn};
use e2e_tests::proxy_config::single_route;
use e2e_tests::upstream::{self, Upstream};
use serde_json::json;
use tokio::time::Instant;

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

async fn proxy(backend: &Upstream) -> Sidecar {
    let mut config = single_route(backend);
    config["listeners"][0]["request_header_timeout"] =
        json!(format!("{}ms", HEADER_TIMEOUT.as_millis()));
    Sidecar::start(config).await
}

/// The proxy is alive, ready, and serving a well-behaved client promptly.
async fn assert_healthy(proxy: &mut Sidecar) {
    assert_eq!(proxy.try_exit(), None, "the proxy died");
    proxy.admin().ready().await.expect("the proxy stays ready");
    let started = Instant::now();
    let reply = Client::http1(proxy.listener("in"))
        .await
        .get("/ok")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a good client waited {:?}",
        started.elapsed()
    );
}

/// Sends `bytes` and expects the proxy to answer with an HTTP/1 error status, or an HTTP/2
/// GOAWAY, or to close, within 5 s.
async fn assert_turned_away(proxy: &Sidecar, what: &str, bytes: &[u8]) {
    let mut conn = RawConn::connect(proxy.listener("in")).await;
    // The proxy may close before reading everything; a failed write is a way of turning away.
    let _ = conn.write(bytes).await;
    let answer = conn
        .read_to_close(Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{what}: the connection was neither answered nor closed: {e}"));
    let text = String::from_utf8_lossy(&answer);
    if bytes.starts_with(H2_PREFACE) {
        assert!(
            answer.is_empty() || h2_frame_types(&answer).contains(&H2_GOAWAY),
            "{what}: an HTTP/2 connection with junk frames ends with GOAWAY or a close, got {answer:?}"
        );
    } else if !answer.is_empty() {
        let status: u16 = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what}: answered with something not HTTP: {text:?}"));
        assert!(
            (400..500).contains(&status),
            "{what}: answered {status}: {text:?}"
        );
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_GOAWAY: u8 = 0x7;

/// The types of the whole HTTP/2 frames in `bytes` (9-byte header: length, type, flags, stream).
fn h2_frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = bytes.get(9 + len..).unwrap_or_default();
    }
    types
}

#[tokio::test]
async fn garbage_bytes_are_turned_away() {
    let backend = upstream::http1().run().await;
    let mut proxy = proxy(&backend).await;
    let payloads: [(&str, &[u8]); 4] = [
        (
            "binary noise",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xde\xad\xbe\xef\r\n\r\n",
        ),
        ("a broken request line", b"GET\r\n\r\n"),
        (
            "a bad header line",
            b"GET / HTTP/1.1\r\nhost: a\r\nno colon here\r\n\r\n",
        ),
        (
            "an h2 preface and then junk",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ),
    ];
    for (what, bytes) in payloads {
        assert_turned_away(&proxy, what, bytes).await;
        assert_healthy(&mut proxy).await;
    }
    assert_eq!(
        backend.requests(),
        4,
        "only the health checks reached the upstream"
    );
}

/// Sends `request` and expects the proxy's own 431 with `reason`.
async fn assert_explained_431(proxy: &Sidecar, request: &str, reason: &str) {
    let head = RawConn::head_of(proxy.listener("in"), request.as_bytes()).await;
    assert_eq!(head.status, 431, "{head:?}");
    assert_eq!(head.header("x-sidecar-error"), Some(reason), "{head:?}");
}

#[tokio::test]
async fn far_oversized_headers_are_431_or_closed() {
    let backend = upstream::http1().run().await;
    let mut proxy = proxy(&backend).await;
    // Far past the default 60 KiB limit and any parser buffer.
    let huge = format!(
        "GET /ok HTTP/1.1\r\nhost: a\r\nx-huge: {}\r\n\r\n",
        "h".repeat(1 << 20)
    );
    assert_turned_away(&proxy, "a 1 MiB header", huge.as_bytes()).await;
    // Just past the limit gets the proxy's own explained 431.
    let over = format!(
        "GET /ok HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "b".repeat(61 * 1024)
    );
    assert_explained_431(&proxy, &over, "request_headers_too_large").await;
    assert_healthy(&mut proxy).await;
    assert_eq!(
        backend.requests(),
        1,
        "only the health check reached the upstream"
    );
}

#[tokio::test]
async fn too_many_headers_are_431_or_closed() {
    let backend = upstream::http1().run().await;
    let mut proxy = proxy(&backend).await;
    let mut many = String::from("GET /ok HTTP/1.1\r\nhost: a\r\n");
    for i in 0..2_000 {
        many.push_str(&format!("x-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    assert_turned_away(&proxy, "2000 header fields", many.as_bytes()).await;
    // Just past the default limit of 100 (which is also the parser's own) is a 431 from
    // the parser; a configured limit below 100 gets the proxy's explained one
    // (local_replies.rs).
    let mut over = String::from("GET /ok HTTP/1.1\r\nhost: a\r\n");
    for i in 0..110 {
        over.push_str(&format!("x-{i}: {i}\r\n"));
    }
    over.push_str("\r\n");
    let head = RawConn::head_of(proxy.listener("in"), over.as_bytes()).await;
    assert_eq!(head.status, 431, "{head:?}");
    assert_healthy(&mut proxy).await;
    assert_eq!(
        backend.requests(),
        1,
        "only the health check reached the upstream"
    );
}

/// Sends a request head one byte at a time, forever; returns how long the proxy let it live.
async fn slowloris(addr: std::net::SocketAddr) -> Duration {
    let started = Instant::now();
    let mut conn = RawConn::connect(addr).await;
    let _ = conn.write(b"GET /ok HTTP/1.1\r\nhost: a\r\n").await;
    let deadline = started + Duration::from_secs(5);
    while Instant::now() < deadline {
        if conn.write(b"x").await.is_err() {
            return started.elapsed();
        }
        // Each poll waits 100 ms for the proxy to close (or answer 408 and close).
        match conn.read_to_close(Duration::from_millis(100)).await {
            Ok(_) => return started.elapsed(),
            Err(_) => continue,
        }
    }
    panic!(
        "a slowloris connection was still open after 5s (request_header_timeout is {HEADER_TIMEOUT:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_and_others_are_served() {
    let backend = upstream::http1().run().await;
    let mut proxy = proxy(&backend).await;
    let addr = proxy.listener("in");
    let slow: Vec<_> = (0..20).map(|_| tokio::spawn(slowloris(addr))).collect();
    // While they trickle, well-behaved clients are served at once.
    for _ in 0..5 {
        assert_healthy(&mut proxy).await;
    }
    for s in slow {
        let lived = s.await.expect("the slowloris task finishes");
        assert!(
            lived < HEADER_TIMEOUT + Duration::from_secs(2),
            "a slowloris connection lived {lived:?} with request_header_timeout {HEADER_TIMEOUT:?}"
        );
    }
    assert_healthy(&mut proxy).await;
    // Each cut is counted (the cut happens before the client sees the close).
    let m = proxy.admin().metrics().await;
    assert_eq!(
        m.one(
            "sidecar_downstream_header_timeouts_total",
            &[("listener", "in")]
        ),
        20.0
    );
}

/// The header timeout is for a request head that is coming in; a keep-alive connection
/// resting between requests is held to `idle_timeout` instead, and a client that connects
/// and never speaks to the header timeout.
#[tokio::test]
async fn keep_alive_rests_until_the_idle_timeout_and_silent_clients_until_the_header_timeout() {
    const IDLE: Duration = Duration::from_millis(2000);
    let backend = upstream::http1().run().await;
    let mut config = single_route(&backend);
    config["listeners"][0]["request_header_timeout"] =
        json!(format!("{}ms", HEADER_TIMEOUT.as_millis()));
    config["listeners"][0]["idle_timeout"] = json!(format!("{}ms", IDLE.as_millis()));
    let proxy = Sidecar::start(config).await;

    let mut conn = RawConn::connect(proxy.listener("in")).await;
    conn.write(b"GET /ok HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("send a request");
    let started = Instant::now();
    let open = conn.read_to_close(HEADER_TIMEOUT * 3).await;
    assert!(
        open.is_err(),
        "a resting keep-alive connection was closed after {:?}, within 3x the header timeout",
        started.elapsed()
    );
    let closed = conn.read_to_close(IDLE * 2).await;
    let rested = started.elapsed();
    assert!(
        closed.is_ok(),
        "still open {rested:?} after its request; idle_timeout is {IDLE:?}"
    );
    assert!(
        rested >= IDLE - Duration::from_millis(100),
        "closed after {rested:?}, before idle_timeout {IDLE:?}"
    );

    let started = Instant::now();
    let mut silent = RawConn::connect(proxy.listener("in")).await;
    silent
        .read_to_close(HEADER_TIMEOUT + Duration::from_secs(2))
        .await
        .expect("a silent connection is closed by the header timeout");
    assert!(
        started.elapsed() < IDLE,
        "a silent client lived {:?}",
        started.elapsed()
    );
}
