//! The resilience part of the document and its checks: a route's `retry_policy`; a cluster's
//! `retry_budget`, `circuit_breakers`, `outlier_detection`, `error_rate_breaker` and
//! `health_checks`. Names are Envoy's where Envoy has one; the budget is Linkerd's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;
use super::model::HeaderMatch;
use super::units::{Dur, Size};
use super::validate::header_match;

/// When and how a route retries a failed attempt.
///
/// Only idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are retried unless
/// `retry_non_idempotent` is set; a request body larger than `per_request_buffer_limit` is
/// streamed once and never retried. Every retry also needs the cluster's `retry_budget` to
/// allow it, so retries cannot multiply an outage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `num_retries + 1` attempts).
    #[serde(default = "default_num_retries")]
    pub num_retries: u32,
    /// Which failures are retried. Default: `connect-failure`, `refused-stream`, `reset`:
    /// the failures where no response came back at all.
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<RetryOn>,
    /// With `retriable-status-codes`: the response statuses that are retried (e.g. 429).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
    /// With `retriable-headers`: a response matching any of these is retried even when its
    /// status looks successful, so an application can ask for a retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_headers: Vec<HeaderMatch>,
    /// Deadline of each attempt for its response headers; the route `timeout` still bounds
    /// all attempts together. Unset: each attempt may use what remains of the route timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Dur>,
    /// The pause before each retry: exponential with full jitter.
    #[serde(default)]
    pub retry_back_off: RetryBackOff,
    /// A `Retry-After` (seconds or HTTP-date) on a retried 429 or 503 replaces the back-off
    /// when it is at most this long; a longer one is not waited for: the response goes to the
    /// client as it is.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after: Dur,
    /// Retry POST, PATCH and other non-idempotent methods too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_non_idempotent: bool,
    /// Request bodies up to this size are buffered so they can be sent again.
    #[serde(default = "default_buffer_limit")]
    pub per_request_buffer_limit: Size,
}

fn default_num_retries() -> u32 {
    2
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![
        RetryOn::ConnectFailure,
        RetryOn::RefusedStream,
        RetryOn::Reset,
    ]
}
fn default_max_retry_after() -> Dur {
    Dur::secs(5)
}
fn default_buffer_limit() -> Size {
    Size::kib(64)
}

/// A retry condition, as Envoy's `retry_on` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Any 5xx response, a connect failure, a reset, a refused stream or a per-try timeout.
    #[serde(rename = "5xx")]
    FiveXx,
    /// 502, 503 or 504, a connect failure, a reset, a refused stream or a per-try timeout.
    GatewayError,
    /// The connection to the upstream could not be made (refused, timed out).
    ConnectFailure,
    /// The upstream closed or reset the connection before the response headers.
    Reset,
    /// A response status listed in `retriable_status_codes`.
    RetriableStatusCodes,
    /// A response matching `retriable_headers`.
    RetriableHeaders,
    /// An HTTP/2 upstream refused the stream (`REFUSED_STREAM`): it did not process it.
    RefusedStream,
}

impl RetryOn {
    pub const ALL: [RetryOn; 7] = [
        RetryOn::FiveXx,
        RetryOn::GatewayError,
        RetryOn::ConnectFailure,
        RetryOn::Reset,
        RetryOn::RetriableStatusCodes,
        RetryOn::RetriableHeaders,
        RetryOn::RefusedStream,
    ];

    /// The name as written in config, also the `reason` label of the retry metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::FiveXx => "5xx",
            RetryOn::GatewayError => "gateway-error",
            RetryOn::ConnectFailure => "connect-failure",
            RetryOn::Reset => "reset",
            RetryOn::RetriableStatusCodes => "retriable-status-codes",
            RetryOn::RetriableHeaders => "retriable-headers",
            RetryOn::RefusedStream => "refused-stream",
        }
    }

    /// Position in [`RetryOn::ALL`], for per-reason counters and bit sets.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBackOff {
    /// The first retry waits a random time up to this; each next one up to twice as long.
    pub base_interval: Dur,
    /// The cap of the doubling. Unset: ten times `base_interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<Dur>,
}

impl Default for RetryBackOff {
    fn default() -> Self {
        RetryBackOff {
            base_interval: Dur::millis(25),
            max_interval: None,
        }
    }
}

impl RetryBackOff {
    pub fn max(&self) -> std::time::Duration {
        self.max_interval
            .map_or(self.base_interval.get().saturating_mul(10), Dur::get)
    }
}

/// How many retries a cluster may take on, relative to its recent requests (Linkerd's retry
/// budget). Over the last `ttl`, retries may be at most `budget_percent` of the requests that
/// could be retried, plus `min_retries_per_second` so that a quiet service can still retry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudget {
    pub budget_percent: f64,
    pub min_retries_per_second: u32,
    /// The window the budget counts over.
    pub ttl: Dur,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            budget_percent: 20.0,
            min_retries_per_second: 10,
            ttl: Dur::secs(10),
        }
    }
}

/// Per-cluster limits on concurrent work. Over a limit, a request is answered at once with
/// 503 and reason `overflow`: nothing waits in an unbounded queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakers {
    /// Upstream connections open at once, over all endpoints.
    pub max_connections: u32,
    /// Requests waiting for a new upstream connection at once.
    pub max_pending_requests: u32,
    /// Requests in flight at once (from start until the response body ends).
    pub max_requests: u32,
    /// Retry attempts in flight at once.
    pub max_retries: u32,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Passive health: endpoints that fail in a row, or far more often than their peers, are
/// taken out of load balancing for a while (Envoy's names and, mostly, defaults).
///
/// An endpoint is ejected for `base_ejection_time` times the number of times it has been
/// ejected (capped at `max_ejection_time`); each `interval` it spends back in the set lowers
/// that count again. Never more than `max_ejection_percent` of the endpoints are out at
/// once, though always at least one may be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetection {
    /// 5xx responses (and local-origin failures) in a row that eject; 0 turns it off.
    pub consecutive_5xx: u32,
    /// 502, 503, 504 responses (and local-origin failures) in a row that eject; 0: off.
    pub consecutive_gateway_failure: u32,
    /// Connect failures, resets and per-try timeouts in a row that eject; 0: off.
    pub consecutive_local_origin_failure: u32,
    /// How often ejections are reviewed (returns, success-rate analysis).
    pub interval: Dur,
    pub base_ejection_time: Dur,
    pub max_ejection_time: Dur,
    pub max_ejection_percent: u32,
    /// Success-rate ejection runs when at least this many endpoints had
    /// `success_rate_request_volume` requests in the last interval; 0 turns it off.
    pub success_rate_minimum_hosts: u32,
    pub success_rate_request_volume: u32,
    /// An endpoint is ejected when its success rate is below the mean minus this many
    /// thousandths of the standard deviation (1900: 1.9 standard deviations).
    pub success_rate_stdev_factor: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 0,
            consecutive_local_origin_failure: 5,
            interval: Dur::secs(10),
            base_ejection_time: Dur::secs(30),
            max_ejection_time: Dur::secs(300),
            max_ejection_percent: 50,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
        }
    }
}

/// A cluster-wide breaker on the failure rate seen by callers (the closed → open →
/// half-open state machine of Hystrix and resilience4j). It protects callers of a
/// dependency that fails as a whole, such as one external API, where ejecting single
/// endpoints cannot help: while open, requests are answered at once with 503
/// `circuit_open` and a `Retry-After`, instead of waiting on a service that is down.
///
/// A request counts as failed when its final answer (after any retries) is a 5xx or no
/// answer at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateBreaker {
    /// Open when at least this percentage of the requests in the window failed ...
    pub failure_rate_threshold: f64,
    /// ... and the window holds at least this many requests.
    pub minimum_requests: u32,
    /// The sliding window the failure rate is measured over.
    pub window: Dur,
    /// How long the breaker stays open before letting probes through (half-open).
    pub open_duration: Dur,
    /// Probe requests let through when half-open; all must succeed to close the breaker,
    /// one failure opens it again.
    pub half_open_requests: u32,
}

impl Default for ErrorRateBreaker {
    fn default() -> Self {
        ErrorRateBreaker {
            failure_rate_threshold: 50.0,
            minimum_requests: 20,
            window: Dur::secs(10),
            open_duration: Dur::secs(5),
            half_open_requests: 3,
        }
    }
}

/// Active health checking: each endpoint is probed every `interval`; `unhealthy_threshold`
/// failures in a row take it out of load balancing, `healthy_threshold` successes in a row
/// bring it back. Endpoints start healthy, so a new cluster takes traffic at once.
/// Without `http_health_check` the check is a TCP connect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthChecks {
    pub interval: Dur,
    /// Deadline of one check (connect and, for HTTP, the response headers).
    pub timeout: Dur,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_health_check: Option<HttpHealthCheck>,
}

impl Default for HealthChecks {
    fn default() -> Self {
        HealthChecks {
            interval: Dur::secs(5),
            timeout: Dur::secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            http_health_check: None,
        }
    }
}

/// A `GET path` (in the cluster's protocol, HTTP/1.1 or h2c) whose status must be one of
/// `expected_statuses`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHealthCheck {
    pub path: String,
    /// Statuses that count as healthy; empty means any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u16>,
}

// Checks, each reporting every problem at its path (called from `validate`).

pub(super) fn retry_policy(p: &mut Problems, path: &str, r: &RetryPolicy, route_timeout: Duration) {
    if r.num_retries > 10 {
        p.at(format!("{path}.num_retries"), "at most 10");
    }
    if r.retry_on.is_empty() {
        p.at(format!("{path}.retry_on"), "name at least one condition");
    }
    let codes = r.retry_on.contains(&RetryOn::RetriableStatusCodes);
    if codes && r.retriable_status_codes.is_empty() {
        p.at(
            format!("{path}.retriable_status_codes"),
            "retry_on retriable-status-codes needs at least one status code",
        );
    }
    if !codes && !r.retriable_status_codes.is_empty() {
        p.at(
            format!("{path}.retriable_status_codes"),
            "only used when retry_on names retriable-status-codes",
        );
    }
    for (k, c) in r.retriable_status_codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            p.at(
                format!("{path}.retriable_status_codes[{k}]"),
                format!("{c} is not an HTTP status (100 to 599)"),
            );
        }
    }
    let headers = r.retry_on.contains(&RetryOn::RetriableHeaders);
    if headers && r.retriable_headers.is_empty() {
        p.at(
            format!("{path}.retriable_headers"),
            "retry_on retriable-headers needs at least one header match",
        );
    }
    if !headers && !r.retriable_headers.is_empty() {
        p.at(
            format!("{path}.retriable_headers"),
            "only used when retry_on names retriable-headers",
        );
    }
    for (k, h) in r.retriable_headers.iter().enumerate() {
        header_match(p, &format!("{path}.retriable_headers[{k}]"), h);
    }
    if let Some(t) = r.per_try_timeout {
        if t.get().is_zero() {
            p.at(format!("{path}.per_try_timeout"), "must be more than 0");
        } else if t.get() > route_timeout {
            p.at(
                format!("{path}.per_try_timeout"),
                format!(
                    "{t} is longer than the route timeout ({route_timeout:?}); it would never fire"
                ),
            );
        }
    }
    let b = &r.retry_back_off;
    if b.base_interval.get() < Duration::from_millis(1) {
        p.at(
            format!("{path}.retry_back_off.base_interval"),
            "must be at least 1ms",
        );
    }
    if let Some(max) = b.max_interval
        && max < b.base_interval
    {
        p.at(
            format!("{path}.retry_back_off.max_interval"),
            "must not be shorter than base_interval",
        );
    }
    if r.per_request_buffer_limit.bytes() > 16 * 1024 * 1024 {
        p.at(
            format!("{path}.per_request_buffer_limit"),
            "at most 16MiB: every retried request holds its body in memory",
        );
    }
}

pub(super) fn retry_budget(p: &mut Problems, path: &str, b: &RetryBudget) {
    if !(0.0..=100.0).contains(&b.budget_percent) {
        p.at(
            format!("{path}.budget_percent"),
            "must be between 0 and 100",
        );
    }
    if b.ttl.get() < Duration::from_secs(1) || b.ttl.get() > Duration::from_secs(60) {
        p.at(format!("{path}.ttl"), "must be between 1s and 60s");
    }
}

pub(super) fn circuit_breakers(p: &mut Problems, path: &str, cb: &CircuitBreakers) {
    for (field, v) in [
        ("max_connections", cb.max_connections),
        ("max_pending_requests", cb.max_pending_requests),
        ("max_requests", cb.max_requests),
    ] {
        if v == 0 {
            p.at(format!("{path}.{field}"), "must be at least 1");
        }
    }
}

pub(super) fn outlier_detection(p: &mut Problems, path: &str, od: &OutlierDetection) {
    if od.interval.get() < Duration::from_millis(100) {
        p.at(format!("{path}.interval"), "must be at least 100ms");
    }
    if od.base_ejection_time.get() < Duration::from_millis(100) {
        p.at(
            format!("{path}.base_ejection_time"),
            "must be at least 100ms",
        );
    }
    if od.max_ejection_time < od.base_ejection_time {
        p.at(
            format!("{path}.max_ejection_time"),
            "must not be shorter than base_ejection_time",
        );
    }
    if od.max_ejection_percent > 100 {
        p.at(format!("{path}.max_ejection_percent"), "at most 100");
    }
    if od.success_rate_minimum_hosts > 0 && od.success_rate_request_volume == 0 {
        p.at(
            format!("{path}.success_rate_request_volume"),
            "must be at least 1 when success_rate_minimum_hosts is set",
        );
    }
}

pub(super) fn error_rate_breaker(p: &mut Problems, path: &str, b: &ErrorRateBreaker) {
    if !(b.failure_rate_threshold > 0.0 && b.failure_rate_threshold <= 100.0) {
        p.at(
            format!("{path}.failure_rate_threshold"),
            "must be more than 0 and at most 100",
        );
    }
    if b.minimum_requests == 0 {
        p.at(format!("{path}.minimum_requests"), "must be at least 1");
    }
    if b.window.get() < Duration::from_secs(1) || b.window.get() > Duration::from_secs(600) {
        p.at(format!("{path}.window"), "must be between 1s and 10m");
    }
    if b.open_duration.get() < Duration::from_millis(100) {
        p.at(format!("{path}.open_duration"), "must be at least 100ms");
    }
    if b.half_open_requests == 0 {
        p.at(format!("{path}.half_open_requests"), "must be at least 1");
    }
}

pub(super) fn health_checks(p: &mut Problems, path: &str, hc: &HealthChecks) {
    if hc.interval.get() < Duration::from_millis(100) {
        p.at(format!("{path}.interval"), "must be at least 100ms");
    }
    if hc.timeout.get().is_zero() {
        p.at(format!("{path}.timeout"), "must be more than 0");
    } else if hc.timeout > hc.interval {
        p.at(
            format!("{path}.timeout"),
            "must not be longer than interval",
        );
    }
    for (field, v) in [
        ("healthy_threshold", hc.healthy_threshold),
        ("unhealthy_threshold", hc.unhealthy_threshold),
    ] {
        if v == 0 {
            p.at(format!("{path}.{field}"), "must be at least 1");
        }
    }
    if let Some(h) = &hc.http_health_check {
        if !h.path.starts_with('/') || http::uri::PathAndQuery::try_from(h.path.as_str()).is_err() {
            p.at(
                format!("{path}.http_health_check.path"),
                format!("{:?} is not a request path starting with '/'", h.path),
            );
        }
        for (k, c) in h.expected_statuses.iter().enumerate() {
            if !(100..=599).contains(c) {
                p.at(
                    format!("{path}.http_health_check.expected_statuses[{k}]"),
                    format!("{c} is not an HTTP status (100 to 599)"),
                );
            }
        }
    }
}
