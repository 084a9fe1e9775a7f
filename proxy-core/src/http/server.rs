//! Serve one accepted downstream connection with hyper, as HTTP/1, HTTP/2, or either
//! (detected from the h2c prior-knowledge preface), until it closes or a drain asks it to
//! finish gracefully (HTTP/1: close after the in-flight response; HTTP/2: GOAWAY).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::proxy::{self, ListenerCtx};
use crate::config::{Listener, ListenerProtocol};

/// hyper's own parser limits sit above ours, so that requests between our limit and its
/// get our explained 431 rather than hyper's bare one.
fn hyper_header_slack(cfg: &Listener) -> (usize, usize) {
    let max_headers = cfg.max_request_headers + 32;
    let max_buf = (cfg.max_request_headers_size.as_usize() + 16 * 1024).max(8192 + 1024);
    (max_headers, max_buf)
}

pub async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    cfg: &Listener,
    ctx: Arc<ListenerCtx>,
    mut drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let svc = service_fn(move |req| proxy::handle(ctx.clone(), remote, req));
    let (max_headers, max_buf) = hyper_header_slack(cfg);
    let header_limit = u32::try_from(cfg.max_request_headers_size.bytes()).unwrap_or(u32::MAX);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.request_header_timeout.get())
        .max_headers(max_headers)
        .max_buf_size(max_buf)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .max_header_list_size(header_limit.saturating_mul(2));
    let builder = match cfg.protocol {
        ListenerProtocol::Http1 => builder.http1_only(),
        ListenerProtocol::Http2 => builder.http2_only(),
        _ => builder,
    };
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%remote, error = %e, "downstream connection ended with an error");
            }
        }
        _ = async { drain.wait_for(|d| *d).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
