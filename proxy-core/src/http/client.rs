//! Upstream connections: connect with a deadline, keep HTTP/1 connections in a per-endpoint
//! idle pool, share one multiplexed HTTP/2 connection per endpoint.
//!
//! The pool is a short critical section (push/pop on a `Vec`) behind a mutex that is never
//! held across an await.
//!
//! An HTTP/1 connection has no task of its own: the request using it drives it ([`H1Conn`]),
//! first while waiting for the response head, then from the response body the client is
//! sent. With one request at a time on the connection there is nothing else to drive, and a
//! task of its own cost three task switches per request. A connection still sending a
//! request body when its response has ended (an early answer) finishes in a task of its own
//! and is pooled after. So does, for good, a connection whose request body is still going
//! out when the response head comes in (see [`H1Conn::drive_in_task`]).
//!
//! An idle pooled connection is driven by nobody, but its socket still wakes someone when
//! the upstream closes it: the pool's [`IdleWatch`], which then drops it at once (its gauge
//! and `max_connections` unit with it). A close that races with a request taking the
//! connection is still not lost: hyper hands that request back unsent, and it goes out on
//! a fresh connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWakerVTable, Wake, Waker};
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
    H1(Box<H1Conn>),
    H2(H2),
}

struct Idle {
    conn: Box<H1Conn>,
    since: Instant,
}

/// hyper's HTTP/1 connection future (with upgrade support), its type erased.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// An HTTP/1 upstream connection driven by the request that uses it, not by a task.
///
/// hyper's dispatcher still hands the request and the response across its channels, and
/// those wake whoever polled last. Polled with the task's own waker, every such hand-over
/// inside one poll would schedule the task again for nothing; the [`Relay`] waker absorbs
/// the wakes that happen while the connection is being driven and polls again instead.
pub struct H1Conn {
    tx: H1,
    /// `None` once the connection has ended (closed, or handed over by an upgrade), or
    /// runs in a task of its own (`in_task`).
    driver: Option<Driver>,
    in_task: bool,
    relay: Arc<Relay>,
    waker: Waker,
    active: prometheus_client::metrics::gauge::Gauge,
    /// The cluster's `max_connections` unit, held while the connection is open.
    _unit: Option<Permit>,
}

/// Hand-overs inside one drive are re-polled there; wakes from outside reach the task, or,
/// while the connection is pooled, the pool's [`IdleWatch`].
///
/// Every atomic read-modify-write here waits for the core's store buffer to drain, and the
/// relay runs about twice per request: the drive and the wakes meet on one word (`state`),
/// with one read-modify-write at the drive's end and one per wake, and a drive by the task
/// that drove last (the usual case) does not take the `task` lock.
#[derive(Default)]
struct Relay {
    task: Mutex<Option<Waker>>,
    /// The waker in `task`, by its parts ([`Waker::will_wake`]'s test), written under the
    /// lock and read by the drive alone: only the connection's owner drives it.
    task_data: AtomicPtr<()>,
    task_vtable: AtomicPtr<RawWakerVTable>,
    /// `DRIVING` while a drive polls (wakes are its hand-overs); `WOKEN` once one came.
    state: AtomicU8,
    /// In the idle pool: a wake is the socket's (the upstream closing it, most likely).
    pooled: AtomicBool,
    /// The pool's watch (fixed: a connection belongs to one endpoint's pool).
    watch: Option<Waker>,
}

/// [`Relay::state`]'s bits.
const DRIVING: u8 = 1;
const WOKEN: u8 = 2;

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The drive clears `state` with one swap at its end: ordered against that swap,
        // either the drive sees this wake (and polls again, or wakes the task), or this
        // wake sees no drive and goes on itself.
        if self.state.fetch_or(WOKEN, Ordering::AcqRel) & DRIVING != 0 {
            return;
        }
        if self.pooled.load(Ordering::SeqCst) {
            if let Some(w) = &self.watch {
                w.wake_by_ref();
            }
        } else if let Ok(task) = self.task.lock()
            && let Some(w) = task.as_ref()
        {
            w.wake_by_ref();
        }
    }
}

/// Rounds of one drive while hand-overs keep waking it; past them the task is woken
/// instead (a resource out of its cooperative budget wakes on every poll).
const DRIVE_ROUNDS: usize = 8;

impl H1Conn {
    fn new(
        tx: H1,
        driver: Driver,
        cluster: &Cluster,
        ep: &Endpoint,
        unit: Option<Permit>,
    ) -> Box<H1Conn> {
        let relay = Arc::new(Relay {
            watch: Some(ep.pool.watch.clone()),
            ..Relay::default()
        });
        let active = cluster.stats.active_connections.clone();
        active.inc();
        Box::new(H1Conn {
            tx,
            driver: Some(driver),
            in_task: false,
            waker: Waker::from(relay.clone()),
            relay,
            active,
            _unit: unit,
        })
    }

    /// Poll `step` (the response head, the body, readiness), then drive the connection,
    /// in rounds while one hands something over to the other.
    ///
    /// The step goes first: a body's first poll tells the connection it is wanted, and the
    /// connection then reads the body in the same round.
    pub fn drive<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut step: impl FnMut(&mut H1, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if self.in_task {
            return step(&mut self.tx, cx);
        }
        drive_rounds(
            &self.relay,
            &self.waker,
            &mut self.driver,
            &mut self.tx,
            cx,
            step,
        )
    }

    /// Queue `req` on the connection; the returned future resolves once [`drive`](Self::drive)
    /// has written it and read the response head.
    fn start(
        &mut self,
        req: Request<RequestBody>,
    ) -> impl Future<
        Output = Result<
            Response<Incoming>,
            hyper::client::conn::TrySendError<Request<RequestBody>>,
        >,
    > + use<> {
        // Queuing wakes the connection's last poller: absorbed, the first round of the drive
        // that follows polls the connection anyway. A wake from another thread in between
        // is absorbed the same way; one that misses the mark wakes the task: a poll more.
        self.relay.state.store(DRIVING, Ordering::Relaxed);
        let sending = self.tx.try_send_request(req);
        self.relay.state.store(0, Ordering::Release);
        sending
    }

    /// Ready for a request. A close by the upstream while the connection sat in the pool is
    /// seen when the request is sent: the connection's first act is to read, and it hands the
    /// request back unsent ([`send`] resends it on a fresh connection).
    async fn ready(&mut self) -> bool {
        if self.tx.is_ready() {
            return true;
        }
        std::future::poll_fn(|cx| self.drive(cx, |tx, cx| tx.poll_ready(cx)))
            .await
            .is_ok()
    }

    /// In the idle pool or out: while in, the socket's wakes go to the pool's watch, not to
    /// the last task that drove the connection.
    fn set_pooled(&self, pooled: bool) {
        self.relay.pooled.store(pooled, Ordering::SeqCst);
    }

    fn is_closed(&self) -> bool {
        (self.driver.is_none() && !self.in_task) || self.tx.is_closed()
    }

    /// Let the connection run in a task of its own from now on. Its request body is still
    /// going out after the response head came in, and driven inline it would go out only
    /// while the response body is read, which is as fast as the client reads. A client
    /// that reads nothing until it has sent its whole body would then wait for the upstream,
    /// which waits for the body, which waits for the client.
    fn drive_in_task(&mut self) {
        if let Some(driver) = self.driver.take() {
            self.in_task = true;
            tokio::spawn(async move {
                let _ = driver.await;
            });
        }
    }

    /// Let the connection run in a task of its own: after `101 Switching Protocols` it must
    /// hand its socket over to the tunnel, which nobody else drives it to do.
    fn detach(mut self: Box<Self>) {
        if self.driver.is_none() {
            return;
        }
        tokio::spawn(async move {
            if let Some(d) = &mut self.driver {
                let _ = d.as_mut().await;
            }
        });
    }

    /// The response ended: pool the connection, or, if it still has work (a request body
    /// still going out after an early response), finish that in a task and pool it then.
    pub fn release(mut self: Box<Self>, pool: &Arc<Endpoint>, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.tx.is_ready() {
            pool.pool.put(self, now);
            return;
        }
        let ep = pool.clone();
        tokio::spawn(async move {
            if self.ready().await {
                ep.pool.put(self, Instant::now());
            }
        });
    }
}

impl Drop for H1Conn {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// [`H1Conn::drive`]'s rounds, apart from the connection so that they can be tested alone.
/// `waker` is `relay`'s own.
fn drive_rounds<S, T>(
    relay: &Relay,
    waker: &Waker,
    driver: &mut Option<Driver>,
    state: &mut S,
    cx: &mut Context<'_>,
    mut step: impl FnMut(&mut S, &mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    let task = cx.waker();
    if (relay.task_data.load(Ordering::Relaxed).cast_const() != task.data()
        || relay.task_vtable.load(Ordering::Relaxed).cast_const() != task.vtable())
        && let Ok(mut slot) = relay.task.lock()
    {
        *slot = Some(task.clone());
        relay
            .task_data
            .store(task.data().cast_mut(), Ordering::Relaxed);
        relay.task_vtable.store(
            std::ptr::from_ref(task.vtable()).cast_mut(),
            Ordering::Relaxed,
        );
    }
    // A plain store: a wake on this thread sees it in program order, and one from another
    // thread that misses it wakes the task itself (a poll more, nothing lost). A wake
    // from before it woke the task already.
    relay.state.store(DRIVING, Ordering::Relaxed);
    let mut rcx = Context::from_waker(waker);
    let mut result = Poll::Pending;
    for _ in 0..DRIVE_ROUNDS {
        // Only a wake seen must be cleared, by a read-modify-write that reads every wake
        // before it (and so what it hands over); none seen, the round polls all anyway.
        if relay.state.load(Ordering::Acquire) & WOKEN != 0 {
            relay.state.fetch_and(!WOKEN, Ordering::AcqRel);
        }
        if let Poll::Ready(v) = step(state, &mut rcx) {
            result = Poll::Ready(v);
            break;
        }
        if let Some(d) = driver
            && d.as_mut().poll(&mut rcx).is_ready()
        {
            *driver = None;
        }
        if relay.state.load(Ordering::Acquire) & WOKEN == 0 {
            break;
        }
    }
    // A wake that landed after the last round (or past the rounds) goes to the task.
    if relay.state.swap(0, Ordering::AcqRel) & WOKEN != 0 && result.is_pending() {
        task.wake_by_ref();
    }
    result
}

/// The next frame of an upstream response body, driving its HTTP/1 connection if it has
/// one (an HTTP/2 body is driven by its connection's task).
pub fn poll_frame(
    conn: Option<&mut H1Conn>,
    body: &mut Incoming,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
    use http_body::Body as _;
    match conn {
        Some(conn) => conn.drive(cx, |_, cx| Pin::new(&mut *body).poll_frame(cx)),
        None => Pin::new(body).poll_frame(cx),
    }
}

/// Read an upstream response body to its end (driving its connection), then pool the
/// connection. Whether the whole body came.
pub async fn read_to_end(
    mut body: Incoming,
    mut conn: Option<Box<H1Conn>>,
    ep: &Arc<Endpoint>,
) -> bool {
    let complete = std::future::poll_fn(|cx| {
        loop {
            match std::task::ready!(poll_frame(conn.as_deref_mut(), &mut body, cx)) {
                Some(Ok(_)) => continue,
                Some(Err(_)) => return Poll::Ready(false),
                None => return Poll::Ready(true),
            }
        }
    })
    .await;
    if complete && let Some(conn) = conn {
        conn.release(ep, Instant::now());
    }
    complete
}

/// Per-endpoint connection pool.
pub struct Pool {
    idle: Arc<Mutex<Vec<Idle>>>,
    /// Woken by the sockets of idle connections: see [`IdleWatch`].
    watch: Waker,
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
        let idle = Arc::new(Mutex::new(Vec::new()));
        Pool {
            watch: Waker::from(Arc::new(IdleWatch {
                idle: Arc::downgrade(&idle),
                scheduled: AtomicBool::new(false),
            })),
            idle,
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

    /// A pooled connection not known to be closed and idle for less than the idle timeout
    /// at `now`.
    fn take_idle(&self, now: Instant) -> Option<Box<H1Conn>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(i) = idle.pop() {
            if !i.conn.is_closed() && now.saturating_duration_since(i.since) < self.idle_timeout {
                i.conn.set_pooled(false);
                return Some(i.conn);
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
    /// Keep an open connection (`H1Conn::release` checked) that is ready for a request.
    fn put(&self, conn: Box<H1Conn>, now: Instant) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            conn.set_pooled(true);
            idle.push(Idle { conn, since: now });
        }
    }

    /// Close pooled connections idle for longer than the idle timeout, and drop any the
    /// upstream closed that the [`IdleWatch`] has not (one running in a task of its own).
    pub fn evict_expired(&self) {
        let timeout = self.idle_timeout;
        drop_closed(&self.idle, &self.watch, |i| i.since.elapsed() < timeout);
    }
}

/// Drive each idle connection once (with `watch`, so that its socket's next wake comes
/// back to the pool) and keep those still open that `keep` keeps.
fn drop_closed(idle: &Mutex<Vec<Idle>>, watch: &Waker, keep: impl Fn(&Idle) -> bool) {
    if let Ok(mut idle) = idle.lock() {
        let mut cx = Context::from_waker(watch);
        idle.retain_mut(|i| {
            let _ = i.conn.drive(&mut cx, |_, _| Poll::<()>::Pending);
            !i.conn.is_closed() && keep(i)
        });
    }
}

/// The waker of a pool's idle connections. A socket wakes it when the upstream closes the
/// connection (or sends something unasked); a task then drives the idle connections once
/// and drops the ended ones, which gives back their `max_connections` units and leaves the
/// gauge, rather than at the next request or the periodic sweep.
struct IdleWatch {
    idle: std::sync::Weak<Mutex<Vec<Idle>>>,
    /// A check is queued: wakes until it runs add nothing.
    scheduled: AtomicBool,
}

impl Wake for IdleWatch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Sockets wake from the runtime's I/O driver, so a runtime is at hand; the check
        // runs in a task, outside the driver's turn.
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.scheduled.store(false, Ordering::SeqCst);
            return;
        };
        let watch = self.clone();
        rt.spawn(async move {
            watch.scheduled.store(false, Ordering::SeqCst);
            if let Some(idle) = watch.idle.upgrade() {
                drop_closed(&idle, &Waker::from(watch), |_| true);
            }
        });
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
/// the connection (its [`H1Conn`], or its task for HTTP/2) holds the `max_connections` unit
/// until it closes.
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
    cluster.stats.connections.inc();
    let handshake_failed =
        |e: hyper::Error| ProxyError::Reset(format!("handshake with {}: {e}", ep.addr));
    match protocol {
        UpstreamProtocol::Http1 => {
            let (tx, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            Ok(Sender::H1(H1Conn::new(
                tx,
                Box::pin(conn.with_upgrades()),
                cluster,
                ep,
                unit,
            )))
        }
        UpstreamProtocol::Http2 => {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            let active = cluster.stats.active_connections.clone();
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
            while let Some(mut conn) = ep.pool.take_idle(now) {
                if conn.ready().await {
                    return Ok(Sender::H1(conn));
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
/// connection. Returns the response and, for HTTP/1, the connection, which the response
/// body must drive (see [`H1Conn::drive`]) and return to the pool at its end.
pub async fn send(
    cluster: &Cluster,
    ep: &Endpoint,
    mut req: Request<RequestBody>,
    now: Instant,
    connect_time: &mut Option<Duration>,
) -> Result<(Response<Incoming>, Option<Box<H1Conn>>), ProxyError> {
    for attempt in 0..2 {
        match checkout(cluster, ep, now, connect_time).await? {
            Sender::H1(mut conn) => {
                // Only an HTTP/1 connection driven inline needs to know (see below).
                let uploading = req.body_mut().watch();
                let mut sending = std::pin::pin!(conn.start(req));
                let sent =
                    std::future::poll_fn(|cx| conn.drive(cx, |_, cx| sending.as_mut().poll(cx)))
                        .await;
                match sent {
                    Ok(resp) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                        conn.detach();
                        return Ok((resp, None));
                    }
                    Ok(resp) => {
                        if uploading.as_ref().is_some_and(|b| b.strong_count() > 0) {
                            conn.drive_in_task();
                        }
                        return Ok((resp, Some(conn)));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(unsent) if attempt == 0 => req = unsent,
                        _ => return Err(ProxyError::from_upstream(e.error())),
                    },
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A task's waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A relay, and the task it wakes, counting that task's wakes.
    struct Harness {
        relay: Arc<Relay>,
        waker: Waker,
        task: Arc<Count>,
    }

    impl Harness {
        fn new() -> Harness {
            let relay = Arc::new(Relay::default());
            Harness {
                waker: Waker::from(relay.clone()),
                relay,
                task: Arc::default(),
            }
        }

        fn drive<T>(
            &self,
            driver: &mut Option<Driver>,
            step: impl FnMut(&mut (), &mut Context<'_>) -> Poll<T>,
        ) -> Poll<T> {
            let task = Waker::from(self.task.clone());
            let mut cx = Context::from_waker(&task);
            drive_rounds(&self.relay, &self.waker, driver, &mut (), &mut cx, step)
        }

        fn task_wakes(&self) -> usize {
            self.task.0.load(Ordering::SeqCst)
        }
    }

    fn pending(_: &mut (), _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }

    /// A connection that waits for its socket, keeping the waker it was given in the slot
    /// returned with it.
    fn waiting_driver() -> (Option<Driver>, Arc<Mutex<Option<Waker>>>) {
        let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
        let s = slot.clone();
        let driver = driver(move |cx| {
            *s.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        });
        (driver, slot)
    }

    /// A stand-in for hyper's connection future.
    fn driver(
        poll: impl FnMut(&mut Context<'_>) -> Poll<hyper::Result<()>> + Send + 'static,
    ) -> Option<Driver> {
        Some(Box::pin(std::future::poll_fn(poll)))
    }

    #[test]
    fn a_hand_over_inside_a_drive_is_polled_there_without_waking_the_task() {
        let h = Harness::new();
        let handed = Arc::new(AtomicBool::new(false));
        let handing = handed.clone();
        // The connection hands the response over (a channel send wakes its receiver).
        let mut driver = driver(move |cx| {
            handing.store(true, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        let polled = h.drive(&mut driver, |_, _| {
            if handed.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        assert_eq!(polled, Poll::Ready(()));
        assert_eq!(h.task_wakes(), 0, "no wake for the task");
    }

    #[test]
    fn a_wake_after_the_drive_reaches_the_task() {
        let h = Harness::new();
        // The connection waits for its socket.
        let (mut driver, slot) = waiting_driver();
        assert_eq!(h.drive(&mut driver, pending), Poll::Pending);
        assert_eq!(h.task_wakes(), 0);
        // The socket becomes readable.
        slot.lock().unwrap().take().unwrap().wake();
        assert_eq!(h.task_wakes(), 1, "the task is woken");
    }

    #[test]
    fn a_driver_that_always_wakes_itself_is_left_after_bounded_rounds() {
        let h = Harness::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let p = polls.clone();
        // Out of its cooperative budget, a resource wakes on every poll.
        let mut driver = driver(move |cx| {
            p.fetch_add(1, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert_eq!(h.drive(&mut driver, pending), Poll::Pending);
        assert_eq!(polls.load(Ordering::SeqCst), DRIVE_ROUNDS);
        assert_eq!(h.task_wakes(), 1, "the task comes back later");
    }

    #[test]
    fn a_wake_goes_to_the_task_that_drove_last() {
        let h = Harness::new();
        let (mut driver, slot) = waiting_driver();
        assert_eq!(h.drive(&mut driver, pending), Poll::Pending);
        // The connection passes to another task (the next request on it), which drives it.
        let other = Arc::new(Count::default());
        let waker = Waker::from(other.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = drive_rounds(&h.relay, &h.waker, &mut driver, &mut (), &mut cx, pending);
        assert_eq!(polled, Poll::Pending);
        slot.lock().unwrap().take().unwrap().wake();
        assert_eq!(other.0.load(Ordering::SeqCst), 1, "the new task is woken");
        assert_eq!(h.task_wakes(), 0, "not the one before it");
    }

    /// A wake from another thread while the drive polls: seen by a round, or at the
    /// drive's end (the task is woken), never lost.
    #[test]
    fn a_wake_from_another_thread_during_a_drive_is_not_lost() {
        for _ in 0..200 {
            let h = Harness::new();
            let (mut driver, slot) = waiting_driver();
            let ready = Arc::new(AtomicBool::new(false));
            let (r, sl) = (ready.clone(), slot.clone());
            let waker = std::thread::spawn(move || {
                // The connection's socket, from the IO driver's thread: readiness first,
                // then the wake.
                loop {
                    if let Some(w) = sl.lock().unwrap().take() {
                        r.store(true, Ordering::Release);
                        w.wake();
                        return;
                    }
                    std::hint::spin_loop();
                }
            });
            // Drive as the runtime would: again only after a wake of the task.
            let mut wakes = 0;
            loop {
                let polled = h.drive(&mut driver, |_, _| {
                    if ready.load(Ordering::Acquire) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                });
                if polled.is_ready() {
                    break;
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while h.task_wakes() == wakes {
                    assert!(std::time::Instant::now() < deadline, "a wake was lost");
                    std::hint::spin_loop();
                }
                wakes = h.task_wakes();
            }
            waker.join().unwrap();
        }
    }

    #[test]
    fn an_ended_connection_is_not_polled_again() {
        let h = Harness::new();
        let mut driver = driver(|_| Poll::Ready(Ok(())));
        let _ = h.drive(&mut driver, pending);
        assert!(driver.is_none());
    }
}
