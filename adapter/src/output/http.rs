//! The HTTP output: records batched by count, bytes and time, optionally gzipped, in one
//! of three body shapes, POSTed until the endpoint accepts them.
//!
//! A failed or stalled request is retried forever with capped, jittered exponential backoff
//! (proxy-core's retry backoff). While it retries, the output takes no new batches, so the
//! pipeline channel fills and the readers stop: nothing is dropped and memory stays bounded.
//! Attempts also go through proxy-core's error-rate breaker: once at least
//! `breaker_failures` attempts in the last 30 s failed at a rate of 50% or more, it opens and
//! no request is sent for `max_backoff`; then one probe decides whether it closes again.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proxy_core::config::{Dur, ErrorRateBreaker as BreakerConfig};
use proxy_core::error::ProxyError;
use proxy_core::resilience::breaker::{ErrorRateBreaker, State};
use proxy_core::resilience::retry::backoff;

use super::{Committer, OutputError};
use crate::metrics::Stats;
use crate::pipeline::{Batch, Mark};
use crate::record::write_json_string;

/// How the records are laid out in a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyShape {
    /// One JSON record per line.
    Ndjson,
    /// Elasticsearch `_bulk`: an `index` action line before each record, with `_id` set to
    /// the record's stable id when it has one (`adapter tail`), so re-sent records replace
    /// themselves.
    ElasticsearchBulk { index: String },
    /// Loki `POST /loki/api/v1/push` JSON: one stream with these labels, each record a line.
    Loki { labels: Vec<(String, String)> },
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub uri: Uri,
    pub shape: BodyShape,
    pub gzip: bool,
    pub headers: Vec<(String, String)>,
    pub max_records: usize,
    pub max_bytes: usize,
    /// A batch is sent at the latest this long after its first record arrived.
    pub max_wait: Duration,
    pub request_timeout: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub breaker_failures: u32,
}

impl HttpConfig {
    pub fn new(uri: Uri) -> Self {
        HttpConfig {
            uri,
            shape: BodyShape::Ndjson,
            gzip: false,
            headers: Vec::new(),
            max_records: 1000,
            max_bytes: 1 << 20,
            max_wait: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            breaker_failures: 5,
        }
    }
}

/// Records taken from pipeline batches for one request; a pipeline batch's marks are
/// committed when its last record was delivered.
struct Pending {
    batch: Batch,
    /// Bytes of `batch.data` already put into a request.
    taken: usize,
}

/// The next request's records and the marks it completes.
#[derive(Default)]
struct Outgoing {
    records: Vec<(usize, usize, usize)>,
    bytes: usize,
    marks: Vec<Mark>,
    finished_batches: usize,
}

pub fn run(
    rx: Receiver<Batch>,
    cfg: HttpConfig,
    committer: &Committer,
    stats: Arc<Stats>,
) -> Result<(), OutputError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| OutputError::HttpStart(err.to_string()))?;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut open = true;
    let mut reported_open = false;
    // A private proxy-core metrics registry: the breaker's own series are not exported; the
    // adapter exports `adapter_output_breaker_open` instead.
    let breaker_metrics = proxy_core::telemetry::metrics::Metrics::new("adapter_http_output");
    let breaker = ErrorRateBreaker::new(
        &BreakerConfig {
            failure_rate_threshold: 50.0,
            minimum_requests: cfg.breaker_failures,
            window: Dur::secs(30),
            open_duration: Dur(cfg.max_backoff),
            half_open_requests: 1,
        },
        "http_output",
        &breaker_metrics,
    );
    loop {
        // Fill the queue until a request is full or the oldest record waited long enough.
        let started = Instant::now();
        while open && !request_full(&queue, &cfg) {
            let waited = started.elapsed();
            let wait = if queue.iter().any(|p| p.taken < p.batch.data.len()) {
                cfg.max_wait.saturating_sub(waited)
            } else {
                Duration::from_secs(3600)
            };
            if wait.is_zero() {
                break;
            }
            match rx.recv_timeout(wait) {
                Ok(batch) => queue.push_back(Pending { batch, taken: 0 }),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        if queue.is_empty() {
            if open {
                continue;
            }
            return Ok(());
        }
        let request = take_request(&mut queue, &cfg);
        if !request.records.is_empty() {
            let body = render(&queue, &request, &cfg);
            let mut retry = 0u32;
            loop {
                let ticket = match breaker.admit() {
                    Ok(ticket) => ticket,
                    Err(ProxyError::CircuitOpen { retry_after, .. }) => {
                        stats.breaker_open.set(1);
                        std::thread::sleep(retry_after.max(Duration::from_millis(10)));
                        continue;
                    }
                    Err(_) => {
                        std::thread::sleep(cfg.max_backoff);
                        continue;
                    }
                };
                let outcome = runtime.block_on(send(&client, &cfg, body.clone()));
                ticket.record(outcome.is_err());
                let open = breaker.state() != State::Closed;
                stats.breaker_open.set(i64::from(open));
                match outcome {
                    Ok(()) => {
                        if reported_open && !open {
                            eprintln!("adapter: HTTP output recovered; breaker closed");
                            reported_open = false;
                        }
                        break;
                    }
                    Err(reason) => {
                        stats.output_failure(reason.kind);
                        stats.output_retries.inc();
                        retry = retry.saturating_add(1);
                        if open && !reported_open {
                            eprintln!(
                                "adapter: HTTP output failing ({}); breaker open, next attempt in {:?}",
                                reason.detail, cfg.max_backoff
                            );
                            reported_open = true;
                        }
                        std::thread::sleep(backoff(
                            cfg.base_backoff,
                            cfg.max_backoff,
                            retry,
                            fastrand::f64(),
                        ));
                    }
                }
            }
        }
        let records = request.records.len() as u64;
        let bytes = request.bytes as u64;
        committer.delivered(records, bytes, &request.marks, request.finished_batches)?;
        for _ in 0..request.finished_batches {
            queue.pop_front();
        }
    }
}

fn request_full(queue: &VecDeque<Pending>, cfg: &HttpConfig) -> bool {
    let mut bytes = 0usize;
    let mut records = 0usize;
    for p in queue {
        let rest = &p.batch.data[p.taken..];
        bytes += rest.len();
        records += memchr::memchr_iter(b'\n', rest).count();
        if bytes >= cfg.max_bytes || records >= cfg.max_records {
            return true;
        }
    }
    false
}

/// Picks the records of the next request from the front of the queue (at least one record,
/// then up to the limits), advancing `taken`; fully taken batches are counted so the caller
/// removes them after delivery and commits their marks.
fn take_request(queue: &mut VecDeque<Pending>, cfg: &HttpConfig) -> Outgoing {
    let mut req = Outgoing::default();
    for (i, p) in queue.iter_mut().enumerate() {
        while p.taken < p.batch.data.len() {
            if !req.records.is_empty()
                && (req.records.len() >= cfg.max_records || req.bytes >= cfg.max_bytes)
            {
                return req;
            }
            let rest = &p.batch.data[p.taken..];
            let len = memchr::memchr(b'\n', rest).map_or(rest.len(), |n| n + 1);
            if req.bytes + len > cfg.max_bytes && !req.records.is_empty() {
                return req;
            }
            req.records.push((i, p.taken, p.taken + len));
            req.bytes += len;
            p.taken += len;
        }
        req.finished_batches = i + 1;
        req.marks.extend(p.batch.marks.iter().cloned());
    }
    req
}

/// The stable id a tail record carries in its trailing `input` object.
fn record_id(record: &[u8]) -> Option<&[u8]> {
    let input = memchr::memmem::rfind(record, b"\"input\":{\"file\":")?;
    let id = input + memchr::memmem::find(&record[input..], b",\"id\":\"")? + 7;
    let end = id + memchr::memchr(b'"', &record[id..])?;
    Some(&record[id..end])
}

fn render(queue: &VecDeque<Pending>, req: &Outgoing, cfg: &HttpConfig) -> Bytes {
    let mut body = Vec::with_capacity(req.bytes + req.records.len() * 48 + 256);
    let record = |&(i, from, to): &(usize, usize, usize)| {
        let data = &queue[i].batch.data[from..to];
        data.strip_suffix(b"\n").unwrap_or(data)
    };
    match &cfg.shape {
        BodyShape::Ndjson => {
            for r in &req.records {
                body.extend_from_slice(record(r));
                body.push(b'\n');
            }
        }
        BodyShape::ElasticsearchBulk { index } => {
            for r in &req.records {
                let rec = record(r);
                body.extend_from_slice(b"{\"index\":{\"_index\":");
                write_json_string(&mut body, index);
                if let Some(id) = record_id(rec) {
                    body.extend_from_slice(b",\"_id\":\"");
                    body.extend_from_slice(id);
                    body.push(b'"');
                }
                body.extend_from_slice(b"}}\n");
                body.extend_from_slice(rec);
                body.push(b'\n');
            }
        }
        BodyShape::Loki { labels } => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            body.extend_from_slice(b"{\"streams\":[{\"stream\":{");
            for (n, (k, v)) in labels.iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                write_json_string(&mut body, k);
                body.push(b':');
                write_json_string(&mut body, v);
            }
            body.extend_from_slice(b"},\"values\":[");
            for (n, r) in req.records.iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                // One nanosecond apart: Loki drops a line equal to another at the same instant.
                body.extend_from_slice(b"[\"");
                body.extend_from_slice(itoa::Buffer::new().format(now + n as u128).as_bytes());
                body.extend_from_slice(b"\",");
                let text = String::from_utf8_lossy(record(r));
                write_json_string(&mut body, &text);
                body.push(b']');
            }
            body.extend_from_slice(b"]}]}");
        }
    }
    if cfg.gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&body);
        body = enc.finish().unwrap_or_default();
    }
    Bytes::from(body)
}

/// Whether an Elasticsearch `_bulk` answer (200 even when items failed) reports errors.
fn bulk_item_failed(shape: &BodyShape, answer: &[u8]) -> bool {
    matches!(shape, BodyShape::ElasticsearchBulk { .. })
        && (memchr::memmem::find(answer, b"\"errors\":true").is_some()
            || memchr::memmem::find(answer, b"\"errors\": true").is_some())
}

struct Failure {
    kind: &'static str,
    detail: String,
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    cfg: &HttpConfig,
    body: Bytes,
) -> Result<(), Failure> {
    let content_type = match cfg.shape {
        BodyShape::Ndjson | BodyShape::ElasticsearchBulk { .. } => "application/x-ndjson",
        BodyShape::Loki { .. } => "application/json",
    };
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(cfg.uri.clone())
        .header(http::header::CONTENT_TYPE, content_type);
    if cfg.gzip {
        builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
    }
    for (k, v) in &cfg.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder.body(Full::new(body)).map_err(|err| Failure {
        kind: "request",
        detail: err.to_string(),
    })?;
    let attempt = async {
        let response = client.request(request).await.map_err(|err| Failure {
            kind: "connect",
            detail: err.to_string(),
        })?;
        let status = response.status();
        // Read the body so the connection can be reused (and, for `_bulk`, checked).
        let answer = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() && bulk_item_failed(&cfg.shape, &answer) {
            // Some records were refused: the whole request is sent again. Each record
            // carries its `_id` when it has one, so those already stored are replaced.
            Err(Failure {
                kind: "bulk_item_errors",
                detail: "the _bulk answer reports item errors".into(),
            })
        } else if status.is_success() {
            Ok(())
        } else {
            Err(Failure {
                kind: if status.is_server_error() {
                    "status_5xx"
                } else {
                    "status_4xx"
                },
                detail: format!("status {status}"),
            })
        }
    };
    match tokio::time::timeout(cfg.request_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Failure {
            kind: "timeout",
            detail: format!("no answer within {:?}", cfg.request_timeout),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(data: &[&str]) -> VecDeque<Pending> {
        data.iter()
            .map(|d| Pending {
                batch: Batch {
                    data: d.as_bytes().to_vec(),
                    records: d.matches('\n').count() as u64,
                    marks: Vec::new(),
                },
                taken: 0,
            })
            .collect()
    }

    #[test]
    fn requests_respect_the_record_limit_across_batches() {
        let mut cfg = HttpConfig::new(Uri::from_static("http://127.0.0.1:1/"));
        cfg.max_records = 3;
        let mut q = queue(&["{\"a\":1}\n{\"a\":2}\n", "{\"a\":3}\n{\"a\":4}\n"]);
        let req = take_request(&mut q, &cfg);
        assert_eq!(req.records.len(), 3);
        assert_eq!(req.finished_batches, 1, "the second batch is not finished");
        assert_eq!(
            render(&q, &req, &cfg),
            Bytes::from_static(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n")
        );
        q.pop_front();
        let req = take_request(&mut q, &cfg);
        assert_eq!(req.records.len(), 1);
        assert_eq!(req.finished_batches, 1);
    }

    #[test]
    fn elasticsearch_bulk_uses_the_stable_id() {
        let mut cfg = HttpConfig::new(Uri::from_static("http://127.0.0.1:1/"));
        cfg.shape = BodyShape::ElasticsearchBulk {
            index: "logs".into(),
        };
        let mut q = queue(&[
            "{\"m\":\"x\",\"input\":{\"file\":\"/a\",\"offset\":5,\"id\":\"1-2-3:5\"}}\n{\"m\":\"y\"}\n",
        ]);
        let req = take_request(&mut q, &cfg);
        let body = String::from_utf8(render(&q, &req, &cfg).to_vec()).expect("utf8");
        assert_eq!(
            body,
            "{\"index\":{\"_index\":\"logs\",\"_id\":\"1-2-3:5\"}}\n{\"m\":\"x\",\"input\":{\"file\":\"/a\",\"offset\":5,\"id\":\"1-2-3:5\"}}\n{\"index\":{\"_index\":\"logs\"}}\n{\"m\":\"y\"}\n"
        );
    }

    #[test]
    fn bulk_answers_with_item_errors_fail_the_request() {
        let es = BodyShape::ElasticsearchBulk {
            index: "logs".into(),
        };
        assert!(bulk_item_failed(
            &es,
            br#"{"took":3,"errors":true,"items":[]}"#
        ));
        assert!(!bulk_item_failed(
            &es,
            br#"{"took":3,"errors":false,"items":[]}"#
        ));
        assert!(!bulk_item_failed(&BodyShape::Ndjson, br#"{"errors":true}"#));
    }

    #[test]
    fn loki_push_wraps_records_as_lines() {
        let mut cfg = HttpConfig::new(Uri::from_static("http://127.0.0.1:1/"));
        cfg.shape = BodyShape::Loki {
            labels: vec![("job".into(), "app".into())],
        };
        let mut q = queue(&["{\"m\":\"x\"}\n"]);
        let req = take_request(&mut q, &cfg);
        let body: serde_json::Value =
            serde_json::from_slice(&render(&q, &req, &cfg)).expect("JSON");
        assert_eq!(body["streams"][0]["stream"]["job"], "app");
        assert_eq!(body["streams"][0]["values"][0][1], "{\"m\":\"x\"}");
    }
}
