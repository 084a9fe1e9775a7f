//! Distributed tracing on the request path: the trace context a request arrives with (W3C
//! `traceparent`/`tracestate`, B3 single `b3` or multi `x-b3-*` headers), the sampling
//! decision, the headers written upstream, and the span handed to the exporter when the
//! request ends.
//!
//! The proxy is one hop of the trace: it opens a span of its own (a server span on an
//! inbound listener, a client span on an outbound one) whose parent is the caller's span, and
//! passes its own span id upstream as the next hop's parent. The caller's sampling decision is
//! kept (parent-based sampling); a request without one is sampled at the configured rate.
//! Unsampled requests still carry their context upstream, flagged not sampled, so the trace
//! stays one trace whichever hop samples.
//!
//! The cost is paid only where it must be: with tracing off nothing here runs; with it on, an
//! unsampled request costs a header parse and a header write; only sampled requests capture
//! the facts a span needs. Spans leave through a bounded queue (`span_export`), never waiting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::config::{Propagation, TraceDirection};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub static B3: HeaderName = HeaderName::from_static("b3");
pub static X_B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub static X_B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub static X_B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub static X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub static X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The header format a trace context came in (and goes out) as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    W3c,
    B3Single,
    B3Multi,
}

/// The trace context of one request as this proxy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub trace_id: u128,
    /// This proxy's span for the request: the parent of the next hop.
    pub span_id: u64,
    /// The caller's span, when the request arrived with a context.
    pub parent_id: Option<u64>,
    pub sampled: bool,
    /// The format the context arrived in; `None` when this proxy started the trace.
    pub incoming: Option<Format>,
    /// The incoming B3 trace id was 64 bits: written back the same way.
    short_trace_id: bool,
}

/// A context parsed from headers, before this proxy's span exists.
#[derive(Debug, PartialEq, Eq)]
struct Parent {
    trace_id: u128,
    span_id: Option<u64>,
    /// `None`: the caller made no decision (B3 allows this); the proxy decides.
    sampled: Option<bool>,
    format: Format,
    short_trace_id: bool,
}

fn hex_u128(s: &[u8]) -> Option<u128> {
    if s.is_empty() || s.len() > 32 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u128::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.len() != 16 || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`. A later version may
/// append fields after the flags; version `ff` is invalid. All-zero ids are invalid.
fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let (version, rest) = (&v[..2], &v[2..]);
    if version.eq_ignore_ascii_case(b"ff")
        || !version.iter().all(u8::is_ascii_hexdigit)
        || rest[0] != b'-'
        || rest[33] != b'-'
        || rest[50] != b'-'
        || (version == b"00" && v.len() != 55)
    {
        return None;
    }
    let trace_id = hex_u128(&rest[1..33]).filter(|t| *t != 0)?;
    let span_id = hex_u64(&rest[34..50]).filter(|s| *s != 0)?;
    let flags = u8::from_str_radix(std::str::from_utf8(&rest[51..53]).ok()?, 16).ok()?;
    Some(Parent {
        trace_id,
        span_id: Some(span_id),
        sampled: Some(flags & 1 == 1),
        format: Format::W3c,
        short_trace_id: false,
    })
}

/// A B3 trace id: 16 or 32 hex digits, not all zero. Returns the id and whether it was short.
fn b3_trace_id(s: &[u8]) -> Option<(u128, bool)> {
    if s.len() != 16 && s.len() != 32 {
        return None;
    }
    hex_u128(s).filter(|t| *t != 0).map(|t| (t, s.len() == 16))
}

fn b3_sampled(s: &[u8]) -> Option<Option<bool>> {
    match s {
        b"1" | b"d" | b"true" => Some(Some(true)),
        b"0" | b"false" => Some(Some(false)),
        _ => None,
    }
}

/// `b3: {trace id}-{span id}[-{sampling}[-{parent span id}]]`, or a lone sampling state
/// (`0`, `1`, `d`), which carries a decision but no ids.
fn parse_b3_single(v: &[u8]) -> Option<Parent> {
    let mut fields = v.split(|b| *b == b'-');
    let first = fields.next()?;
    let Some(second) = fields.next() else {
        // A lone decision: a new trace, sampled as the caller said.
        return b3_sampled(first).map(|sampled| Parent {
            trace_id: new_trace_id(),
            span_id: None,
            sampled,
            format: Format::B3Single,
            short_trace_id: false,
        });
    };
    let (trace_id, short) = b3_trace_id(first)?;
    let span_id = hex_u64(second).filter(|s| *s != 0)?;
    let sampled = match fields.next() {
        Some(s) => b3_sampled(s)?,
        None => None,
    };
    if let Some(parent) = fields.next() {
        hex_u64(parent)?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id: Some(span_id),
        sampled,
        format: Format::B3Single,
        short_trace_id: short,
    })
}

fn parse_b3_multi(h: &HeaderMap) -> Option<Parent> {
    let trace_id = h.get(&X_B3_TRACE_ID);
    let sampled_header = h.get(&X_B3_SAMPLED);
    // The common case, no B3 at all, in two lookups.
    if trace_id.is_none() && sampled_header.is_none() {
        return None;
    }
    let debug = h.get(&X_B3_FLAGS).is_some_and(|f| f.as_bytes() == b"1");
    let sampled = match sampled_header {
        _ if debug => Some(true),
        Some(s) => b3_sampled(s.as_bytes())?,
        None => None,
    };
    match (trace_id, h.get(&X_B3_SPAN_ID)) {
        (Some(t), Some(s)) => {
            let (trace_id, short) = b3_trace_id(t.as_bytes())?;
            let span_id = hex_u64(s.as_bytes()).filter(|s| *s != 0)?;
            Some(Parent {
                trace_id,
                span_id: Some(span_id),
                sampled,
                format: Format::B3Multi,
                short_trace_id: short,
            })
        }
        // A decision without ids (`x-b3-sampled: 0` alone is how callers opt out).
        (None, None) if sampled.is_some() => Some(Parent {
            trace_id: new_trace_id(),
            span_id: None,
            sampled,
            format: Format::B3Multi,
            short_trace_id: false,
        }),
        _ => None,
    }
}

/// The caller's context: W3C first (the standard), then B3 single, then B3 multi. A malformed
/// header is ignored, as the W3C spec asks: the proxy then starts a new trace.
fn extract(h: &HeaderMap) -> Option<Parent> {
    if let Some(p) = h
        .get(&TRACEPARENT)
        .and_then(|v| parse_traceparent(v.as_bytes()))
    {
        return Some(p);
    }
    if let Some(p) = h.get(&B3).and_then(|v| parse_b3_single(v.as_bytes())) {
        return Some(p);
    }
    parse_b3_multi(h)
}

fn new_trace_id() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

fn new_span_id() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// Counters of what happened to sampled spans (`sidecar_trace_spans_total{result}`).
#[derive(Clone, Default)]
pub struct SpanStats {
    /// Queued for export.
    pub queued: Counter,
    /// Dropped because the export queue was full (a slow or dead collector).
    pub dropped: Counter,
    /// Delivered to the collector (a 2xx answer).
    pub exported: Counter,
    /// Lost in an export the collector refused or that failed.
    pub failed: Counter,
}

/// The tracing settings of a running config, and the queue spans leave by.
pub struct Tracer {
    sampling: f64,
    propagation: Propagation,
    pub service_name: Arc<str>,
    /// `None` without a collector: contexts are propagated, spans are not recorded.
    queue: Option<mpsc::Sender<Span>>,
    stats: SpanStats,
}

impl Tracer {
    pub fn new(
        sampling: f64,
        propagation: Propagation,
        service_name: &str,
        queue: Option<mpsc::Sender<Span>>,
        stats: SpanStats,
    ) -> Tracer {
        Tracer {
            sampling,
            propagation,
            service_name: service_name.into(),
            queue,
            stats,
        }
    }

    /// The request's context: continued from the caller's, or a new trace.
    pub fn start(&self, h: &HeaderMap) -> Context {
        let parent = extract(h);
        let decided = parent.as_ref().and_then(|p| p.sampled);
        let sampled =
            decided.unwrap_or_else(|| self.sampling > 0.0 && fastrand::f64() < self.sampling);
        match parent {
            Some(p) => Context {
                trace_id: p.trace_id,
                span_id: new_span_id(),
                parent_id: p.span_id,
                sampled,
                incoming: Some(p.format),
                short_trace_id: p.short_trace_id,
            },
            None => Context {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                parent_id: None,
                sampled,
                incoming: None,
                short_trace_id: false,
            },
        }
    }

    /// Rewrite the request's trace headers for the upstream: this proxy's span becomes the
    /// parent. The format is the one the request came in; a trace the proxy started goes out
    /// in the configured formats. `tracestate` is vendor data of the caller's and passes as is.
    ///
    /// On the path of every request when tracing is on, sampled or not: the values are hex
    /// written into stack buffers, and only headers that may hold stale values are removed.
    pub fn inject(&self, ctx: &Context, h: &mut HeaderMap) {
        let (w3c, b3_single, b3_multi) = match ctx.incoming {
            Some(Format::W3c) => (true, false, false),
            Some(Format::B3Single) => (false, true, false),
            Some(Format::B3Multi) => (false, false, true),
            None => (self.propagation.w3c, false, self.propagation.b3),
        };
        let flag = if ctx.sampled { b'1' } else { b'0' };
        let mut span = [0u8; 16];
        hex(ctx.span_id as u128, &mut span);
        if w3c {
            // 00-<trace>-<span>-0x
            let mut v = [b'-'; 55];
            v[..2].copy_from_slice(b"00");
            hex(ctx.trace_id, &mut v[3..35]);
            v[36..52].copy_from_slice(&span);
            v[53] = b'0';
            v[54] = flag;
            insert(h, &TRACEPARENT, &v);
        }
        let mut trace = [0u8; 32];
        let trace: &[u8] = if ctx.short_trace_id {
            hex(ctx.trace_id as u64 as u128, &mut trace[..16]);
            &trace[..16]
        } else {
            hex(ctx.trace_id, &mut trace);
            &trace
        };
        if b3_single {
            let mut v = [b'-'; 32 + 1 + 16 + 2];
            let n = trace.len();
            v[..n].copy_from_slice(trace);
            v[n + 1..n + 17].copy_from_slice(&span);
            v[n + 18] = flag;
            insert(h, &B3, &v[..n + 19]);
        }
        if b3_multi {
            insert(h, &X_B3_TRACE_ID, trace);
            insert(h, &X_B3_SPAN_ID, &span);
            match ctx.parent_id {
                Some(p) => {
                    let mut v = [0u8; 16];
                    hex(p as u128, &mut v);
                    insert(h, &X_B3_PARENT_SPAN_ID, &v);
                }
                None => {
                    h.remove(&X_B3_PARENT_SPAN_ID);
                }
            }
            insert(h, &X_B3_SAMPLED, &[flag]);
            // The debug flag was the caller's decision; the sampled flag now carries it.
            if ctx.incoming == Some(Format::B3Multi) {
                h.remove(&X_B3_FLAGS);
            }
        }
    }

    /// Whether a sampled request's span goes anywhere (a collector is configured).
    pub fn exports(&self) -> bool {
        self.queue.is_some()
    }

    /// Queue a finished span; a full queue drops it (and counts it) rather than wait.
    pub fn record(&self, span: Span) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(span) {
            Ok(()) => self.stats.queued.inc(),
            Err(_) => self.stats.dropped.inc(),
        };
    }
}

/// Lowercase hex of the low `out.len() * 4` bits of `v`, most significant digit first.
fn hex(mut v: u128, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// Hex digits and `-` are always a valid header value.
fn insert(h: &mut HeaderMap, name: &HeaderName, v: &[u8]) {
    if let Ok(v) = HeaderValue::from_bytes(v) {
        h.insert(name.clone(), v);
    }
}

impl Context {
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// Span kind: what this hop is to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The proxy receives the request for its app (an inbound listener).
    Server,
    /// The proxy sends its app's request out (an outbound listener).
    Client,
}

impl From<TraceDirection> for Kind {
    fn from(d: TraceDirection) -> Kind {
        match d {
            TraceDirection::Inbound => Kind::Server,
            TraceDirection::Outbound => Kind::Client,
        }
    }
}

/// One finished span, as the exporter encodes it.
#[derive(Clone, Debug)]
pub struct Span {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_id: Option<u64>,
    pub kind: Kind,
    pub start: SystemTime,
    pub duration: Duration,
    pub method: String,
    pub path: String,
    pub authority: String,
    pub status: u16,
    pub listener: Arc<str>,
    pub route: Option<Arc<str>>,
    pub cluster: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub downstream: SocketAddr,
    /// Attempts beyond the first.
    pub retries: u32,
    /// Why the proxy answered itself, when it did.
    pub reason: Option<&'static str>,
    pub request_id: String,
}

impl Span {
    /// The span name: method and route, a bounded set (a path would not be).
    pub fn name(&self) -> String {
        match &self.route {
            Some(r) => format!("{} {r}", self.method),
            None => self.method.clone(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.status >= 500 || self.status == 0 || self.reason.is_some() && self.status >= 400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(sampling: f64, propagation: Propagation) -> (Tracer, mpsc::Receiver<Span>) {
        let (tx, rx) = mpsc::channel(4);
        (
            Tracer::new(
                sampling,
                propagation,
                "test",
                Some(tx),
                SpanStats::default(),
            ),
            rx,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const W3C: Propagation = Propagation {
        w3c: true,
        b3: false,
    };

    #[test]
    fn traceparent_is_continued_with_a_new_span_and_the_callers_decision() {
        let (t, _rx) = tracer(0.0, W3C);
        let h = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        let ctx = t.start(&h);
        assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.parent_id, Some(0x00f067aa0ba902b7));
        assert_ne!(ctx.span_id, 0x00f067aa0ba902b7);
        assert!(ctx.sampled, "a sampled parent is honoured at rate 0");
        let mut out = h.clone();
        t.inject(&ctx, &mut out);
        assert_eq!(
            out.get(&TRACEPARENT).unwrap(),
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{:016x}-01",
                ctx.span_id
            )
            .as_str()
        );
        assert!(out.get(&B3).is_none());
    }

    #[test]
    fn an_unsampled_parent_stays_unsampled_at_rate_one() {
        let (t, _rx) = tracer(1.0, W3C);
        let h = headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]);
        let ctx = t.start(&h);
        assert!(!ctx.sampled);
        let mut out = HeaderMap::new();
        t.inject(&ctx, &mut out);
        assert!(
            out.get(&TRACEPARENT)
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-00")
        );
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
        // A future version may carry more fields after the flags.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")
                .is_some()
        );
        let (t, _rx) = tracer(0.0, W3C);
        let ctx = t.start(&headers(&[("traceparent", "garbage")]));
        assert_eq!(ctx.incoming, None);
        assert_eq!(ctx.parent_id, None);
        assert!(!ctx.sampled);
    }

    #[test]
    fn b3_single_header_forms() {
        let p = parse_b3_single(
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )
        .unwrap();
        assert_eq!(p.trace_id, 0x80f198ee56343ba864fe8b2a57d3eff7);
        assert_eq!(p.span_id, Some(0xe457b5a2e4d86bd1));
        assert_eq!(p.sampled, Some(true));
        let p = parse_b3_single(b"64fe8b2a57d3eff7-e457b5a2e4d86bd1").unwrap();
        assert!(p.short_trace_id);
        assert_eq!(p.sampled, None, "no decision: the proxy decides");
        let p = parse_b3_single(b"0").unwrap();
        assert_eq!(p.sampled, Some(false));
        assert_eq!(p.span_id, None);
        assert!(parse_b3_single(b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-x").is_none());
        assert!(parse_b3_single(b"64fe8b2a57d3eff7").is_none());
    }

    #[test]
    fn b3_single_goes_out_as_b3_single_with_a_short_id_kept_short() {
        let (t, _rx) = tracer(0.0, W3C);
        let h = headers(&[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-d")]);
        let ctx = t.start(&h);
        assert!(ctx.sampled, "debug means sampled");
        let mut out = h.clone();
        t.inject(&ctx, &mut out);
        assert_eq!(
            out.get(&B3).unwrap(),
            format!("64fe8b2a57d3eff7-{:016x}-1", ctx.span_id).as_str()
        );
        assert!(out.get(&TRACEPARENT).is_none());
    }

    #[test]
    fn b3_multi_goes_out_as_b3_multi() {
        let (t, _rx) = tracer(0.0, W3C);
        let h = headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ]);
        let ctx = t.start(&h);
        let mut out = h.clone();
        t.inject(&ctx, &mut out);
        assert_eq!(
            out.get(&X_B3_TRACE_ID).unwrap(),
            "463ac35c9f6413ad48485a3953bb6124"
        );
        assert_eq!(
            out.get(&X_B3_SPAN_ID).unwrap(),
            format!("{:016x}", ctx.span_id).as_str()
        );
        assert_eq!(out.get(&X_B3_PARENT_SPAN_ID).unwrap(), "a2fb4a1d1a96d312");
        assert_eq!(out.get(&X_B3_SAMPLED).unwrap(), "1");
        let opted_out = t.start(&headers(&[("x-b3-sampled", "0")]));
        assert!(!opted_out.sampled);
        let debug = t.start(&headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-flags", "1"),
        ]));
        assert!(debug.sampled);
    }

    #[test]
    fn a_new_trace_goes_out_in_every_configured_format() {
        let (t, _rx) = tracer(
            1.0,
            Propagation {
                w3c: true,
                b3: true,
            },
        );
        let ctx = t.start(&HeaderMap::new());
        assert!(ctx.sampled);
        assert_eq!(ctx.parent_id, None);
        let mut out = HeaderMap::new();
        t.inject(&ctx, &mut out);
        assert!(out.contains_key(&TRACEPARENT));
        assert_eq!(
            out.get(&X_B3_TRACE_ID).unwrap(),
            ctx.trace_id_hex().as_str()
        );
        assert!(!out.contains_key(&X_B3_PARENT_SPAN_ID));
    }

    #[test]
    fn sampling_rate_is_applied_to_new_traces() {
        let (t, _rx) = tracer(0.25, W3C);
        let n = 20_000;
        let sampled = (0..n)
            .filter(|_| t.start(&HeaderMap::new()).sampled)
            .count();
        let ratio = sampled as f64 / n as f64;
        assert!((0.22..0.28).contains(&ratio), "{ratio}");
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (t, _rx) = tracer(1.0, W3C);
        let span = Span {
            trace_id: 1,
            span_id: 2,
            parent_id: None,
            kind: Kind::Server,
            start: SystemTime::now(),
            duration: Duration::from_millis(1),
            method: "GET".into(),
            path: "/".into(),
            authority: "a".into(),
            status: 200,
            listener: "l".into(),
            route: None,
            cluster: None,
            upstream: None,
            downstream: "127.0.0.1:1".parse().unwrap(),
            retries: 0,
            reason: None,
            request_id: "r".into(),
        };
        for _ in 0..6 {
            t.record(span.clone());
        }
        assert_eq!(t.stats.queued.get(), 4);
        assert_eq!(t.stats.dropped.get(), 2);
    }
}
