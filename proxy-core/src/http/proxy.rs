//! The life of one proxied HTTP request, in order:
//! limits → route → cluster (`max_requests`, error-rate breaker) → endpoint (passing over
//! ejected and unhealthy ones) → attempts (once, or under the route's retry policy) →
//! pooled connection → response → (body end) telemetry.
//!
//! Everything a failure needs to explain itself (reason, status, detail) comes from
//! `ProxyError`; the request's record (metrics, access log) is written once, by `Finish`,
//! when the response body ends (or when the request is abandoned).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::client::H1Conn;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::attempts;
use super::body::{Buffered, RequestBody, ResponseBody};
use super::deadline::RequestTimer;
use super::headers;
use super::inject;
use super::mirror::Mirror;
use crate::cluster::outlier::Outcome;
use crate::cluster::{ActiveRequest, Endpoint};
use crate::config::UpstreamProtocol;
use crate::error::{ERROR_HEADER, ProxyError};
use crate::ratelimit::{self, Verdict};
use crate::resilience::limits::Permit;
use crate::route::{Route, rewrite_headers};
use crate::snapshot::{ListenerRoutes, Snapshot};
use crate::telemetry::access_log::{self, AccessLog};
use crate::telemetry::metrics::{ListenerStats, RouteStats};
use crate::telemetry::tap;
use crate::telemetry::trace::{self, Tracer};

/// What a listener's connections share.
pub struct ListenerCtx {
    pub name: Arc<str>,
    pub stats: ListenerStats,
    pub snapshot: Arc<arc_swap::ArcSwap<Snapshot>>,
    /// The connections' idle and header timeouts and the drain, in one sweep.
    pub supervisor: super::supervise::Supervisor,
}

/// What one downstream connection's requests share: the listener's context and the
/// connection's own state, behind one reference count, so that a request takes and gives
/// back one (two atomic read-modify-writes) rather than one for each.
pub struct ConnCtx {
    pub listener: Arc<ListenerCtx>,
    pub down: Arc<Downstream>,
}

/// The client end of one downstream connection, worked out once per connection.
pub struct Downstream {
    pub remote: SocketAddr,
    /// The client address as an `x-forwarded-for` entry.
    pub client_ip: Option<HeaderValue>,
    /// For the idle and header timeouts: requests in flight, when the last one ended, and
    /// since when the connection has been waiting for a request head (`NOT_WAITING` when
    /// not, `HEAD_STARTED` when one has begun and the sweep has yet to note when), all in
    /// milliseconds since `epoch`.
    pub in_flight: AtomicU64,
    pub epoch: Instant,
    pub last_active_ms: AtomicU64,
    pub head_since_ms: AtomicU64,
    /// The peer authenticated by mTLS, if the connection is one.
    pub peer: Option<Arc<crate::tls::server::PeerIdentity>>,
    /// An intercepted connection whose original destination is an endpoint of this
    /// cluster: its requests go there, by the listener's implicit route to it.
    pub via_cluster: Option<Arc<str>>,
    /// The deadline timer of an HTTP/1 connection's requests (one at a time).
    pub request_timer: RequestTimer,
}

/// `head_since_ms` when no request head is being waited for.
pub const NOT_WAITING: u64 = u64::MAX;
/// `head_since_ms` when a request head has begun and the sweep has not yet looked.
pub const HEAD_STARTED: u64 = u64::MAX - 1;

impl Downstream {
    /// A new connection waits for its first request head from the start: a client that
    /// connects and says nothing is held to the header timeout.
    pub fn new(remote: SocketAddr) -> Downstream {
        Downstream {
            remote,
            client_ip: HeaderValue::from_str(&client_ip_text(remote.ip())).ok(),
            in_flight: AtomicU64::new(0),
            epoch: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            peer: None,
            via_cluster: None,
            request_timer: RequestTimer::default(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes arrived: with no request in flight they begin the next request head.
    ///
    /// Marked, not timed: this runs at the start of every request, and reading the clock
    /// here cost about 200 instructions a request (callgrind, plain route). The sweep
    /// stamps the time at its next look (`head_pending_for`), which looks often enough for
    /// that to stay within the header timeout's stated slack.
    pub fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since_ms.load(Ordering::Relaxed) == NOT_WAITING
        {
            self.head_since_ms.store(HEAD_STARTED, Ordering::Relaxed);
        }
    }

    /// How long a request head has been coming in without completing (zero when none is,
    /// and when one has just been seen to begin: its time is noted now).
    pub fn head_pending_for(&self) -> std::time::Duration {
        let since = self.head_since_ms.load(Ordering::Relaxed);
        if since == NOT_WAITING || self.in_flight.load(Ordering::Acquire) > 0 {
            return std::time::Duration::ZERO;
        }
        if since == HEAD_STARTED {
            // Lost only to the request starting (`NOT_WAITING`): nothing to time then.
            let _ = self.head_since_ms.compare_exchange(
                HEAD_STARTED,
                self.now_ms(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    /// How long the connection has had no request in flight (zero while one is).
    pub fn idle_for(&self) -> std::time::Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return std::time::Duration::ZERO;
        }
        let last = std::time::Duration::from_millis(self.last_active_ms.load(Ordering::Acquire));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// The client address as `x-forwarded-for` writes it (IPv4-mapped IPv6 as plain IPv4).
pub fn client_ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        std::net::IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The request facts the access log needs, captured only when it is on.
struct LogFacts {
    start_time: SystemTime,
    method: http::Method,
    authority: String,
    path: String,
    protocol: &'static str,
    request_id: HeaderValue,
    user_agent: Option<HeaderValue>,
    received: Arc<AtomicU64>,
    remote: SocketAddr,
    reason: Option<&'static str>,
    /// With tracing on: the trace and this proxy's span, for correlating the line.
    trace: Option<(String, String)>,
}

/// What a sampled request's span needs, captured only for sampled requests.
struct TraceFacts {
    tracer: Arc<Tracer>,
    kind: trace::Kind,
    trace_id: u128,
    span_id: u64,
    parent_id: Option<u64>,
    start_time: SystemTime,
    method: http::Method,
    authority: String,
    path: String,
    request_id: HeaderValue,
    reason: Option<&'static str>,
}

/// The status an abandoned request is recorded with: the client went away before its
/// response began (nginx's 499, "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// Records a request when its response ends, or when it is abandoned: the client went
/// away (or an HTTP/2 stream was reset) before the response began, and hyper dropped the
/// request's future.
///
/// It holds the request's own handle of its connection, taken from the service call
/// rather than cloned again: each clone and drop of an `Arc` is an atomic
/// read-modify-write on the request path.
pub struct Finish {
    conn: Arc<ConnCtx>,
    pub(super) progress: Progress,
    written: bool,
}

/// What a request has done so far, for its record.
pub struct Progress {
    /// When the request head was received.
    pub(super) start: Instant,
    status: u16,
    /// The route's statistics once the request is routed; before, the listener's
    /// `unrouted` ones (not held here: a reference count taken and given back per request).
    stats: Option<Arc<RouteStats>>,
    active: Option<ActiveRequest>,
    /// The cluster's `max_requests` unit, held until the response ends.
    permit: Option<Permit>,
    log: Option<(Arc<AccessLog>, Box<LogFacts>)>,
    trace: Option<Box<TraceFacts>>,
    /// Attempts sent upstream (retries are the ones past the first).
    attempts: u32,
    /// What `/tap` and `/debug/failures` show of this request.
    pub(super) tap: tap::Record,
}

impl Progress {
    /// An attempt is about to go to `endpoint`: it is the one counted and logged. The
    /// record keeps the handle; the attempt borrows it back, with the tap record.
    pub(super) fn sending_to(
        &mut self,
        endpoint: Arc<Endpoint>,
    ) -> (&Arc<Endpoint>, &mut tap::Record) {
        self.attempts += 1;
        let active = self.active.insert(ActiveRequest::new(endpoint));
        (active.endpoint(), &mut self.tap)
    }

    /// The request ended without an upstream response, for `reason`.
    fn ended_for(&mut self, reason: &'static str) {
        if let Some((_, f)) = &mut self.log {
            f.reason = Some(reason);
        }
        if let Some(t) = &mut self.trace {
            t.reason = Some(reason);
        }
    }
}

impl Finish {
    pub(super) fn return_connection(&self, conn: Box<H1Conn>, now: Instant) {
        if let Some(a) = &self.progress.active {
            conn.release(a.endpoint(), now);
        }
    }

    pub(super) fn done(mut self, bytes_sent: u64, now: Instant) {
        self.write(bytes_sent, now);
    }

    fn write(&mut self, bytes_sent: u64, now: Instant) {
        self.written = true;
        let p = &mut self.progress;
        let elapsed = now.saturating_duration_since(p.start);
        let stats = p
            .stats
            .as_deref()
            .unwrap_or(&self.conn.listener.stats.unrouted);
        stats.record(p.status, elapsed);
        self.conn.listener.stats.tap.finish(
            &mut p.tap,
            tap::End {
                listener: &self.conn.listener.name,
                route: Some(&stats.route),
                cluster: Some(&stats.cluster),
                status: p.status,
                elapsed,
                bytes_sent,
                upstream: p.active.as_ref().map(|a| a.endpoint().addr),
            },
        );
        self.conn.listener.stats.active_requests.dec();
        let now_ms = now
            .saturating_duration_since(self.conn.down.epoch)
            .as_millis() as u64;
        self.conn
            .down
            .last_active_ms
            .store(now_ms, Ordering::Release);
        self.conn.down.in_flight.fetch_sub(1, Ordering::AcqRel);
        let (route, cluster, upstream) = routed(stats, p.active.as_ref());
        if let Some((log, f)) = &p.log {
            log.write(&access_log::Entry {
                start_time: access_log::rfc3339(f.start_time),
                method: f.method.as_str(),
                authority: &f.authority,
                path: &f.path,
                protocol: f.protocol,
                status: p.status,
                reason: f.reason,
                bytes_received: f.received.load(Ordering::Relaxed),
                bytes_sent,
                // Microsecond precision: more digits are float noise.
                duration_ms: elapsed.as_micros() as f64 / 1000.0,
                upstream_host: upstream,
                upstream_cluster: cluster.map(|c| &**c),
                route: route.map(|r| &**r),
                listener: &self.conn.listener.name,
                request_id: f.request_id.to_str().unwrap_or(""),
                downstream_remote_address: f.remote,
                user_agent: f.user_agent.as_ref().and_then(|v| v.to_str().ok()),
                trace_id: f.trace.as_ref().map(|(t, _)| t.as_str()),
                span_id: f.trace.as_ref().map(|(_, s)| s.as_str()),
            });
        }
        if let Some(t) = p.trace.take() {
            let t = *t;
            t.tracer.record(trace::Span {
                trace_id: t.trace_id,
                span_id: t.span_id,
                parent_id: t.parent_id,
                kind: t.kind,
                start: t.start_time,
                duration: elapsed,
                method: t.method.as_str().to_owned(),
                path: t.path,
                authority: t.authority,
                status: p.status,
                listener: self.conn.listener.name.clone(),
                route: route.cloned(),
                cluster: cluster.cloned(),
                upstream,
                downstream: self.conn.down.remote,
                retries: p.attempts.saturating_sub(1),
                reason: t.reason,
                request_id: t.request_id.to_str().unwrap_or("").to_owned(),
            });
        }
    }
}

impl Drop for Finish {
    /// A request whose future was dropped before it had a response (the client closed the
    /// connection or reset the stream while it waited) is recorded here, so the gauges of
    /// requests in flight come back down and the access log has its line.
    fn drop(&mut self) {
        if !self.written {
            self.progress.status = CLIENT_CLOSED;
            self.progress.ended_for("downstream_closed");
            self.write(0, Instant::now());
        }
    }
}

/// The request body as forwarding finds it: untouched, read whole (to mirror it), or
/// found too large to mirror after part of it was read.
pub(super) enum Pending {
    Stream(Incoming),
    Buffered(Buffered),
    Started(RequestBody),
}

/// Make `body` mirrorable if it can be: a body of known length up to the mirror's limit is
/// read whole. Returns the body to forward and the copy's body (`None`: not mirrorable).
async fn mirror_body(
    m: &Mirror,
    body: Pending,
    received: &Option<Arc<AtomicU64>>,
) -> Result<(Pending, Option<RequestBody>), ProxyError> {
    let body = match body {
        Pending::Stream(b) if !b.is_end_stream() => {
            if b.size_hint().upper().is_none_or(|n| n > m.max_body) {
                return Ok((Pending::Stream(b), None));
            }
            match RequestBody::buffer(b, m.max_body as usize, received.clone()).await {
                Ok(whole @ Buffered::Whole { .. }) => Pending::Buffered(whole),
                Ok(Buffered::TooLarge(rest)) => return Ok((Pending::Started(rest), None)),
                Err(_) => return Err(ProxyError::BadRequest("the request body ended early")),
            }
        }
        other => other,
    };
    let copy = match &body {
        Pending::Stream(_) => Buffered::Whole {
            data: Bytes::new(),
            trailers: None,
        }
        .replay(),
        Pending::Buffered(b) => b.replay(),
        Pending::Started(_) => None,
    };
    Ok((body, copy))
}

/// The request's authority: the URI's, or its `Host` field's value.
///
/// A `Host` value of the usual shape (`name` or `name:port`, ASCII letters, digits, `.` and
/// `-`) stays the field's own bytes: parsing it into an `Authority` copies and allocates,
/// about 300 instructions on every request, and only an HTTP/2 upstream, a mirror or a
/// host rewrite needs one. Any other value goes through `Authority`'s parser as it comes.
pub(super) enum RequestAuthority {
    Parsed(Authority),
    Host(HeaderValue),
}

impl RequestAuthority {
    /// `None` when the value is not a valid authority.
    fn from_host(v: &HeaderValue) -> Option<RequestAuthority> {
        if plain_host(v.as_bytes()) {
            return Some(RequestAuthority::Host(v.clone()));
        }
        Authority::try_from(v.as_bytes())
            .ok()
            .map(RequestAuthority::Parsed)
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            RequestAuthority::Parsed(a) => a.as_str(),
            // ASCII by `plain_host`.
            RequestAuthority::Host(v) => v.to_str().unwrap_or_default(),
        }
    }

    pub(super) fn to_authority(&self) -> Authority {
        match self {
            RequestAuthority::Parsed(a) => a.clone(),
            RequestAuthority::Host(v) => {
                Authority::try_from(v.as_bytes()).expect("a plain host[:port] is a valid authority")
            }
        }
    }
}

/// `name` or `name:port` of ASCII letters, digits, `.` and `-`: a subset of what
/// `Authority` accepts (checked in the tests), so such a value needs no parser.
fn plain_host(b: &[u8]) -> bool {
    let (name, port) = match b.iter().position(|c| *c == b':') {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    !name.is_empty()
        && name
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// Shape a request for the upstream's protocol: origin-form URI and a `Host` header for
/// HTTP/1.1, an absolute URI and no `Host` for HTTP/2.
pub(super) fn for_upstream(
    parts: &mut http::request::Parts,
    authority: &RequestAuthority,
    protocol: UpstreamProtocol,
    tls: bool,
) -> Result<(), ProxyError> {
    match protocol {
        UpstreamProtocol::Http1 => {
            if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
                let pq = parts
                    .uri
                    .path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                parts.uri = Uri::from(pq);
            }
            if !parts.headers.contains_key(header::HOST)
                && let Ok(v) = HeaderValue::from_str(authority.as_str())
            {
                parts.headers.insert(header::HOST, v);
            }
            if parts.version != Version::HTTP_10 {
                parts.version = Version::HTTP_11;
            }
        }
        UpstreamProtocol::Http2 => {
            let scheme = if tls { Scheme::HTTPS } else { Scheme::HTTP };
            let mut u = Uri::builder()
                .scheme(scheme)
                .authority(authority.to_authority());
            if let Some(pq) = parts.uri.path_and_query() {
                u = u.path_and_query(pq.clone());
            }
            parts.uri = u
                .build()
                .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
            parts.headers.remove(header::HOST);
            parts.version = Version::HTTP_2;
        }
    }
    Ok(())
}

/// The request's authority as text: the URI's, else the Host header.
fn authority_text(req: &Request<Incoming>) -> String {
    match req.uri().authority() {
        Some(a) => a.as_str().to_owned(),
        None => req
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default(),
    }
}

/// The host of a parsed authority, as `Authority::host` gives it (without userinfo and
/// port; an IPv6 literal keeps its brackets), by one scan of the bytes rather than
/// generic string splitting: it runs for every request, and `Authority::host` there costs
/// 278 more instructions per request (callgrind, plain route).
fn host_of(authority: &str) -> &str {
    let b = authority.as_bytes();
    let start = b.iter().rposition(|c| *c == b'@').map_or(0, |i| i + 1);
    let hp = &b[start..];
    let end = if hp.first() == Some(&b'[') {
        hp.iter()
            .position(|c| *c == b']')
            .map_or(hp.len(), |i| i + 1)
    } else {
        hp.iter().position(|c| *c == b':').unwrap_or(hp.len())
    };
    // Both ends are at ASCII bytes or at the ends of the string: char boundaries.
    &authority[start..start + end]
}

/// The route and cluster a request was sent to (their names are on its route stats, empty
/// before routing) and the endpoint of its last attempt.
fn routed<'a>(
    stats: &'a RouteStats,
    active: Option<&ActiveRequest>,
) -> (
    Option<&'a Arc<str>>,
    Option<&'a Arc<str>>,
    Option<SocketAddr>,
) {
    let named = |n: &'a Arc<str>| (!n.is_empty()).then_some(n);
    (
        named(&stats.route),
        named(&stats.cluster),
        active.map(|a| a.endpoint().addr),
    )
}

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// A response made by the proxy itself, saying which stage failed and why.
pub fn local_reply(err: &ProxyError, request_id: Option<&HeaderValue>) -> Response<Bytes> {
    let reason = err.reason();
    let body = Bytes::from(format!("{reason}: {err}\n"));
    let mut resp = Response::new(body);
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(ERROR_HEADER, HeaderValue::from_static(reason));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(id) = request_id {
        h.insert(headers::X_REQUEST_ID.clone(), id.clone());
    }
    if let ProxyError::RateLimited { quota, .. } = err {
        quota.write(h);
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(ratelimit::whole_seconds(quota.reset)),
        );
    }
    if let ProxyError::CircuitOpen { retry_after, .. }
    | ProxyError::LocalRateLimited { retry_after, .. } = err
    {
        // Whole seconds, rounded up: coming back early would only be refused again.
        let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// hyper's service entry point for one request on a listener.
pub async fn handle(
    conn: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    let (l, down) = (&conn.listener, &conn.down);
    l.stats.active_requests.inc();
    down.in_flight.fetch_add(1, Ordering::AcqRel);
    down.head_since_ms.store(NOT_WAITING, Ordering::Relaxed);
    let snap = l.snapshot.load_full();
    let version = req.version();
    let tap = tap::Record::begin(&l.stats.tap, &req);
    let mut finish = Finish {
        conn,
        progress: Progress {
            start,
            status: 0,
            stats: None,
            active: None,
            permit: None,
            log: None,
            trace: None,
            attempts: 0,
            tap,
        },
        written: false,
    };
    let routes = snap
        .listener(&finish.conn.listener.name)
        .map(|r| r.for_connection(finish.conn.down.via_cluster.as_deref()));
    let result = match routes {
        Some(routes) => forward(routes, &snap, &finish.conn.down, req, &mut finish.progress).await,
        None => Err((
            ProxyError::NoRoute("this listener was removed".into()),
            None,
        )),
    };
    let mut resp = match result {
        Ok(Forwarded::Response(resp, pooled)) => {
            finish.progress.tap.response(&resp);
            resp.map(|b| ResponseBody::upstream(b, pooled, finish))
        }
        Ok(Forwarded::Upgraded(parts)) => {
            Response::from_parts(parts, ResponseBody::local(Bytes::new(), Some(finish)))
        }
        Err((err, request_id)) => {
            let l = &finish.conn.listener;
            l.stats.local_reply(err.reason());
            tracing::debug!(listener = %l.name, reason = err.reason(), error = %err, "local reply");
            let p = &mut finish.progress;
            p.tap.local_reply(&err, request_id.as_ref());
            p.ended_for(err.reason());
            let (parts, body) = local_reply(&err, request_id.as_ref()).into_parts();
            p.status = parts.status.as_u16();
            Response::from_parts(parts, ResponseBody::local(body, Some(finish)))
        }
    };
    *resp.version_mut() = version;
    Ok(resp)
}

type Failure = (ProxyError, Option<HeaderValue>);

/// What came back from upstream, before it becomes the client's response.
enum Forwarded {
    /// A response whose body streams from upstream; HTTP/1 connection to pool at its end.
    Response(Response<Incoming>, Option<Box<H1Conn>>),
    /// `101 Switching Protocols`: the tunnel runs in its own task.
    Upgraded(http::response::Parts),
}

async fn forward(
    routes: &ListenerRoutes,
    snap: &Snapshot,
    down: &Downstream,
    mut req: Request<Incoming>,
    finish: &mut Progress,
) -> Result<Forwarded, Failure> {
    // The head as the client sent it, before the proxy adds its own fields (the request
    // id first of all): that is what the limits below are about.
    // One pass for the head's size and for a client-sent `x-forwarded-client-cert`, which
    // the identity stage removes: comparing each name is cheaper than hashing that long
    // one for a removal that almost never finds it.
    let count = req.headers().len();
    let mut size = req.uri().path_and_query().map_or(1, |p| p.as_str().len()) + 16;
    let mut client_cert = false;
    for (k, v) in req.headers() {
        size += k.as_str().len() + v.len() + 4;
        client_cert |= k == crate::tls::authz::XFCC;
    }
    let one_at_a_time = req.version() <= Version::HTTP_11;
    let request_id = headers::request_id(req.headers_mut());
    let fail = |e: ProxyError| (e, Some(request_id.clone()));
    let trace_ctx = snap.tracer.as_ref().map(|t| (t, t.start(req.headers())));
    if let Some((tracer, ctx)) = &trace_ctx
        && ctx.sampled
        && tracer.exports()
    {
        finish.trace = Some(Box::new(TraceFacts {
            tracer: (*tracer).clone(),
            kind: routes.config.traffic_direction.into(),
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            parent_id: ctx.parent_id,
            start_time: SystemTime::now(),
            method: req.method().clone(),
            authority: authority_text(&req),
            path: req.uri().path().to_owned(),
            request_id: request_id.clone(),
            reason: None,
        }));
    }

    let mut received = None;
    if let Some(log) = &snap.access_log {
        let counter = Arc::new(AtomicU64::new(0));
        received = Some(counter.clone());
        finish.log = Some((
            log.clone(),
            Box::new(LogFacts {
                start_time: SystemTime::now(),
                method: req.method().clone(),
                authority: authority_text(&req),
                path: req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned(),
                protocol: protocol_name(req.version()),
                request_id: request_id.clone(),
                user_agent: req.headers().get(header::USER_AGENT).cloned(),
                received: counter,
                remote: down.remote,
                reason: None,
                trace: trace_ctx
                    .as_ref()
                    .map(|(_, c)| (c.trace_id_hex(), c.span_id_hex())),
            }),
        ));
    }

    // The tap and `/debug/failures` read the access log's counter when there is one; a
    // tapped request without one gets its own.
    if received.is_none() && finish.tap.tapped() {
        received = Some(Arc::new(AtomicU64::new(0)));
    }
    if let Some(counter) = &received {
        finish.tap.count_received(counter.clone());
    }

    // Limits before any routing work: a request over them costs nothing more.
    let limits = &routes.config;
    if count > limits.max_request_headers {
        return Err(fail(ProxyError::TooManyHeaders {
            count,
            limit: limits.max_request_headers,
        }));
    }
    let limit = limits.max_request_headers_size.as_usize();
    if size > limit {
        return Err(fail(ProxyError::HeadersTooLarge { size, limit }));
    }

    crate::tls::authz::admit(routes, down, req.headers_mut(), client_cert).map_err(fail)?;

    // The authority: the URI's (HTTP/2, absolute-form) or the Host header.
    let mut authority = match req.uri().authority() {
        Some(a) => RequestAuthority::Parsed(a.clone()),
        None => match req
            .headers()
            .get(header::HOST)
            .map(RequestAuthority::from_host)
        {
            Some(Some(a)) => a,
            Some(None) => return Err(fail(ProxyError::BadRequest("invalid Host header"))),
            None if req.version() == Version::HTTP_10 => {
                RequestAuthority::Parsed(Authority::from_static("localhost"))
            }
            None => return Err(fail(ProxyError::BadRequest("missing Host header"))),
        },
    };
    let route: &Route = routes
        .routes
        .iter()
        .find(|r| r.matches(host_of(authority.as_str()), req.uri().path(), req.headers()))
        .ok_or_else(|| {
            fail(ProxyError::NoRoute(format!(
                "{} {}{}",
                req.method(),
                authority.as_str(),
                req.uri().path()
            )))
        })?;
    let target = route
        .target(req.headers())
        .ok_or_else(|| fail(ProxyError::NoHealthyUpstream(route.name.to_string())))?;
    let cluster = &target.cluster;
    finish.stats = Some(target.stats.clone());

    // The awaits of features most routes do without (faults, rate limits, mirrors) are
    // boxed: inline, every request's future would carry their space, and hyper
    // moves that future for every request.
    //
    // Injected faults come before the cluster's limits: they stand for a failing dependency,
    // and must not take the cluster's capacity or trip its breaker.
    if let Some(fault) = &route.fault {
        if let Some(d) = fault.delay() {
            Box::pin(tokio::time::sleep(d)).await;
        }
        if let Some(status) = fault.abort() {
            return Err(fail(ProxyError::FaultAbort(status)));
        }
    }

    let mut quota = None;
    if !route.rate_limits.is_empty() {
        let client = ratelimit::Client {
            address: down.remote.ip(),
            identity: down.peer.as_ref().map(|p| p.uri.as_str()),
        };
        let checking =
            route
                .rate_limits
                .check(req.headers(), &client, snap.redis_limiter.as_deref());
        match Box::pin(checking).await {
            Verdict::Allowed(q) => quota = q,
            Verdict::Limited {
                rule,
                quota,
                global,
            } => {
                return Err(fail(ProxyError::RateLimited {
                    rule,
                    quota,
                    global,
                }));
            }
            Verdict::Unavailable { rule } => {
                return Err(fail(ProxyError::RateLimitUnavailable(rule)));
            }
        }
    }
    if let Some(bucket) = &route.rate_limit {
        Box::pin(bucket.acquire(&route.name)).await.map_err(fail)?;
    }

    let hash = cluster
        .config
        .hash_policy
        .as_ref()
        .and_then(|hp| req.headers().get(hp.header.as_str()))
        .map(|v| crate::cluster::lb::hash_key(v.as_bytes()));
    if let Some(limits) = &cluster.limits {
        finish.permit = Some(limits.requests.acquire(&cluster.name).map_err(fail)?);
    }
    let ticket = match &cluster.breaker {
        Some(b) => Some(b.admit().map_err(fail)?),
        None => None,
    };
    let endpoint = cluster
        .pick(hash)
        .ok_or_else(|| fail(ProxyError::NoHealthyUpstream(cluster.name.to_string())))?;

    // Headers for the upstream.
    let hop = headers::HopByHop::scan(req.headers());
    let upgrade = req.version() == Version::HTTP_11 && hop.is_upgrade();
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    {
        let h = req.headers_mut();
        hop.strip(h, upgrade, true);
        headers::forwarded(h, down.client_ip.as_ref(), "http");
        rewrite_headers(
            h,
            &route.request_headers_to_remove,
            &route.request_headers_to_add,
        );
        if let Some((tracer, ctx)) = &trace_ctx {
            tracer.inject(ctx, h);
        }
    }
    let (mut parts, body) = req.into_parts();
    if route.rewrites() {
        let mut rewritten = authority.to_authority();
        route.rewrite_target(&mut parts, &mut rewritten);
        authority = RequestAuthority::Parsed(rewritten);
    }

    // The mirrored copies go first, with the headers as the primary's stand now.
    let mut body = Pending::Stream(body);
    for m in &route.mirrors {
        if !m.chosen() {
            continue;
        }
        let (rest, copy) = Box::pin(mirror_body(m, body, &received))
            .await
            .map_err(fail)?;
        body = rest;
        match copy {
            Some(copy) => m.send(&parts, &authority.to_authority(), copy),
            None => m.skip_body(),
        }
    }

    for_upstream(
        &mut parts,
        &authority,
        cluster.config.protocol,
        cluster.tls.is_some(),
    )
    .map_err(fail)?;

    let hook = route.hook.as_deref();
    let sent = match (&route.retry, hook) {
        (Some(_), _) | (None, Some(_)) if downstream_upgrade.is_none() => {
            let retrying = attempts::Retrying {
                policy: match route.retry.as_deref() {
                    Some(policy) => policy,
                    None => inject::no_retries(),
                },
                timeout: route.timeout,
                cluster,
                hash,
                hook,
            };
            // Boxed: the retry loop's future is large, and only retrying routes pay for it.
            Box::pin(attempts::with_retries(
                retrying, endpoint, parts, body, received, finish,
            ))
            .await
        }
        _ => {
            if let Some(hook) = hook {
                hook.prepare(&mut parts, None).await.map_err(fail)?;
            }
            let body = match body {
                Pending::Stream(b) => RequestBody::new(b, received),
                Pending::Buffered(b) => b.into_body(),
                Pending::Started(b) => b,
            };
            let up_req = Request::from_parts(parts, body);
            // HTTP/1 requests on a connection come one at a time: they share its timer.
            let timer = one_at_a_time.then_some(&down.request_timer);
            attempts::once(route.timeout, cluster, endpoint, up_req, finish, timer).await
        }
    };
    if let Some(t) = ticket {
        t.record(match &sent {
            Ok((resp, _)) => resp.status().is_server_error(),
            Err(e) => Outcome::of_error(e).is_some(),
        });
    }
    let (mut resp, pooled) = sent.map_err(fail)?;
    let status = resp.status();
    finish.status = status.as_u16();

    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(down) = downstream_upgrade {
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(down), Ok(up)) = (down.await, up.await) {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(down),
                        &mut TokioIo::new(up),
                    )
                    .await;
                }
            });
        }
        return Ok(Forwarded::Upgraded(resp.into_parts().0));
    }

    let h = resp.headers_mut();
    headers::strip_hop_by_hop(h, false);
    rewrite_headers(
        h,
        &route.response_headers_to_remove,
        &route.response_headers_to_add,
    );
    h.insert(headers::X_REQUEST_ID.clone(), request_id);
    if let Some(q) = quota {
        q.write(h);
    }
    Ok(Forwarded::Response(resp, pooled))
}

#[cfg(test)]
mod tests {
    use super::host_of;
    use super::{RequestAuthority, plain_host};
    use http::HeaderValue;
    use http::uri::Authority;

    #[test]
    fn host_of_matches_authority_host() {
        for a in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:28183",
            "[::1]:80",
            "[::1]",
            "user:pw@example.com:1",
            "a@b@c:2",
        ] {
            let parsed: Authority = a.parse().unwrap();
            assert_eq!(host_of(parsed.as_str()), parsed.host(), "{a}");
        }
    }

    /// What skips the parser must be what the parser takes, unchanged; everything else
    /// goes through it and is refused as it would be.
    #[test]
    fn host_values_skip_the_parser_only_when_it_would_take_them() {
        let plain = [
            "app",
            "example.com",
            "Example.COM:8080",
            "127.0.0.1:28183",
            "a-b.c-d:1",
            "xn--bcher-kva.example:65535",
        ];
        for v in plain {
            let h = HeaderValue::from_static(v);
            assert!(plain_host(v.as_bytes()), "{v}");
            let a = RequestAuthority::from_host(&h).expect(v);
            assert!(matches!(a, RequestAuthority::Host(_)), "{v}");
            assert_eq!(a.as_str(), v);
            assert_eq!(a.to_authority(), Authority::try_from(v).unwrap());
        }
        // Valid, but not of the plain shape: parsed.
        for v in [
            "[::1]:80",
            "user@host",
            "host:",
            "a_b",
            "host:123456",
            ":80",
        ] {
            assert!(!plain_host(v.as_bytes()), "{v}");
            let parsed = RequestAuthority::from_host(&HeaderValue::from_static(v));
            assert_eq!(
                parsed.as_ref().map(RequestAuthority::as_str),
                Authority::try_from(v).ok().as_ref().map(Authority::as_str),
                "{v}"
            );
        }
        // Invalid: refused, as by the parser.
        for v in ["a b", "host:80:90", "[::1", "exa%mple", ""] {
            assert!(!plain_host(v.as_bytes()), "{v}");
            assert!(Authority::try_from(v).is_err(), "{v}");
            assert!(
                RequestAuthority::from_host(&HeaderValue::from_static(v)).is_none(),
                "{v}"
            );
        }
    }
}
