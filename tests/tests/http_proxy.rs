//! HTTP through the proxy: both protocol versions on both sides, streamed bodies, trailers,
//! `Expect: 100-continue`, WebSocket upgrades, the headers the proxy owns, per-route header
//! edits, and route matching.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::body::{self, Digest};
use e2e_tests::client::{Client, RawConn};
use e2e_tests::proxy_config::{cluster, single_route};
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::eventually;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Version};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Bigger than any sane buffer in a proxy, so buffering a body whole would show in its memory.
const BIG: u64 = 64 << 20;

/// How much the proxy's peak resident memory may grow while moving `BIG` bytes each way.
/// Streaming with bounded buffers needs a few MiB (3 seen here); holding one body whole
/// needs 64.
const MEMORY_GROWTH_BOUND: u64 = 16 << 20;

#[tokio::test]
async fn http1_request_and_response_pass_through() {
    let upstream = upstream::http1()
        .name("app")
        .route("/created", Reply::echo().status(201).header("x-app", "1"))
        .run()
        .await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let reply = client
        .post("/created?a=1&b=two")
        .header("x-custom", "kept")
        .body(body::full("hello upstream"))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(
        reply.header("x-app"),
        Some("1"),
        "upstream response header lost"
    );
    let seen = reply.echoed();
    assert_eq!(seen.upstream, "app");
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.uri, "/created?a=1&b=two",
        "path and query must reach the upstream as sent"
    );
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(
        seen.header("host"),
        Some(proxy.listener("in").to_string().as_str())
    );
    assert_eq!(seen.body, body::digest(b"hello upstream"));

    // The same connection serves the next request (keep-alive through the proxy).
    let reply = client.get("/again").send().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echoed().method, "GET");
    assert_eq!(upstream.requests(), 2);
}

#[tokio::test]
async fn h2c_clients_are_detected_on_auto_listeners() {
    let upstream = upstream::http1().name("app").run().await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let client = Client::h2c(proxy.listener("in")).await;

    // Many streams at once on one connection, each answered on its own.
    let requests = (0..20).map(|i| {
        let mut client = client.share().expect("an HTTP/2 client can be shared");
        async move {
            let path = format!("/stream/{i}");
            let reply = client.get(&path).host("app.test").send().await;
            (path, reply)
        }
    });
    for (path, reply) in futures_util::future::join_all(requests).await {
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(
            reply.version,
            Version::HTTP_2,
            "{path} was not answered over HTTP/2"
        );
        let seen = reply.echoed();
        assert_eq!(seen.uri, path);
        assert_eq!(
            seen.version, "HTTP/1.1",
            "the cluster speaks HTTP/1.1 upstream"
        );
        assert_eq!(
            seen.header("host"),
            Some("app.test"),
            ":authority must become host"
        );
    }
    // Plain HTTP/1.1 still works on the same listener.
    let reply = Client::http1(proxy.listener("in"))
        .await
        .get("/h1")
        .send()
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.version, Version::HTTP_11);
}

#[tokio::test]
async fn http2_listeners_and_http2_clusters_speak_h2c() {
    let upstream = upstream::h2c().name("grpc-ish").run().await;
    let proxy = Sidecar::start(json!({
        "listeners": [{
            "name": "in",
            "protocol": "http2",
            "routes": [{ "name": "all", "cluster": "h2" }],
        }],
        "clusters": [{
            "name": "h2",
            "protocol": "http2",
            "endpoints": [upstream.addr().to_string()],
        }],
    }))
    .await;
    let mut client = Client::h2c(proxy.listener("in")).await;
    for i in 0..10 {
        let reply = client
            .post(&format!("/svc/{i}"))
            .body(body::full(vec![b'x'; 1000]))
            .send()
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.version, Version::HTTP_2);
        let seen = reply.echoed();
        assert_eq!(
            seen.version, "HTTP/2.0",
            "cluster protocol http2 must speak h2c upstream"
        );
        assert_eq!(seen.body.len, 1000);
    }
    assert_eq!(
        upstream.connections(),
        1,
        "an http2 cluster multiplexes every request on one connection per endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_over_http1() {
    let upstream = upstream::http1()
        .route("/download", Reply::pattern(BIG))
        .run()
        .await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let client = Client::http1(proxy.listener("in")).await;
    stream_big_bodies(&proxy, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_over_http2() {
    let upstream = upstream::h2c()
        .route("/download", Reply::pattern(BIG))
        .run()
        .await;
    let mut config = single_route(&upstream);
    config["clusters"][0]["protocol"] = json!("http2");
    let proxy = Sidecar::start(config).await;
    let client = Client::h2c(proxy.listener("in")).await;
    stream_big_bodies(&proxy, client).await;
}

/// Uploads and downloads `BIG` bytes through the proxy, checking every byte arrived in order
/// and that the proxy's peak memory stayed within `MEMORY_GROWTH_BOUND` of where it started.
async fn stream_big_bodies(proxy: &Sidecar, mut client: Client) {
    let expected: Digest = body::pattern_digest(BIG);
    // One small exchange first, so pools, buffers and lazily built state exist before the
    // baseline is read.
    assert_eq!(client.get("/warm-up").send().await.status, 200);
    let baseline = proxy.memory();

    let reply = client.post("/upload").body(body::pattern(BIG)).send().await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.echoed().body, expected, "the upload arrived changed");

    let resp = client
        .get("/download")
        .send_streaming()
        .await
        .expect("download response head");
    assert_eq!(resp.status(), 200);
    let (got, _) = tokio::time::timeout(Duration::from_secs(60), body::consume(resp.into_body()))
        .await
        .expect("the download finishes within 60s")
        .expect("the download body streams without error");
    assert_eq!(got, expected, "the download arrived changed");

    let after = proxy.memory();
    eprintln!(
        "proxy memory: {} MiB resident before, {} MiB peak after",
        baseline.resident >> 20,
        after.high_water_mark >> 20
    );
    assert!(
        after.high_water_mark <= baseline.resident + MEMORY_GROWTH_BOUND,
        "the proxy's peak RSS grew from {} MiB to {} MiB moving {} MiB each way: bodies are buffered",
        baseline.resident >> 20,
        after.high_water_mark >> 20,
        BIG >> 20,
    );
}

/// Posts `payload` with the trailer `x-request-sum: 42` to an echo; returns the reply and
/// what the upstream saw. HTTP/1 carries trailers only in a chunked body whose sender
/// announced them with `trailer:` and whose receiver asked with `te: trailers`, so the
/// request says both.
async fn post_with_trailers(client: &mut Client) -> (e2e_tests::client::Reply, upstream::Echoed) {
    let mut sum = HeaderMap::new();
    sum.insert("x-request-sum", HeaderValue::from_static("42"));
    let reply = client
        .post("/upload")
        .header("te", "trailers")
        .header("trailer", "x-request-sum")
        .body(body::with_trailers("payload", sum))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.echoed();
    assert_eq!(seen.body, body::digest(b"payload"));
    (reply, seen)
}

#[tokio::test]
async fn trailers_pass_both_ways_over_http2() {
    let upstream = upstream::h2c()
        .fallback(Reply::echo().trailer("x-checksum", "abc123"))
        .run()
        .await;
    let mut config = single_route(&upstream);
    config["clusters"][0]["protocol"] = json!("http2");
    let proxy = Sidecar::start(config).await;
    let mut client = Client::h2c(proxy.listener("in")).await;

    let (reply, seen) = post_with_trailers(&mut client).await;
    assert_eq!(
        seen.trailer("x-request-sum"),
        Some("42"),
        "request trailers lost: {seen:?}"
    );
    assert_eq!(
        seen.header("te"),
        Some("trailers"),
        "`te: trailers` must be kept"
    );
    let got = reply.trailers.as_ref().expect("response trailers lost");
    assert_eq!(
        got.get("x-checksum").map(|v| v.as_bytes()),
        Some(&b"abc123"[..])
    );
}

#[tokio::test]
async fn trailers_pass_both_ways_over_http1() {
    let upstream = upstream::http1()
        .fallback(Reply::echo().trailer("x-checksum", "abc123"))
        .run()
        .await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let (reply, seen) = post_with_trailers(&mut client).await;
    // Both directions are checked before failing, so a report names every loss at once.
    let request_ok = seen.trailer("x-request-sum") == Some("42");
    let response_ok = reply
        .trailers
        .as_ref()
        .and_then(|t| t.get("x-checksum"))
        .is_some_and(|v| v == "abc123");
    assert!(
        request_ok && response_ok,
        "trailers lost over HTTP/1: request trailers arrived: {request_ok} (upstream saw {seen:?}); \
         response trailers arrived: {response_ok} (client got headers {:?}, trailers {:?})",
        reply.headers,
        reply.trailers
    );
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let upstream = upstream::http1().run().await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let payload = body::filler(100_000);

    let mut conn = RawConn::connect(proxy.listener("in")).await;
    conn.write(
        format!(
            "POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
            payload.len()
        )
        .as_bytes(),
    )
    .await
    .expect("send the request head");
    let interim = conn
        .read_head(Duration::from_secs(5))
        .await
        .expect("an interim response before the body is sent");
    assert_eq!(interim.status, 100, "{interim:?}");

    conn.write(&payload).await.expect("send the body");
    let head = conn
        .read_head(Duration::from_secs(5))
        .await
        .expect("the final response");
    assert_eq!(head.status, 200, "{head:?}");
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("the echo has a content-length");
    let body = conn
        .read_exact(len, Duration::from_secs(5))
        .await
        .expect("the echo body");
    let seen: upstream::Echoed = serde_json::from_slice(&body).expect("an echo");
    assert_eq!(seen.body, body::digest(&payload));
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled() {
    let upstream = upstream::http1()
        .route("/ws", Reply::websocket_echo())
        .run()
        .await;
    let proxy = Sidecar::start(single_route(&upstream)).await;

    let stream = tokio::net::TcpStream::connect(proxy.listener("in"))
        .await
        .expect("connect");
    let url = format!("ws://{}/ws", proxy.listener("in"));
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .expect("the handshake finishes within 5s")
    .expect("the upgrade is accepted through the proxy");
    assert_eq!(resp.status(), 101);

    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello through the proxy"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::binary(big),
    ];
    for msg in messages {
        ws.send(msg.clone()).await.expect("send a message");
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo within 5s")
            .expect("the tunnel stays open")
            .expect("a well-formed message");
        assert_eq!(back, msg);
    }
    ws.close(None).await.expect("close the WebSocket");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let upstream = upstream::http1()
        .fallback(
            Reply::echo()
                .header("keep-alive", "timeout=5")
                .header("proxy-connection", "keep-alive")
                .header("x-end-to-end", "kept"),
        )
        .run()
        .await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let reply = Client::http1(proxy.listener("in"))
        .await
        .get("/")
        .header("connection", "keep-alive")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "gzip")
        .header("trailer", "x-announced")
        .header("upgrade", "something")
        .header("x-end-to-end", "kept")
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.echoed();
    for name in ["keep-alive", "proxy-connection", "te", "upgrade"] {
        assert_eq!(
            seen.header(name),
            None,
            "hop-by-hop `{name}` reached the upstream"
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    // `Trailer` is end-to-end (RFC 9110 §6.6.2): HTTP/1 only sends announced trailers.
    assert_eq!(seen.header("trailer"), Some("x-announced"));
    for name in ["keep-alive", "proxy-connection"] {
        assert_eq!(
            reply.header(name),
            None,
            "hop-by-hop `{name}` reached the client"
        );
    }
    assert_eq!(reply.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn forwarded_headers_are_added() {
    let upstream = upstream::http1().run().await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let seen = client.get("/").send().await.echoed();
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));

    let seen = client
        .get("/")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .echoed();
    let xff: Vec<String> = seen
        .header_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .collect();
    assert_eq!(
        xff,
        ["203.0.113.9", "127.0.0.1"],
        "the client IP is appended"
    );
    assert_eq!(
        seen.header_all("x-forwarded-proto"),
        ["https"],
        "a set proto is kept"
    );
}

#[tokio::test]
async fn request_ids_are_generated_and_passed_through() {
    let upstream = upstream::http1().run().await;
    let proxy = Sidecar::start(single_route(&upstream)).await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let uuid_v4 =
        regex::Regex::new("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap();

    let mut generated = Vec::new();
    for _ in 0..2 {
        let reply = client.get("/").send().await;
        let id = reply.echoed().header("x-request-id").map(str::to_owned);
        let id = id.expect("the proxy adds x-request-id");
        assert!(uuid_v4.is_match(&id), "{id:?} is not a UUID v4");
        assert_eq!(
            reply.header("x-request-id"),
            Some(id.as_str()),
            "returned on the response"
        );
        generated.push(id);
    }
    assert_ne!(generated[0], generated[1], "each request gets its own id");

    let reply = client
        .get("/")
        .header("x-request-id", "trace-me-123")
        .send()
        .await;
    assert_eq!(reply.echoed().header_all("x-request-id"), ["trace-me-123"]);
    assert_eq!(reply.header("x-request-id"), Some("trace-me-123"));
}

#[tokio::test]
async fn routes_add_and_remove_headers() {
    let upstream = upstream::http1()
        .fallback(
            Reply::echo()
                .header("x-internal", "leak")
                .header("x-upstream-kept", "1"),
        )
        .run()
        .await;
    let proxy = Sidecar::start(json!({
        "listeners": [{
            "name": "in",
            "routes": [
                {
                    "name": "edited",
                    "match": { "prefix": "/edited" },
                    "cluster": "backend",
                    "request_headers_to_add": [
                        { "name": "x-added", "value": "by-route" },
                        { "name": "x-replaced", "value": "new" },
                        { "name": "x-multi", "value": "two", "append": true },
                    ],
                    "request_headers_to_remove": ["x-secret"],
                    "response_headers_to_add": [{ "name": "x-served-by", "value": "sidecar" }],
                    "response_headers_to_remove": ["x-internal"],
                },
                { "name": "plain", "cluster": "backend" },
            ],
        }],
        "clusters": [cluster("backend", [upstream.addr()])],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let reply = client
        .get("/edited")
        .header("x-replaced", "old")
        .header("x-multi", "one")
        .header("x-secret", "hunter2")
        .send()
        .await;
    let seen = reply.echoed();
    assert_eq!(seen.header_all("x-added"), ["by-route"]);
    assert_eq!(
        seen.header_all("x-replaced"),
        ["new"],
        "add without append replaces"
    );
    assert_eq!(
        seen.header_all("x-multi"),
        ["one", "two"],
        "append keeps the client's value"
    );
    assert_eq!(seen.header("x-secret"), None);
    assert_eq!(reply.header("x-served-by"), Some("sidecar"));
    assert_eq!(reply.header("x-internal"), None);
    assert_eq!(reply.header("x-upstream-kept"), Some("1"));

    // Edits belong to their route only.
    let reply = client.get("/other").header("x-secret", "s").send().await;
    let seen = reply.echoed();
    assert_eq!(seen.header("x-added"), None);
    assert_eq!(seen.header("x-secret"), Some("s"));
    assert_eq!(reply.header("x-internal"), Some("leak"));
    assert_eq!(reply.header("x-served-by"), None);
}

/// A routing case: host, path, extra headers, and the replica that must answer (`None`: no
/// route matches).
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Option<&'static str>,
);

#[tokio::test]
async fn requests_are_routed_by_host_path_and_headers() {
    let names = [
        "host-exact",
        "host-suffix",
        "host-prefix",
        "path-exact",
        "path-regex",
        "header-exact",
        "header-prefix",
        "header-present",
        "header-invert",
        "path-prefix",
    ];
    let mut upstreams: Vec<Upstream> = Vec::new();
    for name in names {
        upstreams.push(upstream::http1().name(name).run().await);
    }
    let route = |name: &str, matcher: serde_json::Value| json!({ "name": name, "match": matcher, "cluster": name });
    let proxy = Sidecar::start(json!({
        "listeners": [{
            "name": "in",
            "routes": [
                route("host-exact", json!({ "hosts": ["api.example.com"] })),
                route("host-suffix", json!({ "hosts": ["*.wild.test"] })),
                route("host-prefix", json!({ "hosts": ["pre.*"] })),
                route("path-exact", json!({ "path": "/exact" })),
                route("path-regex", json!({ "regex": "/items/[0-9]+" })),
                route("header-exact", json!({ "headers": [{ "name": "x-version", "exact": "2" }] })),
                route("header-prefix", json!({ "headers": [{ "name": "x-user", "prefix": "beta-" }] })),
                route("header-present", json!({ "headers": [{ "name": "x-debug", "present": true }] })),
                route("header-invert", json!({
                    "prefix": "/inv/",
                    "headers": [{ "name": "x-allow", "exact": "yes", "invert": true }],
                })),
                route("path-prefix", json!({ "prefix": "/api/" })),
            ],
        }],
        "clusters": upstreams.iter().map(|u| cluster(u.name(), [u.addr()])).collect::<Vec<_>>(),
    }))
    .await;

    // (host, path, headers, the replica that must answer, or None for 404 no_route)
    let cases: &[Case] = &[
        ("api.example.com", "/", &[], Some("host-exact")),
        ("api.example.com:8080", "/", &[], Some("host-exact")),
        ("api.example.com", "/api/x", &[], Some("host-exact")),
        ("a.wild.test", "/", &[], Some("host-suffix")),
        ("wild.test", "/", &[], None),
        ("pre.anything.io", "/", &[], Some("host-prefix")),
        ("other", "/exact", &[], Some("path-exact")),
        ("other", "/exact?q=1", &[], Some("path-exact")),
        ("other", "/exact/more", &[], None),
        ("other", "/items/42", &[], Some("path-regex")),
        ("other", "/items/42x", &[], None),
        ("other", "/", &[("x-version", "2")], Some("header-exact")),
        ("other", "/", &[("x-version", "3")], None),
        ("other", "/", &[("x-user", "beta-7")], Some("header-prefix")),
        ("other", "/", &[("x-user", "gamma-7")], None),
        ("other", "/", &[("x-debug", "")], Some("header-present")),
        ("other", "/inv/a", &[], Some("header-invert")),
        ("other", "/inv/a", &[("x-allow", "yes")], None),
        ("other", "/api/users", &[], Some("path-prefix")),
        ("other", "/apix", &[], None),
    ];
    let mut client = Client::http1(proxy.listener("in")).await;
    for (host, path, headers, want) in cases {
        let mut req = client.get(path).host(host);
        for (n, v) in *headers {
            req = req.header(n, v);
        }
        let reply = req.send().await;
        match want {
            Some(name) => {
                assert_eq!(reply.status, 200, "{host} {path} {headers:?}: {reply:?}");
                assert_eq!(reply.upstream(), *name, "{host} {path} {headers:?}");
            }
            None => {
                assert_eq!(
                    reply.status, 404,
                    "{host} {path} {headers:?} must match no route: {reply:?}"
                );
                assert_eq!(reply.sidecar_error(), Some("no_route"));
            }
        }
    }
    // HTTP/2 routes by :authority.
    let reply = Client::h2c(proxy.listener("in"))
        .await
        .get("/")
        .host("api.example.com")
        .send()
        .await;
    assert_eq!(reply.upstream(), "host-exact");
}

/// An upstream may close a keep-alive connection while it sits idle in the proxy's pool (its
/// keep-alive timeout). The next request must go out on a fresh connection, unseen by the
/// client, and the closed one must have given back its `max_connections` unit and its gauge.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_unseen() {
    let (upstream, proxy, mut client) =
        idle_close_after_one_request(json!({ "circuit_breakers": { "max_connections": 1 } })).await;
    let reply = client.get("/two").send().await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        upstream.connections(),
        2,
        "the second request went out on a new connection"
    );
    open_connections_reach(&proxy, 1.0, Duration::from_secs(5)).await;
}

/// An idle pooled connection that the upstream closes is dropped at once: it leaves the
/// gauge and gives back its `max_connections` unit then, not at the next request or the
/// pool's periodic sweep (every 10 s here).
#[tokio::test]
async fn an_idle_connection_the_upstream_closes_is_dropped_at_once() {
    let (_upstream, proxy, mut client) =
        idle_close_after_one_request(json!({ "idle_timeout": "60s" })).await;
    // Well under the sweep's 10 s.
    open_connections_reach(&proxy, 0.0, Duration::from_secs(3)).await;
    assert_eq!(client.get("/two").send().await.status, 200);
}

/// A sidecar whose cluster (with `settings` added) is an upstream that closes connections
/// idle for 100 ms; one request has been answered and its connection closed by the upstream.
async fn idle_close_after_one_request(
    settings: serde_json::Value,
) -> (e2e_tests::upstream::tcp::TcpUpstream, Sidecar, Client) {
    let upstream = e2e_tests::upstream::tcp::early_answer(Duration::from_millis(100)).await;
    let mut cluster = json!({ "name": "backend", "endpoints": [upstream.addr().to_string()] });
    if let (Some(c), Some(extra)) = (cluster.as_object_mut(), settings.as_object()) {
        c.extend(extra.clone());
    }
    let proxy = Sidecar::start(json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "backend" }] }],
        "clusters": [cluster],
    }))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    assert_eq!(client.get("/one").send().await.status, 200);
    // Counted while open and pooled (the upstream closes it 100 ms later).
    open_connections_reach(&proxy, 1.0, Duration::from_secs(1)).await;
    count_reaches("idle connections the upstream closed", 1, || {
        upstream.closed_idle()
    })
    .await;
    (upstream, proxy, client)
}

/// Waits (up to `within`) for the sidecar's open connections to cluster `backend` to read `n`.
async fn open_connections_reach(proxy: &Sidecar, n: f64, within: Duration) {
    let admin = proxy.admin();
    eventually(
        "the open upstream connections",
        within,
        async || match admin.metrics().await.sum(
            "sidecar_upstream_active_connections",
            &[("cluster", "backend")],
        ) {
            open if open == n => Ok(()),
            open => Err(open),
        },
    )
    .await;
}

/// An upstream may answer before it has read the request body (an early reply). The proxy
/// relays the answer at once; the rest of the body must still reach the upstream after the
/// response has ended, and the connection then serve the next request.
#[tokio::test]
async fn a_request_body_still_going_out_after_an_early_response_is_finished() {
    let upstream = e2e_tests::upstream::tcp::early_answer(Duration::from_secs(30)).await;
    let proxy = Sidecar::start(single_route_to(upstream.addr())).await;
    let mut conn = RawConn::connect(proxy.listener("in")).await;
    // The rest is more than one read's worth: it has to be carried on after the response.
    const REST: usize = 256 << 10;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: {}\r\n\r\nfirst",
        5 + REST
    );
    conn.write(head.as_bytes())
        .await
        .expect("write the head and the body's start");
    let head = conn
        .read_head(Duration::from_secs(5))
        .await
        .expect("the early answer");
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(
        conn.read_exact(2, Duration::from_secs(5)).await.unwrap(),
        b"ok"
    );

    conn.write(&vec![b'x'; REST])
        .await
        .expect("write the rest of the body");
    conn.write(b"GET /next HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .expect("write the next request");
    let head = conn
        .read_head(Duration::from_secs(5))
        .await
        .expect("an answer to the request after the early-answered one");
    assert_eq!(head.status, 200, "{head:?}");
    // Both bodies (the empty one of the GET too) reached the upstream whole. Whether the GET
    // used the same connection depends on whether it came before the first one was free.
    count_reaches("request bodies read upstream", 2, || upstream.bodies_read()).await;
}

/// A server may stream its answer while it still reads the request body, and a client may
/// read nothing until it has sent its whole body. The proxy must keep carrying the body
/// upstream while the answer backs up behind the client, or the three wait on each other.
#[tokio::test]
async fn a_request_body_keeps_going_out_while_the_answer_waits_for_the_client() {
    // The answer is more than the proxy's socket buffers towards a client that does not read
    // (4 MiB at most here); the body more than the client's and the proxy's receive buffers.
    const ANSWER: usize = 16 << 20;
    const BODY: usize = 64 << 20;
    let upstream = e2e_tests::upstream::tcp::answer_while_reading(ANSWER).await;
    let proxy = Sidecar::start(single_route_to(upstream.addr())).await;
    let mut conn = RawConn::connect(proxy.listener("in")).await;
    let head = format!("POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: {BODY}\r\n\r\n");
    let chunk = vec![b'x'; 1 << 20];
    let upload = async {
        conn.write(head.as_bytes()).await?;
        for _ in 0..BODY / chunk.len() {
            conn.write(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .expect("the whole body was taken while the answer waited for the client")
        .expect("write the body");
    count_reaches("request bodies read upstream", 1, || upstream.bodies_read()).await;

    let head = conn
        .read_head(Duration::from_secs(5))
        .await
        .expect("the answer's head");
    assert_eq!(head.status, 200, "{head:?}");
    let answer = conn
        .read_exact(ANSWER, Duration::from_secs(30))
        .await
        .expect("the whole answer");
    assert!(answer.iter().all(|&b| b == b'y'));
}

/// Waits (up to 5 s) for a peer's counter to reach `n`.
async fn count_reaches(what: &str, n: u64, count: impl Fn() -> u64) {
    eventually(what, Duration::from_secs(5), async || match count() {
        c if c == n => Ok(()),
        c => Err(c),
    })
    .await;
}

fn single_route_to(addr: std::net::SocketAddr) -> serde_json::Value {
    json!({
        "listeners": [{ "name": "in", "routes": [{ "name": "all", "cluster": "backend" }] }],
        "clusters": [cluster("backend", [addr])],
    })
}
