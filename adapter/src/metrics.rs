//! The adapter's counters, served as Prometheus text on the admin server's `/metrics`.
//!
//! Readers count into plain fields of their [`StreamCounts`] and publish them to the shared
//! atomics once per batch, so the per-line cost is a few additions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

type Labels = Vec<(&'static str, String)>;

/// Normalised levels, as the parsers write them.
pub const LEVELS: [&str; 10] = [
    "emergency",
    "alert",
    "critical",
    "fatal",
    "error",
    "warning",
    "notice",
    "info",
    "debug",
    "trace",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric the adapter exports.
pub struct Stats {
    registry: Registry,
    /// Whether records are inspected for their level and status (only when someone can read
    /// the figures: the admin server is on).
    pub detailed: bool,
    pub ready: AtomicBool,
    lines: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    levels: Family<Labels, Counter>,
    status: Family<Labels, Counter>,
    pub records_emitted: Counter,
    pub output_bytes: Counter,
    pub output_retries: Counter,
    pub output_failures: Family<Labels, Counter>,
    pub batches_in_flight: Gauge,
    pub checkpoint_lag: Gauge,
    pub breaker_open: Gauge,
    pub checkpoint_writes: Counter,
    pub files_watched: Gauge,
}

impl Stats {
    pub fn new(detailed: bool) -> Arc<Stats> {
        let mut registry = Registry::with_prefix("adapter");
        let lines = Family::<Labels, Counter>::default();
        registry.register("lines_read", "Lines read from an input", lines.clone());
        let bytes = Family::<Labels, Counter>::default();
        registry.register_with_unit(
            "read",
            "Bytes read from an input",
            Unit::Bytes,
            bytes.clone(),
        );
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "parse_failures",
            "Records emitted raw with a parse_error, by configured format",
            failures.clone(),
        );
        let levels = Family::<Labels, Counter>::default();
        registry.register(
            "records_by_level",
            "Records by normalised level (records without a level are not counted)",
            levels.clone(),
        );
        let status = Family::<Labels, Counter>::default();
        registry.register(
            "http_responses",
            "Access-log records by HTTP status class",
            status.clone(),
        );
        let records_emitted = Counter::default();
        registry.register(
            "records_emitted",
            "Records the output accepted",
            records_emitted.clone(),
        );
        let output_bytes = Counter::default();
        registry.register_with_unit(
            "output",
            "Record bytes the output accepted (before compression)",
            Unit::Bytes,
            output_bytes.clone(),
        );
        let output_retries = Counter::default();
        registry.register(
            "output_retries",
            "Deliveries the output tried again after a failure",
            output_retries.clone(),
        );
        let output_failures = Family::<Labels, Counter>::default();
        registry.register(
            "output_failures",
            "Failed delivery attempts, by reason",
            output_failures.clone(),
        );
        let batches_in_flight = Gauge::default();
        registry.register(
            "batches_in_flight",
            "Batches read but not yet accepted by the output",
            batches_in_flight.clone(),
        );
        let checkpoint_lag = Gauge::default();
        registry.register_with_unit(
            "checkpoint_lag",
            "Bytes of followed files not yet covered by a committed checkpoint",
            Unit::Bytes,
            checkpoint_lag.clone(),
        );
        let breaker_open = Gauge::default();
        registry.register(
            "output_breaker_open",
            "1 while the HTTP output's circuit breaker is open or half-open",
            breaker_open.clone(),
        );
        let checkpoint_writes = Counter::default();
        registry.register(
            "checkpoint_writes",
            "Checkpoint state files written",
            checkpoint_writes.clone(),
        );
        let files_watched = Gauge::default();
        registry.register(
            "files_watched",
            "Files being followed",
            files_watched.clone(),
        );
        Arc::new(Stats {
            registry,
            detailed,
            ready: AtomicBool::new(false),
            lines,
            bytes,
            failures,
            levels,
            status,
            records_emitted,
            output_bytes,
            output_retries,
            output_failures,
            batches_in_flight,
            checkpoint_lag,
            breaker_open,
            checkpoint_writes,
            files_watched,
        })
    }

    /// Counters for one input stream (`input` names it: `stdin`, `stdout`, `file`).
    pub fn stream(self: &Arc<Self>, input: &'static str, format: &str) -> StreamCounts {
        StreamCounts {
            stats: Arc::clone(self),
            lines: self
                .lines
                .get_or_create(&vec![("input", input.to_owned())])
                .clone(),
            bytes: self
                .bytes
                .get_or_create(&vec![("input", input.to_owned())])
                .clone(),
            failures: self
                .failures
                .get_or_create(&vec![("format", format.to_owned())])
                .clone(),
            level_key: memchr::memmem::Finder::new(b"\"level\":\""),
            status_key: memchr::memmem::Finder::new(b"\"status\":"),
            pending_lines: 0,
            pending_bytes: 0,
            pending_failures: 0,
            level_counts: [0; LEVELS.len()],
            status_counts: [0; STATUS_CLASSES.len()],
        }
    }

    pub fn batch_queued(&self) {
        self.batches_in_flight.inc();
    }

    pub fn batch_delivered(&self, batches: usize, records: u64, bytes: u64) {
        self.batches_in_flight
            .dec_by(i64::try_from(batches).unwrap_or(i64::MAX));
        self.records_emitted.inc_by(records);
        self.output_bytes.inc_by(bytes);
    }

    pub fn output_failure(&self, reason: &str) {
        self.output_failures
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Per-stream counts, published to [`Stats`] in bulk.
pub struct StreamCounts {
    stats: Arc<Stats>,
    lines: Counter,
    bytes: Counter,
    failures: Counter,
    /// Built once: constructing a searcher per record would cost more than the search.
    level_key: memchr::memmem::Finder<'static>,
    status_key: memchr::memmem::Finder<'static>,
    pending_lines: u64,
    pending_bytes: u64,
    pending_failures: u64,
    level_counts: [u64; LEVELS.len()],
    status_counts: [u64; STATUS_CLASSES.len()],
}

impl StreamCounts {
    pub fn line(&mut self, bytes: u64) {
        self.pending_lines += 1;
        self.pending_bytes += bytes;
    }

    pub fn parse_failure(&mut self) {
        self.pending_failures += 1;
    }

    /// Looks at a written record for its level and HTTP status when detailed metrics are on.
    pub fn record(&mut self, json: &[u8]) {
        if !self.stats.detailed {
            return;
        }
        if let Some(at) = self.level_key.find(json) {
            let rest = &json[at + 9..];
            if let Some(i) = LEVELS
                .iter()
                .position(|l| rest.starts_with(l.as_bytes()) && rest.get(l.len()) == Some(&b'"'))
            {
                self.level_counts[i] += 1;
            }
        }
        if let Some(at) = self.status_key.find(json) {
            let rest = &json[at + 9..];
            if let (Some(d @ b'1'..=b'5'), Some(b'0'..=b'9'), Some(b'0'..=b'9')) =
                (rest.first(), rest.get(1), rest.get(2))
                && !rest.get(3).is_some_and(u8::is_ascii_digit)
            {
                self.status_counts[usize::from(d - b'1')] += 1;
            }
        }
    }

    /// Adds what was counted since the last call to the shared metrics.
    pub fn publish(&mut self) {
        self.lines.inc_by(std::mem::take(&mut self.pending_lines));
        self.bytes.inc_by(std::mem::take(&mut self.pending_bytes));
        self.failures
            .inc_by(std::mem::take(&mut self.pending_failures));
        if self.stats.detailed {
            for (i, n) in self.level_counts.iter_mut().enumerate() {
                if *n > 0 {
                    self.stats
                        .levels
                        .get_or_create(&vec![("level", LEVELS[i].to_owned())])
                        .inc_by(std::mem::take(n));
                }
            }
            for (i, n) in self.status_counts.iter_mut().enumerate() {
                if *n > 0 {
                    self.stats
                        .status
                        .get_or_create(&vec![("class", STATUS_CLASSES[i].to_owned())])
                        .inc_by(std::mem::take(n));
                }
            }
        }
    }
}

impl Drop for StreamCounts {
    fn drop(&mut self) {
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_status_classes_are_counted_from_records() {
        let stats = Stats::new(true);
        let mut counts = stats.stream("stdin", "auto");
        counts.line(10);
        counts.record(br#"{"level":"error","status":503}"#);
        counts.record(br#"{"level":"errors","status":2000}"#);
        counts.parse_failure();
        counts.publish();
        let text = stats.encode();
        assert!(
            text.contains("adapter_records_by_level_total{level=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("adapter_http_responses_total{class=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("adapter_parse_failures_total{format=\"auto\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("adapter_lines_read_total{input=\"stdin\"} 1"),
            "{text}"
        );
        assert!(!text.contains("2xx"));
    }
}
