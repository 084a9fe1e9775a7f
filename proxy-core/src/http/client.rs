//! Upstream connections: connect with a deadline, keep HTTP/1 connections in a per-endpoint
//! idle pool, share one multiplexed HTTP/2 connection per endpoint.
//!
//! The pool is a short critical section (push/pop on a `Vec`) behind a mutex that is never
//! held across an await. A request sent on a pooled connection that the upstream closed in
//! the meantime is not lost: hyper hands it back unsent and it goes out on a fresh connection.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::body::RequestBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::cluster::{Cluster, Endpoint};
use crate::config::{self, UpstreamProtocol};
use crate::error::ProxyError;
use crate::resilience::limits::Permit;

const UNKNOWN: u8 = 0;
const ALPN_H1: u8 = 1;
const ALPN_H2: u8 = 2;

type H1 = http1::SendRequest<RequestBody>;
type H2 = http2::SendRequest<RequestBody>;

/// A connection ready to carry one request.
pub enum Sender {
    H1(H1),
    H2(H2),
}

struct Idle {
    tx: H1,
    since: Instant,
}

/// Per-endpoint connection pool.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    h2: Mutex<Option<H2>>,
    /// TLS endpoints: what ALPN chose last (`UNKNOWN`, `ALPN_H1`, `ALPN_H2`), and a gate so
    /// that, until HTTP/1.1 is known, a burst opens one connection to share, not one each.
    alpn: AtomicU8,
    connecting: tokio::sync::Mutex<()>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Pool {
    pub fn new(cfg: &config::Cluster) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            alpn: AtomicU8::new(UNKNOWN),
            connecting: tokio::sync::Mutex::new(()),
            max_idle: cfg.max_idle_connections,
            idle_timeout: cfg.idle_timeout.get(),
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// A pooled connection still open and idle for less than the idle timeout at `now`.
    fn take_idle(&self, now: Instant) -> Option<H1> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(i) = idle.pop() {
            if !i.tx.is_closed() && now.saturating_duration_since(i.since) < self.idle_timeout {
                return Some(i.tx);
            }
        }
        None
    }

    /// The endpoint's open HTTP/2 connection, if it has one.
    fn shared_h2(&self) -> Option<H2> {
        self.h2
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .filter(|tx| !tx.is_closed())
    }

    /// Give a connection back after its response ended.
    pub fn put(&self, tx: H1, now: Instant) {
        if tx.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(Idle { tx, since: now });
        }
    }

    /// Close pooled connections idle for longer than the idle timeout.
    pub fn evict_expired(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            let timeout = self.idle_timeout;
            idle.retain(|i| !i.tx.is_closed() && i.since.elapsed() < timeout);
        }
    }
}

/// Open a new connection to `ep` and do the HTTP handshake.
async fn connect(cluster: &Cluster, ep: &Endpoint) -> Result<Sender, ProxyError> {
    // The connection holds its max_connections unit until it closes.
    let unit = match &cluster.limits {
        Some(l) => Some(l.connections.acquire(&cluster.name)?),
        None => None,
    };
    let stream = match tokio::time::timeout(
        cluster.config.connect_timeout.get(),
        TcpStream::connect(ep.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            cluster.stats.connect_failures.inc();
            ep.connect_failed();
            return Err(ProxyError::ConnectFailed {
                addr: ep.addr,
                source,
            });
        }
        Err(_) => {
            cluster.stats.connect_failures.inc();
            ep.connect_failed();
            return Err(ProxyError::ConnectTimeout(ep.addr));
        }
    };
    let _ = stream.set_nodelay(true);
    match (&cluster.mesh, &cluster.tls) {
        (Some(mesh), _) => {
            let tls = crate::tls::mesh_client::connect(cluster, ep, mesh, stream, false).await?;
            handshake(
                cluster,
                ep,
                TokioIo::new(tls),
                cluster.config.protocol,
                unit,
            )
            .await
        }
        (None, Some(tls)) => {
            let tls_failed = |detail: String| {
                cluster.stats.connect_failures.inc();
                ep.connect_failed();
                ProxyError::UpstreamTls {
                    addr: ep.addr,
                    kind: "handshake",
                    detail,
                }
            };
            let connector = tls.as_ref().map_err(|e| tls_failed(e.clone()))?;
            let (stream, h2) = connector
                .connect(stream)
                .await
                .map_err(|e| tls_failed(e.to_string()))?;
            // The server's ALPN choice decides how this connection is driven.
            let protocol = if h2 {
                UpstreamProtocol::Http2
            } else {
                UpstreamProtocol::Http1
            };
            handshake(cluster, ep, TokioIo::new(stream), protocol, unit).await
        }
        (None, None) => {
            handshake(
                cluster,
                ep,
                TokioIo::new(stream),
                cluster.config.protocol,
                unit,
            )
            .await
        }
    }
}

/// The HTTP handshake over a connected byte stream (a socket, or a TLS session over one);
/// the connection task holds the `max_connections` unit until the connection closes.
async fn handshake<I>(
    cluster: &Cluster,
    ep: &Endpoint,
    io: I,
    protocol: UpstreamProtocol,
    unit: Option<Permit>,
) -> Result<Sender, ProxyError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let active = cluster.stats.active_connections.clone();
    cluster.stats.connections.inc();
    let handshake_failed =
        |e: hyper::Error| ProxyError::Reset(format!("handshake with {}: {e}", ep.addr));
    match protocol {
        UpstreamProtocol::Http1 => {
            let (tx, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            active.inc();
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
                active.dec();
                drop(unit);
            });
            Ok(Sender::H1(tx))
        }
        UpstreamProtocol::Http2 => {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            active.inc();
            tokio::spawn(async move {
                let _ = conn.await;
                active.dec();
                drop(unit);
            });
            Ok(Sender::H2(tx))
        }
    }
}

/// A connection for one request sent at `now`: pooled if one is ready, else new (its
/// connect time, for the tap, goes to `connect_time`).
pub async fn checkout(
    cluster: &Cluster,
    ep: &Endpoint,
    now: Instant,
    connect_time: &mut Option<Duration>,
) -> Result<Sender, ProxyError> {
    match cluster.config.protocol {
        UpstreamProtocol::Http1 => {
            // A TLS cluster's server may have chosen HTTP/2 by ALPN: that connection is shared.
            let mut _gate = None;
            if cluster.tls.is_some() {
                if let Some(tx) = ep.pool.shared_h2() {
                    return Ok(Sender::H2(tx));
                }
                if ep.pool.alpn.load(Ordering::Relaxed) != ALPN_H1 {
                    let g = ep.pool.connecting.lock().await;
                    if let Some(tx) = ep.pool.shared_h2() {
                        return Ok(Sender::H2(tx));
                    }
                    _gate = Some(g);
                }
            }
            while let Some(mut tx) = ep.pool.take_idle(now) {
                if tx.ready().await.is_ok() {
                    return Ok(Sender::H1(tx));
                }
            }
            // Waiting for a new connection is what max_pending_requests bounds.
            let _pending = match &cluster.limits {
                Some(l) => Some(l.pending.acquire(&cluster.name)?),
                None => None,
            };
            // Boxed: the connect future is large and rare; inline, every request's future
            // would carry (and move) its space.
            let started = Instant::now();
            let sender = Box::pin(connect(cluster, ep)).await;
            *connect_time = Some(started.elapsed());
            let sender = sender?;
            let alpn = match &sender {
                Sender::H1(_) => ALPN_H1,
                Sender::H2(_) => ALPN_H2,
            };
            ep.pool.alpn.store(alpn, Ordering::Relaxed);
            if let (Sender::H2(tx), Ok(mut slot)) = (&sender, ep.pool.h2.lock()) {
                *slot = Some(tx.clone());
            }
            Ok(sender)
        }
        UpstreamProtocol::Http2 => {
            if let Some(tx) = ep.pool.shared_h2() {
                return Ok(Sender::H2(tx));
            }
            let _pending = match &cluster.limits {
                Some(l) => Some(l.pending.acquire(&cluster.name)?),
                None => None,
            };
            let started = Instant::now();
            let sender = Box::pin(connect(cluster, ep)).await;
            *connect_time = Some(started.elapsed());
            let sender = sender?;
            if let (Sender::H2(tx), Ok(mut slot)) = (&sender, ep.pool.h2.lock()) {
                *slot = Some(tx.clone());
            }
            Ok(sender)
        }
    }
}

/// Send `req` (at `now`, the caller's clock reading); on a pooled HTTP/1 connection that
/// turned out to be closed before the request went out, resend it once on a fresh
/// connection. Returns the response and, for HTTP/1, the connection to return to the pool
/// when the response body ends.
pub async fn send(
    cluster: &Cluster,
    ep: &Endpoint,
    mut req: Request<RequestBody>,
    now: Instant,
    connect_time: &mut Option<Duration>,
) -> Result<(Response<Incoming>, Option<H1>), ProxyError> {
    for attempt in 0..2 {
        match checkout(cluster, ep, now, connect_time).await? {
            Sender::H1(mut tx) => match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Some(tx))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if attempt == 0 => req = unsent,
                    _ => return Err(ProxyError::from_upstream(e.error())),
                },
            },
            Sender::H2(mut tx) => match tx
                .try_send_request({
                    // Formed for HTTP/1 when the cluster's protocol is left to ALPN.
                    crate::tls::upstream::into_h2_form(&mut req);
                    req
                })
                .await
            {
                Ok(resp) => return Ok((resp, None)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if attempt == 0 => {
                        if let Ok(mut slot) = ep.pool.h2.lock() {
                            *slot = None;
                        }
                        req = unsent;
                    }
                    _ => return Err(ProxyError::from_upstream(e.error())),
                },
            },
        }
    }
    unreachable!("the loop returns on its second attempt")
}
