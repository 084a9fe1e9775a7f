//! Opaque TCP proxying: bytes copied both ways as they come, half-close passed on (one
//! side's EOF becomes a shutdown of the other's write side), and the connection closed when
//! no byte has moved in either direction for the idle timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::observed::ObservedStream;
use crate::telemetry::metrics::{ClusterStats, ListenerStats};

pub async fn proxy(down: TcpStream, cluster: Arc<Cluster>, idle: Duration, stats: &ListenerStats) {
    let _ = down.set_nodelay(true);
    proxy_stream(down, cluster, idle, stats).await
}

/// Proxy a downstream byte stream (a socket, or an mTLS session over one) to an endpoint of
/// `cluster`, over mTLS when the cluster is meshed.
pub async fn proxy_stream<D>(down: D, cluster: Arc<Cluster>, idle: Duration, stats: &ListenerStats)
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let Some(ep) = cluster.pick(None) else {
        tracing::warn!(cluster = %cluster.name, "tcp: no endpoint to connect to; closing");
        stats.local_reply("no_healthy_upstream");
        return;
    };
    let up = match tokio::time::timeout(
        cluster.config.connect_timeout.get(),
        TcpStream::connect(ep.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            cluster.stats.connect_failures.inc();
            ep.connect_failed();
            stats.local_reply("upstream_connect_failed");
            tracing::debug!(cluster = %cluster.name, upstream = %ep.addr, error = %e, "tcp: connect failed");
            return;
        }
        Err(_) => {
            cluster.stats.connect_failures.inc();
            ep.connect_failed();
            stats.local_reply("upstream_connect_timeout");
            return;
        }
    };
    let _ = up.set_nodelay(true);
    let _active = ep.start_request();
    match &cluster.mesh {
        Some(mesh) => match crate::tls::mesh_client::connect(&cluster, &ep, mesh, up, true).await {
            Ok(tls) => pipe(down, tls, idle, stats, &cluster.stats).await,
            Err(e) => stats.local_reply(e.reason()),
        },
        None => pipe(down, up, idle, stats, &cluster.stats).await,
    }
}

/// Connect to one address (an intercepted connection's original destination, or the app
/// behind an inbound listener) and copy, counting on `cluster` (`passthrough`,
/// `inbound_passthrough`): the original-destination cluster of Envoy, without a pool.
pub async fn proxy_to<D>(
    down: D,
    addr: SocketAddr,
    connect_timeout: Duration,
    idle: Duration,
    stats: &ListenerStats,
    cluster: &ClusterStats,
) where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let up = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            cluster.connect_failures.inc();
            stats.local_reply("upstream_connect_failed");
            tracing::debug!(upstream = %addr, error = %e, "tcp: connect failed");
            return;
        }
        Err(_) => {
            cluster.connect_failures.inc();
            stats.local_reply("upstream_connect_timeout");
            return;
        }
    };
    let _ = up.set_nodelay(true);
    pipe(down, up, idle, stats, cluster).await;
}

/// Copy both ways until both sides are done or nothing has moved for `idle`.
async fn pipe<D, U>(down: D, up: U, idle: Duration, stats: &ListenerStats, cluster: &ClusterStats)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    cluster.connections.inc();
    cluster.active_connections.inc();
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let on_read = |bytes: Counter| {
        let last = last.clone();
        move |n: usize| {
            bytes.inc_by(n as u64);
            last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    };
    let mut a = ObservedStream::new(down, on_read(stats.bytes_upstream.clone()));
    let mut b = ObservedStream::new(up, on_read(stats.bytes_downstream.clone()));
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let idle_deadline = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            _ = &mut copy => break,
            _ = tokio::time::sleep_until(idle_deadline) => {
                let now_ms = epoch.elapsed().as_millis() as u64;
                if now_ms.saturating_sub(last.load(Ordering::Relaxed)) >= idle.as_millis() as u64 {
                    tracing::debug!("tcp: idle timeout; closing");
                    break;
                }
            }
        }
    }
    cluster.active_connections.dec();
}
