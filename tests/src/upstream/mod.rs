//! Servers the tests put behind the proxy, started in process on loopback.
//!
//! ```no_run
//! # async fn demo() {
//! use e2e_tests::upstream::{self, Reply};
//! use std::time::Duration;
//! let slow = upstream::http1()
//!     .name("b")
//!     .route("/slow", Reply::echo().after(Duration::from_millis(300)))
//!     .run()
//!     .await;
//! # }
//! ```
//!
//! Every response carries `x-upstream: NAME`, so a test can count which replica answered.
//! Raw TCP peers (echo, misbehaving HTTP servers) are in [`tcp`].

mod echo;
mod reply;
pub mod tcp;
mod websocket;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::body::Body;
pub use echo::Echoed;
pub use reply::Reply;

/// Header naming the replica that answered.
pub const NAME_HEADER: &str = "x-upstream";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    H2c,
}

/// An HTTP/1.1 server.
pub fn http1() -> Builder {
    Builder::new(Protocol::Http1)
}

/// An HTTP/2 server speaking h2c with prior knowledge.
pub fn h2c() -> Builder {
    Builder::new(Protocol::H2c)
}

pub struct Builder {
    protocol: Protocol,
    name: String,
    routes: Vec<(String, Reply)>,
    fallback: Reply,
    bind: SocketAddr,
}

impl Builder {
    fn new(protocol: Protocol) -> Self {
        Builder {
            protocol,
            name: "upstream".into(),
            routes: Vec::new(),
            fallback: Reply::echo(),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }

    /// The replica name reported in `x-upstream` and in echoes.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// Answer requests for exactly `path` (query ignored) with `reply`.
    pub fn route(mut self, path: &str, reply: Reply) -> Self {
        self.routes.push((path.into(), reply));
        self
    }

    /// Answer every other request with `reply` (an echo unless set).
    pub fn fallback(mut self, reply: Reply) -> Self {
        self.fallback = reply;
        self
    }

    /// Listen on `addr` instead of an ephemeral `127.0.0.1` port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Starts serving; panics if the address cannot be bound.
    pub async fn run(self) -> Upstream {
        let (name, bind) = (self.name.clone(), self.bind);
        self.try_run()
            .await
            .unwrap_or_else(|e| panic!("upstream {name} cannot bind {bind}: {e}"))
    }

    pub async fn try_run(self) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let server = Arc::new(Server {
            name: self.name.clone(),
            routes: self.routes,
            fallback: self.fallback,
            stats: stats.clone(),
        });
        let protocol = self.protocol;
        let accept = tokio::spawn(async move {
            // Connections live in the set so that dropping the `Upstream` (which aborts this
            // task) closes them too: a test that stops an upstream means all of it.
            let mut connections = JoinSet::new();
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors, most likely: wait rather than spin.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                server.stats.connections.fetch_add(1, Ordering::Relaxed);
                let server = server.clone();
                connections.spawn(async move {
                    let svc = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http2().adaptive_window(true);
                    let builder = match protocol {
                        Protocol::Http1 => builder.http1_only(),
                        Protocol::H2c => builder.http2_only(),
                    };
                    // A peer going away mid-request is what several tests do on purpose.
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Upstream {
            addr,
            name: self.name,
            stats,
            _accept: AbortOnDrop(accept),
        })
    }
}

/// Counters a test reads (through [`Upstream`]) to know what reached the upstream.
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    active: AtomicU64,
    connections: AtomicU64,
}

/// A running upstream; stops (and closes its connections) when dropped.
pub struct Upstream {
    addr: SocketAddr,
    name: String,
    stats: Arc<Stats>,
    _accept: AbortOnDrop,
}

impl Upstream {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    /// Requests received and not answered yet (a slow or hanging reply counts until it ends).
    pub fn active(&self) -> u64 {
        self.stats.active.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }
}

struct Server {
    name: String,
    routes: Vec<(String, Reply)>,
    fallback: Reply,
    stats: Arc<Stats>,
}

impl Server {
    async fn handle(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let _active = ActiveGuard::enter(&self.stats);
        let reply = self
            .routes
            .iter()
            .find(|(path, _)| path == req.uri().path())
            .map_or(&self.fallback, |(_, r)| r);
        let mut resp = reply.respond(&self.name, req).await;
        resp.headers_mut().insert(
            NAME_HEADER,
            http::HeaderValue::from_str(&self.name).expect("replica names are header-safe"),
        );
        resp
    }
}

/// Counts a request as active until its handler finishes or is dropped (the client left).
struct ActiveGuard<'a>(&'a Stats);

impl<'a> ActiveGuard<'a> {
    fn enter(stats: &'a Stats) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(stats)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Aborts a background task when the handle that owns it goes away.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
