//! `hyper-floor LISTEN UPSTREAM`: the least an HTTP/1 reverse proxy built on the sidecar's own
//! stack (hyper, tokio's current-thread runtime, the workspace release profile) can do: one
//! upstream, a keep-alive pool, requests and responses passed through untouched. No routing,
//! headers, timeouts, metrics or logs.
//!
//! It is the `floor` target of `tests/benches/proxy-bench.sh`: what the sidecar costs above
//! it is the price of its own per-request work, and what it costs against nginx is the price
//! of the stack. Not a product: every error ends the connection it happened on.
//!
//! SIGTERM ends it through a return from `main`, not by the signal's default action, so
//! that a build instrumented for profile-guided optimisation writes its profile when the
//! benchmark stops it: the floor can be built the way the sidecar ships
//! (tests/benches/README.md, "A profile-guided floor").

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

type Sender = client::SendRequest<Incoming>;
type Pool = Rc<RefCell<Vec<Sender>>>;

/// The upstream's response body; its connection goes back to the pool when it ends.
struct Pooled {
    inner: Incoming,
    tx: Option<Sender>,
    pool: Pool,
}

impl Pooled {
    fn give_back(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.pool.borrow_mut().push(tx);
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.give_back();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A pooled connection ready for a request, or a new one.
async fn checkout(pool: &Pool, upstream: SocketAddr) -> std::io::Result<Sender> {
    loop {
        let idle = pool.borrow_mut().pop();
        match idle {
            Some(mut tx) => {
                if tx.ready().await.is_ok() {
                    return Ok(tx);
                }
            }
            None => {
                let stream = TcpStream::connect(upstream).await?;
                stream.set_nodelay(true)?;
                let (tx, conn) = client::handshake(TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
                tokio::task::spawn_local(conn);
                return Ok(tx);
            }
        }
    }
}

async fn forward(
    pool: Pool,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Pooled>, std::io::Error> {
    let mut tx = checkout(&pool, upstream).await?;
    let resp = tx.send_request(req).await.map_err(std::io::Error::other)?;
    Ok(resp.map(|inner| Pooled {
        inner,
        tx: Some(tx),
        pool,
    }))
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = &args[..] else {
        eprintln!("usage: hyper-floor LISTEN-ADDR UPSTREAM-ADDR");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().map_err(std::io::Error::other)?;
    let upstream: SocketAddr = upstream.parse().map_err(std::io::Error::other)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(listen).await?;
        let pool: Pool = Rc::default();
        let mut term = signal(SignalKind::terminate())?;
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = term.recv() => return Ok(()),
            };
            stream.set_nodelay(true)?;
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let svc = service_fn(move |req| forward(pool.clone(), upstream, req));
                let _ = server::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}
