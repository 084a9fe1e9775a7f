//! Opaque TCP through a `protocol: tcp` listener: bytes both ways, half-close, idle timeout,
//! and the byte counters.

use std::time::Duration;

use e2e_tests::Sidecar;
use e2e_tests::body;
use e2e_tests::client::RawConn;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::tcp::{self, EOF_REPLY, TcpUpstream};
use e2e_tests::wait::{equal, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn proxy(echo: &TcpUpstream, idle_timeout: &str) -> Sidecar {
    Sidecar::start(json!({
        "listeners": [{
            "name": "tcp",
            "protocol": "tcp",
            "cluster": "echo",
            "idle_timeout": idle_timeout,
        }],
        "clusters": [cluster("echo", [echo.addr()])],
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_copied_both_ways() {
    let echo = tcp::echo().await;
    let proxy = proxy(&echo, "10s").await;
    const LEN: usize = 4 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i * 31 % 253) as u8).collect();
    let expected = body::digest(&data);

    let stream = TcpStream::connect(proxy.listener("tcp"))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // Write and read at once: the echo sends back while we send, and neither side may wait
    // for the other's buffers to drain.
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.expect("send through the proxy");
        wr.shutdown().await.expect("half-close");
    });
    let mut got = Vec::with_capacity(LEN + EOF_REPLY.len());
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut got))
        .await
        .expect("the echo completes within 20s")
        .expect("read the echo");
    writer.await.expect("the writer finishes");
    assert!(got.ends_with(EOF_REPLY), "the upstream never saw our FIN");
    assert_eq!(
        body::digest(&got[..got.len() - EOF_REPLY.len()]),
        expected,
        "bytes changed on the way"
    );
}

#[tokio::test]
async fn half_close_is_passed_on_and_the_other_direction_stays_open() {
    let echo = tcp::echo().await;
    let proxy = proxy(&echo, "10s").await;
    let mut conn = RawConn::connect(proxy.listener("tcp")).await;
    conn.write(b"last words").await.expect("send");
    conn.shutdown_write().await.expect("half-close our side");
    // The upstream answers our FIN with EOF_REPLY, which must still reach us.
    let got = conn
        .read_to_close(Duration::from_secs(5))
        .await
        .expect("the proxy closes after the upstream");
    assert_eq!(got, [&b"last words"[..], EOF_REPLY].concat());
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    const IDLE: Duration = Duration::from_millis(500);
    let echo = tcp::echo().await;
    let proxy = proxy(&echo, "500ms").await;

    let busy = async {
        let mut conn = RawConn::connect(proxy.listener("tcp")).await;
        // Bytes every 150 ms for three idle periods: never idle long enough to be closed.
        for i in 0..10u8 {
            conn.write(&[i])
                .await
                .expect("a busy connection stays open");
            let back = conn
                .read_exact(1, Duration::from_secs(1))
                .await
                .expect("echoed");
            assert_eq!(back, [i]);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let idle = async {
        let mut conn = RawConn::connect(proxy.listener("tcp")).await;
        conn.write(b"ping").await.expect("send");
        assert_eq!(
            conn.read_exact(4, Duration::from_secs(1))
                .await
                .expect("echoed"),
            b"ping"
        );
        let quiet_since = Instant::now();
        conn.read_to_close(Duration::from_secs(5))
            .await
            .expect("an idle connection is closed");
        quiet_since.elapsed()
    };
    let ((), closed_after) = tokio::join!(busy, idle);
    assert!(
        closed_after >= IDLE - Duration::from_millis(100)
            && closed_after < IDLE + Duration::from_secs(2),
        "idle_timeout is {IDLE:?}; the idle connection was closed after {closed_after:?}"
    );
}

#[tokio::test]
async fn bytes_are_counted_per_direction() {
    let echo = tcp::echo().await;
    let proxy = proxy(&echo, "10s").await;
    let sent = b"0123456789".repeat(100);
    let mut conn = RawConn::connect(proxy.listener("tcp")).await;
    conn.write(&sent).await.expect("send");
    conn.shutdown_write().await.expect("half-close");
    let got = conn
        .read_to_close(Duration::from_secs(5))
        .await
        .expect("closed");
    assert_eq!(got.len(), sent.len() + EOF_REPLY.len());

    let admin = proxy.admin();
    let counted = |direction: &'static str| async move {
        admin.metrics().await.sum(
            "sidecar_tcp_bytes_total",
            &[("listener", "tcp"), ("direction", direction)],
        )
    };
    eventually(
        "upstream bytes to be counted",
        Duration::from_secs(5),
        async || equal(counted("upstream").await, sent.len() as f64),
    )
    .await;
    eventually(
        "downstream bytes to be counted",
        Duration::from_secs(5),
        async || equal(counted("downstream").await, got.len() as f64),
    )
    .await;
    let m = admin.metrics().await;
    assert_eq!(
        m.sum(
            "sidecar_downstream_connections_total",
            &[("listener", "tcp")]
        ),
        1.0
    );
    assert_eq!(echo.connections(), 1);
}
