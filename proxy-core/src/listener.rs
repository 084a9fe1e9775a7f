//! Listeners: bind, accept, and hand each connection to the HTTP server, the TCP proxy, or
//! (intercepting listeners) `intercept::connection`, which reads its original destination.
//! Each connection task is tracked so a drain can wait for them all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::ListenerProtocol;
use crate::http::proxy::ListenerCtx;
use crate::http::supervise::Supervisor;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;

/// Bind a listener socket with the options a proxy wants (address reuse, a deep backlog).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

pub struct Accept {
    pub name: String,
    pub listener: TcpListener,
    pub snapshot: Arc<arc_swap::ArcSwap<Snapshot>>,
    pub metrics: Metrics,
    /// Stop accepting when this turns true.
    pub stop: watch::Receiver<bool>,
    /// Ask open connections to finish when this turns true (`http::supervise`).
    pub drain: watch::Receiver<bool>,
    pub tracker: TaskTracker,
}

/// Accept until stopped. Accept errors (e.g. out of file descriptors) back off briefly
/// instead of spinning.
pub async fn run(a: Accept) {
    let stats = a.metrics.listener(&a.name);
    let ctx = Arc::new(ListenerCtx {
        name: a.name.as_str().into(),
        stats,
        snapshot: a.snapshot.clone(),
        supervisor: Supervisor::start(a.drain.clone()),
    });
    let mut stop = a.stop;
    loop {
        let accepted = tokio::select! {
            r = a.listener.accept() => r,
            _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => break,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = %a.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let snap = a.snapshot.load();
        let Some(routes) = snap.listeners.get(&a.name).cloned() else {
            continue;
        };
        drop(snap);
        let ctx = ctx.clone();
        // Every path but plain HTTP/1 is boxed (here, and HTTP/2 in `serve_as`): their
        // futures (detection, a TLS session, HTTP over either, a TCP relay) made every
        // connection's task 12 KB, copied five times on spawn, where plain HTTP/1 needs a
        // fraction of that. Those paths pay one allocation per connection, beside a
        // handshake, a detection or an HTTP/2 preface; plain HTTP/1 pays nothing.
        a.tracker.spawn(async move {
            ctx.stats.connections.inc();
            ctx.stats.active_connections.inc();
            let cfg = &routes.config;
            if cfg.intercept.is_some() {
                Box::pin(crate::intercept::connection::serve(
                    stream,
                    remote,
                    routes,
                    ctx.clone(),
                ))
                .await;
            } else if let Some(tls) = routes.tls.clone() {
                Box::pin(crate::tls::server::serve(
                    stream,
                    remote,
                    tls,
                    routes.clone(),
                    ctx.clone(),
                ))
                .await;
            } else if let (ListenerProtocol::Tcp, Some(cluster)) = (cfg.protocol, &routes.cluster) {
                Box::pin(crate::tcp::proxy(
                    stream,
                    cluster.clone(),
                    cfg.idle_timeout.get(),
                    &ctx.stats,
                ))
                .await;
            } else {
                crate::http::server::serve(stream, remote, cfg, ctx.clone()).await;
            }
            ctx.stats.active_connections.dec();
        });
    }
    tracing::info!(listener = %a.name, "stopped accepting");
}
