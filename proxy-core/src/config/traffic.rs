//! Per-route traffic management: fault injection, request mirroring, sticky canary splits
//! and rate limits (the `fault`, `request_mirror_policies`, `hash_policy` and `rate_limits`
//! fields of a route; the rate limit rules themselves are in `ratelimit`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Problems;
use super::model::{HashPolicy, Route};
use super::units::{Dur, Size};

/// Faults injected into a share of a route's requests, for testing how callers cope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// Hold a share of requests this long before they are forwarded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    pub fixed_delay: Dur,
    /// Share of requests delayed, in percent (0 to 100).
    #[serde(default = "hundred")]
    pub percentage: f64,
}

/// Answer a share of requests with this status instead of forwarding them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    pub http_status: u16,
    /// Share of requests aborted, in percent (0 to 100).
    #[serde(default = "hundred")]
    pub percentage: f64,
}

fn hundred() -> f64 {
    100.0
}

/// Send a copy of a share of the route's requests to another cluster, fire and forget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorPolicy {
    pub cluster: String,
    /// Share of requests mirrored, in percent (0 to 100).
    #[serde(default = "hundred")]
    pub percentage: f64,
    /// Requests with a larger body (or one of unknown length) are not mirrored; smaller
    /// bodies are read whole before the request goes on, so both copies carry it.
    #[serde(default = "default_mirror_body")]
    pub max_body: Size,
    /// Mirrored requests in flight at most; past it, mirroring is skipped (a slow shadow
    /// cluster must not pile up work in the proxy).
    #[serde(default = "default_mirror_in_flight")]
    pub max_in_flight: usize,
    /// Time allowed for a mirrored request to be answered.
    #[serde(default = "default_mirror_timeout")]
    pub timeout: Dur,
}

fn default_mirror_body() -> Size {
    Size::kib(64)
}
fn default_mirror_in_flight() -> usize {
    128
}
fn default_mirror_timeout() -> Dur {
    Dur::secs(5)
}

fn check_percentage(p: &mut Problems, path: String, v: f64) {
    if !(0.0..=100.0).contains(&v) || v.is_nan() {
        p.at(path, format!("{v} is not a percentage between 0 and 100"));
    }
}

pub(super) fn validate_route(
    p: &mut Problems,
    path: &str,
    r: &Route,
    clusters: &HashSet<&str>,
    hash_policy: Option<&HashPolicy>,
) {
    let mut names = HashSet::new();
    for (i, rl) in r.rate_limits.iter().enumerate() {
        let rp = format!("{path}.rate_limits[{i}]");
        super::ratelimit::validate_rule(p, &rp, rl);
        if !names.insert(rl.name.as_str()) {
            p.at(
                format!("{rp}.name"),
                format!("duplicate rule name {:?}", rl.name),
            );
        }
    }
    if let Some(f) = &r.fault {
        if let Some(d) = &f.delay {
            check_percentage(p, format!("{path}.fault.delay.percentage"), d.percentage);
        }
        if let Some(a) = &f.abort {
            check_percentage(p, format!("{path}.fault.abort.percentage"), a.percentage);
            if !(200..=599).contains(&a.http_status) {
                p.at(
                    format!("{path}.fault.abort.http_status"),
                    format!("{} is not an HTTP status from 200 to 599", a.http_status),
                );
            }
        }
        if f.delay.is_none() && f.abort.is_none() {
            p.at(format!("{path}.fault"), "set delay, abort, or both");
        }
    }
    for (i, m) in r.request_mirror_policies.iter().enumerate() {
        let mp = format!("{path}.request_mirror_policies[{i}]");
        if !clusters.contains(m.cluster.as_str()) {
            p.at(
                format!("{mp}.cluster"),
                format!("unknown cluster {:?}", m.cluster),
            );
        }
        check_percentage(p, format!("{mp}.percentage"), m.percentage);
        if m.max_in_flight == 0 {
            p.at(format!("{mp}.max_in_flight"), "must be at least 1");
        }
        if m.timeout.get().is_zero() {
            p.at(format!("{mp}.timeout"), "must be more than 0");
        }
    }
    if let Some(h) = hash_policy {
        if r.weighted_clusters.is_empty() {
            p.at(
                format!("{path}.hash_policy"),
                "only applies to weighted_clusters (it keeps a client on one of them)",
            );
        }
        if http::HeaderName::from_bytes(h.header.as_bytes()).is_err() {
            p.at(
                format!("{path}.hash_policy.header"),
                format!("{:?} is not a valid header name", h.header),
            );
        }
    }
}
