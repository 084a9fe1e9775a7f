//! The harness checked against itself, with no proxy in between: when an end-to-end test
//! fails, this file passing says the fault is in the proxy, not in the test's own servers and
//! clients.

use std::time::Duration;

use e2e_tests::body;
use e2e_tests::client::{Client, RawConn};
use e2e_tests::load;
use e2e_tests::upstream::tcp::{self, EOF_REPLY};
use e2e_tests::upstream::{self, Echoed, Reply};
use e2e_tests::wait::{equal, eventually};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Version};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn trailer(name: &'static str, value: &'static str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(name, HeaderValue::from_static(value));
    t
}

#[tokio::test]
async fn echo_describes_the_request_over_both_protocols() {
    let h1 = upstream::http1().name("one").run().await;
    let h2 = upstream::h2c().name("two").run().await;
    for (mut client, name, version) in [
        (Client::http1(h1.addr()).await, "one", "HTTP/1.1"),
        (Client::h2c(h2.addr()).await, "two", "HTTP/2.0"),
    ] {
        let reply = client
            .post("/p?q=1")
            .host("svc.test")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(body::full("abc"))
            .send()
            .await;
        assert_eq!(reply.upstream(), name);
        let seen: Echoed = reply.echoed();
        assert_eq!(
            (seen.method.as_str(), seen.uri.as_str()),
            ("POST", "/p?q=1")
        );
        assert_eq!(seen.version, version);
        assert_eq!(seen.header_all("x-a"), ["1", "2"]);
        assert_eq!(seen.body, body::digest(b"abc"));
    }
    assert_eq!((h1.requests(), h2.requests()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_bodies_round_trip_with_their_digest() {
    const LEN: u64 = (8 << 20) + 12_345;
    let server = upstream::http1()
        .route("/down", Reply::pattern(LEN))
        .run()
        .await;
    let mut client = Client::http1(server.addr()).await;
    let expected = body::pattern_digest(LEN);
    assert_eq!(expected.len, LEN);
    let up = client.post("/up").body(body::pattern(LEN)).send().await;
    assert_eq!(up.echoed().body, expected);
    let down = client.get("/down").send().await;
    assert_eq!(body::digest(&down.body), expected);
    assert_ne!(
        body::pattern_digest(LEN - 1),
        expected,
        "the digest covers every byte"
    );
}

#[tokio::test]
async fn trailers_travel_both_ways_over_both_protocols() {
    let h1 = upstream::http1()
        .fallback(Reply::echo().trailer("x-sum", "9"))
        .run()
        .await;
    let h2 = upstream::h2c()
        .fallback(Reply::echo().trailer("x-sum", "9"))
        .run()
        .await;
    for mut client in [Client::http1(h1.addr()).await, Client::h2c(h2.addr()).await] {
        let reply = client
            .post("/")
            .header("te", "trailers")
            .header("trailer", "x-req")
            .body(body::with_trailers("data", trailer("x-req", "7")))
            .send()
            .await;
        assert_eq!(reply.echoed().trailer("x-req"), Some("7"));
        let t = reply.trailers.expect("response trailers");
        assert_eq!(t.get("x-sum").unwrap(), "9");
    }
}

#[tokio::test]
async fn websocket_echo_answers_the_upgrade() {
    let server = upstream::http1()
        .route("/ws", Reply::websocket_echo())
        .run()
        .await;
    let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("ws://{}/ws", server.addr()), stream)
            .await
            .expect("the upgrade is accepted");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
}

#[tokio::test]
async fn raw_connections_read_interim_and_final_heads() {
    let server = upstream::http1().run().await;
    let mut conn = RawConn::connect(server.addr()).await;
    conn.write(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        conn.read_head(Duration::from_secs(2)).await.unwrap().status,
        100
    );
    conn.write(b"abc").await.unwrap();
    let head = conn.read_head(Duration::from_secs(2)).await.unwrap();
    assert_eq!(head.status, 200);
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    let seen: Echoed =
        serde_json::from_slice(&conn.read_exact(len, Duration::from_secs(2)).await.unwrap())
            .unwrap();
    assert_eq!(seen.body, body::digest(b"abc"));
}

#[tokio::test]
async fn tcp_echo_answers_a_half_close() {
    let echo = tcp::echo().await;
    let mut conn = RawConn::connect(echo.addr()).await;
    conn.write(b"bye").await.unwrap();
    conn.shutdown_write().await.unwrap();
    let got = conn.read_to_close(Duration::from_secs(2)).await.unwrap();
    assert_eq!(got, [&b"bye"[..], EOF_REPLY].concat());
}

#[tokio::test]
async fn never_accepting_makes_connects_time_out() {
    let peer = tcp::never_accepting().await;
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(peer.addr()),
    )
    .await;
    assert!(attempt.is_err(), "a connect completed: {attempt:?}");
}

#[tokio::test]
async fn misbehaving_peers_fail_an_honest_client() {
    let reset = tcp::close_after_request_head().await;
    let garbage = tcp::answer(b"NOT HTTP\r\n\r\n").await;
    let err = Client::http1(reset.addr())
        .await
        .get("/")
        .try_send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connection closed"), "{err}");
    let err = Client::http1(garbage.addr())
        .await
        .get("/")
        .try_send()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid"), "{err}");
}

#[tokio::test]
async fn hanging_replies_count_as_active_until_the_client_leaves() {
    let server = upstream::http1().fallback(Reply::hang()).run().await;
    let addr = server.addr();
    let pending = tokio::spawn(async move { Client::http1(addr).await.get("/").try_send().await });
    eventually(
        "the request to be active",
        Duration::from_secs(2),
        async || equal(server.active(), 1),
    )
    .await;
    pending.abort();
    eventually(
        "the request to end with its client",
        Duration::from_secs(2),
        async || equal(server.active(), 0),
    )
    .await;
}

#[tokio::test]
async fn delayed_replies_wait() {
    let server = upstream::http1()
        .fallback(Reply::echo().after(Duration::from_millis(200)))
        .run()
        .await;
    let started = Instant::now();
    let reply = Client::http1(server.addr()).await.get("/").send().await;
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(reply.version, Version::HTTP_11);
}

#[tokio::test]
async fn load_loops_are_bounded_and_count_failures() {
    let server = upstream::http1()
        .route("/bad", Reply::echo().status(500))
        .run()
        .await;
    let good = load::start(server.addr(), "/", 40, Duration::from_secs(10))
        .stop_when_done()
        .await;
    assert_eq!((good.sent, good.failures.len()), (40, 0), "{good:?}");
    let bad = load::start(server.addr(), "/bad", 3, Duration::from_secs(10))
        .stop_when_done()
        .await;
    assert_eq!((bad.sent, bad.failures.len()), (3, 3), "{bad:?}");
}
