//! Live inspection: the requests passing now (`GET /tap` on the admin server) and the last
//! failed ones (`GET /debug/failures`), each with its stage timings and reason chain.
//!
//! Cost when nobody taps: one relaxed atomic load when a request starts, and a reference
//! to its method and URI (reference-count increments, no copy); a successful request records
//! nothing else. A failed request (a local reply, or a
//! 5xx or reset from upstream) always records its attempts, since a failure cannot be
//! known in advance and failures are the rare path.
//!
//! When someone taps, each finished request becomes one shared [`Event`] sent on a bounded
//! broadcast channel; every tapper filters and encodes its own copy. A tapper that reads
//! too slowly loses the oldest events and is told how many (`{"dropped": N}`): the data
//! path never waits on a tapper.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri, header};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::error::ProxyError;

/// Events buffered per tapper before the slowest one starts losing them.
const TAP_BUFFER: usize = 1024;
/// Failed requests kept for `/debug/failures`.
pub const FAILURES_KEPT: usize = 128;
/// Shown instead of a header value.
const REDACTED: &str = "[redacted]";

/// The tap of one process: shared by every listener (through the metrics handles) and the
/// admin server.
pub struct Tap {
    tappers: AtomicUsize,
    tx: broadcast::Sender<Arc<Event>>,
    failures: Mutex<VecDeque<Arc<Event>>>,
    failures_total: AtomicU64,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("tappers", &self.tappers.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            tappers: AtomicUsize::new(0),
            tx: broadcast::channel(TAP_BUFFER).0,
            failures: Mutex::new(VecDeque::with_capacity(FAILURES_KEPT)),
            failures_total: AtomicU64::new(0),
        }
    }
}

/// One finished request, as tappers and the failures ring see it.
#[derive(Debug, Serialize)]
pub struct Event {
    /// When the request head arrived (RFC 3339, milliseconds).
    pub time: String,
    pub listener: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    pub path: String,
    pub status: u16,
    /// The local reply's reason (`no_route`, `upstream_connect_failed`, ...), if the proxy
    /// answered itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The endpoint of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<SocketAddr>,
    /// From request head received to response end.
    pub duration_ms: f64,
    /// Time spent in the proxy before the first attempt went upstream (routing, limits,
    /// buffering a body for retries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_upstream_ms: Option<f64>,
    pub retries: u32,
    /// Every attempt upstream, in order, with why it was retried.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    pub bytes_sent: u64,
    /// Request headers as received; values are shown only to tappers who ask, and never
    /// those that carry credentials.
    #[serde(skip)]
    pub request_headers: Option<HeaderMap>,
}

/// One attempt upstream.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub endpoint: SocketAddr,
    /// Time to open a new connection; absent when a pooled one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    /// From the attempt's start to its response headers (or its failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `retry_on` condition that sent another attempt after this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried_on: Option<&'static str>,
}

/// What a request carries for the tap while it runs. Nearly empty unless someone was
/// tapping when it started or it has failed.
pub struct Record {
    method: Method,
    uri: Uri,
    /// The request-body byte counter, when the request keeps one (access log or tap):
    /// outside `Facts`, so that keeping it allocates nothing for untapped requests.
    received: Option<Arc<AtomicU64>>,
    facts: Option<Box<Facts>>,
}

#[derive(Default)]
struct Facts {
    /// Someone was tapping when the request started: time every stage.
    timed: bool,
    start: Option<Instant>,
    first_send: Option<Instant>,
    authority: Option<HeaderValue>,
    headers: Option<HeaderMap>,
    request_id: Option<HeaderValue>,
    reason: Option<&'static str>,
    error: Option<String>,
    attempts: Vec<Attempt>,
}

/// How a request ended, from `Finish`.
pub struct End<'a> {
    pub listener: &'a Arc<str>,
    pub route: Option<&'a Arc<str>>,
    pub cluster: Option<&'a Arc<str>>,
    pub status: u16,
    pub elapsed: Duration,
    pub bytes_sent: u64,
    pub upstream: Option<SocketAddr>,
}

fn ms(d: Duration) -> f64 {
    // Microsecond precision: more digits are float noise.
    d.as_micros() as f64 / 1000.0
}

impl Record {
    /// At the start of a request. The method and URI are kept (cheap clones of shared
    /// bytes) so a failure can say what failed; everything else only while tapping.
    pub fn begin<B>(tap: &Tap, req: &http::Request<B>) -> Record {
        let facts = tap.active().then(|| {
            Box::new(Facts {
                timed: true,
                start: Some(Instant::now()),
                authority: req.headers().get(header::HOST).cloned(),
                headers: Some(req.headers().clone()),
                ..Facts::default()
            })
        });
        Record {
            method: req.method().clone(),
            uri: req.uri().clone(),
            received: None,
            facts,
        }
    }

    /// Whether this request is being timed for tappers.
    pub fn tapped(&self) -> bool {
        self.facts.as_ref().is_some_and(|f| f.timed)
    }

    fn facts(&mut self) -> &mut Facts {
        self.facts.get_or_insert_with(Box::default)
    }

    /// The request-body byte counter, when one is kept.
    pub fn count_received(&mut self, counter: Arc<AtomicU64>) {
        self.received = Some(counter);
    }

    /// The proxy answered itself.
    pub fn local_reply(&mut self, err: &ProxyError, request_id: Option<&HeaderValue>) {
        let f = self.facts();
        f.reason = Some(err.reason());
        f.error = Some(err.to_string());
        f.request_id = request_id.cloned();
    }

    /// The upstream's response is going to the client: a failed one keeps its request id.
    pub fn response<B>(&mut self, resp: &http::Response<B>) {
        if resp.status().is_server_error() || self.tapped() {
            let id = resp.headers().get("x-request-id").cloned();
            self.facts().request_id = id;
        }
    }

    /// An attempt starts at `now`: kept while tapping, for its timings.
    pub fn attempt_start(&mut self, now: Instant) -> Option<Instant> {
        let f = self.facts.as_mut().filter(|f| f.timed)?;
        f.first_send.get_or_insert(now);
        Some(now)
    }

    /// An attempt ended with `status` or `err`. Kept while tapping, and always when it failed.
    pub fn attempt_end(
        &mut self,
        endpoint: SocketAddr,
        started: Option<Instant>,
        connect: Option<Duration>,
        outcome: Result<u16, &ProxyError>,
    ) {
        let failed = match outcome {
            Ok(status) => status >= 500,
            Err(_) => true,
        };
        if !failed && !self.tapped() {
            return;
        }
        let (status, reason, error) = match outcome {
            Ok(s) => (Some(s), None, None),
            Err(e) => (None, Some(e.reason()), Some(e.to_string())),
        };
        self.facts().attempts.push(Attempt {
            endpoint,
            connect_ms: connect.map(ms),
            response_headers_ms: started.map(|t| ms(t.elapsed())),
            status,
            reason,
            error,
            retried_on: None,
        });
    }

    /// The last attempt is retried because of `condition`.
    pub fn retried(&mut self, condition: &'static str) {
        if let Some(a) = self.facts.as_mut().and_then(|f| f.attempts.last_mut()) {
            a.retried_on = Some(condition);
        }
    }
}

impl Tap {
    pub fn new() -> Arc<Tap> {
        Arc::new(Tap::default())
    }

    /// Whether anyone is tapping now.
    pub fn active(&self) -> bool {
        self.tappers.load(Ordering::Relaxed) > 0
    }

    /// Start tapping; stops when the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let rx = self.tx.subscribe();
        self.tappers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            tap: self.clone(),
            rx,
        }
    }

    /// The request ended: publish it to tappers, keep it if it failed.
    pub fn finish(&self, record: &mut Record, end: End<'_>) {
        let received = record.received.take();
        let Some(facts) = record.facts.take() else {
            // Neither tapped nor failed: nothing to do.
            return;
        };
        let failed = facts.reason.is_some() || end.status >= 500;
        if !failed && !facts.timed {
            return;
        }
        let retries = facts
            .attempts
            .iter()
            .filter(|a| a.retried_on.is_some())
            .count() as u32;
        let event = Arc::new(Event {
            time: super::access_log::rfc3339(
                SystemTime::now()
                    .checked_sub(end.elapsed)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            listener: end.listener.to_string(),
            route: end.route.filter(|r| !r.is_empty()).map(|r| r.to_string()),
            cluster: end.cluster.filter(|c| !c.is_empty()).map(|c| c.to_string()),
            method: record.method.as_str().to_owned(),
            authority: record
                .uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .or_else(|| {
                    facts
                        .authority
                        .as_ref()
                        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                }),
            path: record.uri.path().to_owned(),
            status: end.status,
            reason: facts.reason,
            error: facts.error,
            request_id: facts
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            upstream: end.upstream,
            duration_ms: ms(end.elapsed),
            before_upstream_ms: match (facts.start, facts.first_send) {
                (Some(s), Some(f)) => Some(ms(f.saturating_duration_since(s))),
                _ => None,
            },
            retries,
            attempts: facts.attempts,
            bytes_received: received.map(|r| r.load(Ordering::Relaxed)),
            bytes_sent: end.bytes_sent,
            request_headers: facts.headers,
        });
        if failed {
            self.failures_total.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut ring) = self.failures.lock() {
                if ring.len() == FAILURES_KEPT {
                    ring.pop_front();
                }
                ring.push_back(event.clone());
            }
        }
        if facts.timed {
            // No receiver left is not an error: the last tapper went away meanwhile.
            let _ = self.tx.send(event);
        }
    }

    /// The failures kept, oldest first, and how many failures there were in all.
    pub fn failures(&self) -> (Vec<Arc<Event>>, u64) {
        let ring = self
            .failures
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        (ring, self.failures_total.load(Ordering::Relaxed))
    }
}

/// The `/debug/failures` document: `{"failures_total", "kept", "failures": [...]}`, newest
/// first; header values are never shown.
#[derive(Serialize)]
pub struct FailuresDoc<'a> {
    failures_total: u64,
    kept: usize,
    failures: Vec<Shown<'a>>,
}

impl<'a> FailuresDoc<'a> {
    /// From [`Tap::failures`]: at most `limit` of them.
    pub fn new(ring: &'a [Arc<Event>], total: u64, limit: Option<usize>) -> FailuresDoc<'a> {
        FailuresDoc {
            failures_total: total,
            kept: ring.len(),
            failures: ring
                .iter()
                .rev()
                .take(limit.unwrap_or(FAILURES_KEPT))
                .map(|e| Shown::new(e, false))
                .collect(),
        }
    }
}

/// A tapper's end of the channel; counted while it lives.
pub struct Subscription {
    tap: Arc<Tap>,
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.tap.tappers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which events a tapper wants, from the `/tap` query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub listener: Option<String>,
    pub route: Option<String>,
    pub cluster: Option<String>,
    /// `2xx`..`5xx` (a class) or an exact status.
    pub status: Option<StatusFilter>,
    pub path_prefix: Option<String>,
    /// Stop after this many events.
    pub limit: Option<u64>,
    /// Show header values (never those that carry credentials).
    pub headers: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Class(u16),
    Exact(u16),
}

impl Filter {
    /// Parse `route=..&cluster=..&status=5xx&prefix=/api&limit=10&headers=true`.
    pub fn parse(query: Option<&str>) -> Result<Filter, String> {
        let mut f = Filter::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.into_owned();
            match &*k {
                "listener" => f.listener = Some(v),
                "route" => f.route = Some(v),
                "cluster" => f.cluster = Some(v),
                "prefix" | "path_prefix" => f.path_prefix = Some(v),
                "status" => f.status = Some(parse_status(&v)?),
                "limit" => {
                    f.limit = Some(
                        v.parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| format!("limit: expected a count, found {v:?}"))?,
                    )
                }
                "headers" => {
                    f.headers = match v.as_str() {
                        "" | "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("headers: expected true or false, found {v:?}")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}; use listener, route, cluster, status, prefix, limit, headers"
                    ));
                }
            }
        }
        Ok(f)
    }

    pub fn matches(&self, e: &Event) -> bool {
        let eq = |want: &Option<String>, got: Option<&String>| match want {
            Some(w) => got.is_some_and(|g| g == w),
            None => true,
        };
        eq(&self.listener, Some(&e.listener))
            && eq(&self.route, e.route.as_ref())
            && eq(&self.cluster, e.cluster.as_ref())
            && self
                .path_prefix
                .as_ref()
                .is_none_or(|p| e.path.starts_with(p.as_str()))
            && match self.status {
                Some(StatusFilter::Class(c)) => e.status / 100 == c,
                Some(StatusFilter::Exact(s)) => e.status == s,
                None => true,
            }
    }
}

fn parse_status(v: &str) -> Result<StatusFilter, String> {
    let bad = || format!("status: expected a class like 5xx or a status like 503, found {v:?}");
    if let Some(c) = v.strip_suffix("xx").or_else(|| v.strip_suffix("XX")) {
        return match c.parse::<u16>() {
            Ok(c @ 1..=5) => Ok(StatusFilter::Class(c)),
            _ => Err(bad()),
        };
    }
    match v.parse::<u16>() {
        Ok(s @ 100..=599) => Ok(StatusFilter::Exact(s)),
        _ => Err(bad()),
    }
}

/// Headers whose values are never shown: they carry credentials or sessions.
fn sensitive(name: &str) -> bool {
    const EXACT: [&str; 5] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
    ];
    const PARTS: [&str; 6] = ["token", "secret", "password", "session", "api-key", "auth"];
    EXACT.contains(&name) || PARTS.iter().any(|p| name.contains(p))
}

/// An event as a tapper sees it: its fields in order, then the request headers, values shown
/// only when asked for and never those that carry credentials.
#[derive(Serialize)]
pub struct Shown<'a> {
    #[serde(flatten)]
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_headers: Option<HeadersView<'a>>,
}

impl<'a> Shown<'a> {
    pub fn new(event: &'a Event, values: bool) -> Shown<'a> {
        Shown {
            event,
            request_headers: event
                .request_headers
                .as_ref()
                .map(|headers| HeadersView { headers, values }),
        }
    }
}

struct HeadersView<'a> {
    headers: &'a HeaderMap,
    values: bool,
}

impl Serialize for HeadersView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.headers.keys_len()))?;
        for name in self.headers.keys() {
            let shown = if self.values && !sensitive(name.as_str()) {
                let all: Vec<String> = self
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                all.join(", ")
            } else {
                REDACTED.to_owned()
            };
            m.serialize_entry(name.as_str(), &shown)?;
        }
        m.end()
    }
}

/// An event as one JSON line (without the newline), fields in their declared order.
pub fn encode(e: &Event, values: bool) -> Vec<u8> {
    serde_json::to_vec(&Shown::new(e, values)).unwrap_or_default()
}

/// The `/tap` response body: JSON lines until `limit` events were sent or the client leaves.
pub fn stream(
    sub: Subscription,
    filter: Filter,
) -> impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> + Send {
    let left = filter.limit;
    futures_util::stream::unfold((sub, filter, left), |(mut sub, filter, left)| async move {
        if left == Some(0) {
            return None;
        }
        loop {
            let (mut bytes, counted) = match sub.rx.recv().await {
                Ok(e) if filter.matches(&e) => (encode(&e, filter.headers), true),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    (format!("{{\"dropped\":{n}}}").into_bytes(), false)
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            bytes.push(b'\n');
            let left = match (left, counted) {
                (Some(n), true) => Some(n - 1),
                (l, _) => l,
            };
            return Some((
                Ok(http_body::Frame::data(Bytes::from(bytes))),
                (sub, filter, left),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn end<'a>(listener: &'a Arc<str>, status: u16) -> End<'a> {
        End {
            listener,
            route: None,
            cluster: None,
            status,
            elapsed: Duration::from_millis(3),
            bytes_sent: 10,
            upstream: None,
        }
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(path)
            .header("host", "a.example")
            .header("authorization", "Bearer s3cret")
            .header("x-trace", "t1")
            .body(())
            .expect("valid request")
    }

    #[test]
    fn nothing_is_kept_for_a_successful_untapped_request() {
        let tap = Tap::new();
        let l: Arc<str> = "in".into();
        let mut r = Record::begin(&tap, &request("/ok"));
        assert!(!r.tapped());
        assert_eq!(r.attempt_start(Instant::now()), None);
        r.attempt_end("127.0.0.1:1".parse().expect("addr"), None, None, Ok(200));
        assert!(r.facts.is_none(), "a success allocates nothing");
        tap.finish(&mut r, end(&l, 200));
        assert_eq!(tap.failures().1, 0);
    }

    #[test]
    fn failures_keep_their_reason_chain_and_the_ring_is_bounded() {
        let tap = Tap::new();
        let l: Arc<str> = "in".into();
        for i in 0..FAILURES_KEPT + 5 {
            let mut r = Record::begin(&tap, &request(&format!("/f{i}")));
            let ep = "127.0.0.1:9".parse().expect("addr");
            r.attempt_end(ep, None, None, Ok(503));
            r.retried("5xx");
            r.attempt_end(ep, None, None, Ok(503));
            tap.finish(&mut r, end(&l, 503));
        }
        let (ring, total) = tap.failures();
        let doc = serde_json::to_value(FailuresDoc::new(&ring, total, Some(1))).expect("json");
        assert_eq!(doc["failures_total"], FAILURES_KEPT as u64 + 5);
        assert_eq!(doc["kept"], FAILURES_KEPT);
        let newest = &doc["failures"][0];
        assert_eq!(newest["path"], format!("/f{}", FAILURES_KEPT + 4));
        assert_eq!(newest["retries"], 1);
        assert_eq!(newest["attempts"][0]["retried_on"], "5xx");
        assert_eq!(newest["attempts"][1]["status"], 503);
    }

    #[tokio::test]
    async fn tappers_get_filtered_events_with_headers_redacted() {
        use futures_util::StreamExt;
        let tap = Tap::new();
        let sub = tap.subscribe();
        assert!(tap.active());
        let filter = Filter::parse(Some("prefix=/api&limit=1&headers=1")).expect("valid");
        let l: Arc<str> = "in".into();
        for path in ["/other", "/api/x"] {
            let mut r = Record::begin(&tap, &request(path));
            assert!(r.tapped());
            tap.finish(&mut r, end(&l, 200));
        }
        let lines: Vec<_> = stream(sub, filter).collect().await;
        assert_eq!(lines.len(), 1, "limit ends the stream");
        let frame = lines.into_iter().next().expect("one").expect("infallible");
        let data = frame.into_data().expect("data");
        let v: Value = serde_json::from_slice(&data).expect("json");
        assert_eq!(v["path"], "/api/x");
        assert_eq!(v["authority"], "a.example");
        assert_eq!(v["request_headers"]["x-trace"], "t1");
        assert_eq!(v["request_headers"]["authorization"], REDACTED);
        assert!(!tap.active(), "the tapper left when its stream ended");
    }

    #[tokio::test]
    async fn a_slow_tapper_is_told_what_it_missed() {
        use futures_util::StreamExt;
        let tap = Tap::new();
        let sub = tap.subscribe();
        let l: Arc<str> = "in".into();
        for _ in 0..TAP_BUFFER + 10 {
            tap.finish(&mut Record::begin(&tap, &request("/")), end(&l, 200));
        }
        let mut s = Box::pin(stream(sub, Filter::default()));
        let first = s.next().await.expect("a line").expect("infallible");
        let v: Value = serde_json::from_slice(&first.into_data().expect("data")).expect("json");
        assert_eq!(v["dropped"], 10);
    }

    #[test]
    fn filters_parse_and_refuse_nonsense() {
        let f = Filter::parse(Some("route=api&cluster=b&status=5xx&prefix=%2Fv1&limit=3"))
            .expect("valid");
        assert_eq!(f.route.as_deref(), Some("api"));
        assert_eq!(f.path_prefix.as_deref(), Some("/v1"));
        assert_eq!(f.status, Some(StatusFilter::Class(5)));
        assert_eq!(f.limit, Some(3));
        assert_eq!(
            Filter::parse(Some("status=503")).expect("valid").status,
            Some(StatusFilter::Exact(503))
        );
        assert!(Filter::parse(Some("status=9xx")).is_err());
        assert!(Filter::parse(Some("limit=0")).is_err());
        assert!(Filter::parse(Some("colour=red")).is_err());
    }

    #[test]
    fn credentials_are_never_shown() {
        for h in [
            "authorization",
            "cookie",
            "x-auth-token",
            "x-api-key",
            "x-session-id",
        ] {
            assert!(sensitive(h), "{h}");
        }
        assert!(!sensitive("accept"));
    }
}
