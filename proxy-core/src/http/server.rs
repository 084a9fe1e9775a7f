//! Serve one accepted downstream connection with hyper, as HTTP/1 or HTTP/2, until it closes
//! or a drain asks it to finish gracefully (HTTP/1: close after the in-flight response;
//! HTTP/2: GOAWAY).
//!
//! `auto` listeners tell the two apart by peeking at the first bytes for the h2c
//! prior-knowledge preface (`detect::sniff_h2`), then hand the socket to the plain HTTP/1
//! or HTTP/2 server: one `peek` per connection instead of a rewinding wrapper around every
//! read. Intercepted connections arrive here already classified (`serve_as`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use std::task::Poll;

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use super::proxy::{self, Downstream, ListenerCtx};
use super::supervise::Finish;
use crate::config::{Listener, ListenerProtocol};
use crate::observed::ObservedStream;
use crate::tls::server::PeerIdentity;
use prometheus_client::metrics::counter::Counter;

pub async fn serve(stream: TcpStream, remote: SocketAddr, cfg: &Listener, ctx: Arc<ListenerCtx>) {
    let _ = stream.set_nodelay(true);
    let h2 = match cfg.protocol {
        ListenerProtocol::Http2 => true,
        ListenerProtocol::Http1 | ListenerProtocol::Tcp => false,
        ListenerProtocol::Auto => {
            match crate::detect::sniff_h2(&stream, cfg.request_header_timeout.get()).await {
                Some(h2) => h2,
                None => return,
            }
        }
    };
    serve_as(stream, Downstream::new(remote), h2, cfg, ctx).await;
}

/// Serve HTTP on an established byte stream (a TCP socket, or an mTLS session with the
/// peer's identity) whose HTTP version is already known.
pub async fn serve_conn<S>(
    stream: S,
    remote: SocketAddr,
    peer: Option<Arc<PeerIdentity>>,
    h2: bool,
    cfg: &Listener,
    ctx: Arc<ListenerCtx>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut down = Downstream::new(remote);
    down.peer = peer;
    serve_as(stream, down, h2, cfg, ctx).await;
}

/// Serve a connection whose protocol is already known (`h2`: HTTP/2, else HTTP/1), for
/// a client described by `down` (an intercepted connection's, or an mTLS peer's).
pub async fn serve_as<S>(
    stream: S,
    down: Downstream,
    h2: bool,
    cfg: &Listener,
    ctx: Arc<ListenerCtx>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = down.remote;
    let down = Arc::new(down);
    // The connection's timeouts and a drain are watched by the listener's supervisor: the
    // connection task wakes several times per request, and polling a oneshot there is much
    // cheaper than polling timers and a watch channel (or resetting a header timer for
    // every request, as hyper's own header timeout does).
    let header_timeout = (!h2).then(|| cfg.request_header_timeout.get());
    let (_watched, finish) =
        ctx.supervisor
            .watch(down.clone(), cfg.idle_timeout.get(), header_timeout);
    // The socket tells the supervisor when request bytes arrive (HTTP/1 heads only).
    let heads = (!h2).then(|| down.clone());
    let stream = ObservedStream::new(stream, move |_| {
        if let Some(d) = &heads {
            d.bytes_read();
        }
    });
    // Counted when the supervisor cuts a slow head (only HTTP/1 connections have a header
    // timeout).
    let header_timeouts = ctx.stats.header_timeouts.clone();
    let conn = Arc::new(proxy::ConnCtx {
        listener: ctx,
        down,
    });
    let svc = service_fn(move |req| proxy::handle(conn.clone(), req));
    let io = TokioIo::new(stream);
    if h2 {
        let header_limit = u32::try_from(cfg.max_request_headers_size.bytes()).unwrap_or(u32::MAX);
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .max_header_list_size(header_limit.saturating_mul(2))
            .serve_connection(io, svc);
        // Boxed: an HTTP/2 connection's state is several times an HTTP/1 one's, and inline
        // every connection's task would carry (and copy on spawn) its room.
        Box::pin(drive(
            conn,
            |c| c.graceful_shutdown(),
            finish,
            remote,
            &header_timeouts,
        ))
        .await;
    } else {
        // hyper's own parser limits sit above ours, so that requests between our limit and
        // its get our explained 431 rather than its bare one.
        let max_buf = (cfg.max_request_headers_size.as_usize() + 16 * 1024).max(8192 + 1024);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(max_buf)
            .keep_alive(true);
        if let Some(n) = parser_max_headers(cfg.max_request_headers) {
            builder.max_headers(n);
        }
        let conn = builder.serve_connection(io, svc).with_upgrades();
        drive(
            conn,
            |c| c.graceful_shutdown(),
            finish,
            remote,
            &header_timeouts,
        )
        .await;
    }
}

/// The header-field count hyper's parser allows, `None` for its default of 100.
///
/// The parser's field array holds 100 in place; any other limit above that makes it
/// allocate two arrays for every request head (a tenth of a request's allocations).
/// So the parser sits 32 fields above our explained `too_many_headers` limit while that
/// stays within 100, and at 100 when our limit is up to 100 (the default: more than 100
/// fields then get hyper's bare 431); only a limit set above 100 pays for a larger array.
fn parser_max_headers(limit: usize) -> Option<usize> {
    const INLINE: usize = 100;
    match limit + 32 {
        n if n <= INLINE => Some(n),
        _ if limit <= INLINE => None,
        n => Some(n),
    }
}

/// Run a connection to its end; when `finish` fires, end it as asked: gracefully (finish
/// the request in flight first) or at once.
async fn drive<C>(
    conn: C,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
    mut finish: oneshot::Receiver<Finish>,
    remote: SocketAddr,
    header_timeouts: &Counter,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    // The receiver is polled once, which leaves this task's waker with it; after that a
    // look at its state is enough, since the supervisor's send wakes this task. Polling it
    // on every wake-up of a busy connection (several per request) cost about a hundred
    // instructions a request.
    let mut registered = false;
    let told = std::future::poll_fn(|cx| {
        if let Poll::Ready(res) = conn.as_mut().poll(cx) {
            return Poll::Ready(Err(res));
        }
        if registered {
            return match finish.try_recv() {
                Ok(how) => Poll::Ready(Ok(Some(how))),
                Err(TryRecvError::Empty) => Poll::Pending,
                // The supervisor is gone (the listener stopped): finish up.
                Err(TryRecvError::Closed) => Poll::Ready(Ok(None)),
            };
        }
        registered = true;
        Pin::new(&mut finish).poll(cx).map(|how| Ok(how.ok()))
    })
    .await;
    let res = match told {
        Err(res) => res,
        Ok(Some(Finish::Now)) => {
            header_timeouts.inc();
            tracing::debug!(%remote, "request head incomplete past the header timeout; closing");
            return;
        }
        Ok(_) => {
            graceful_shutdown(conn.as_mut());
            conn.await
        }
    };
    if let Err(e) = res {
        tracing::debug!(%remote, error = %e, "downstream connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::parser_max_headers;

    #[test]
    fn parser_limit_stays_in_place_up_to_100_fields() {
        assert_eq!(parser_max_headers(20), Some(52));
        assert_eq!(parser_max_headers(68), Some(100));
        assert_eq!(parser_max_headers(100), None);
        assert_eq!(parser_max_headers(200), Some(232));
    }
}
