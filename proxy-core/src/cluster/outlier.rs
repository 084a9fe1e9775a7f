//! Outlier detection: passive health from the outcomes of real requests.
//!
//! Every attempt reports its outcome to the endpoint's [`OutlierState`] (a few relaxed
//! atomics); crossing a consecutive-failure threshold ejects the endpoint on the spot, so a
//! dead replica stops receiving traffic after a handful of failures instead of after the next
//! review. The periodic review (`interval`) returns endpoints whose ejection time is over,
//! lowers the ejection multiplier of endpoints that stayed in, and runs the success-rate
//! analysis. Load balancing only reads one atomic per candidate (`is_ejected`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use super::Endpoint;
use crate::config;
use crate::error::ProxyError;
use crate::telemetry::metrics::Metrics;

/// Why an endpoint was ejected; also the `reason` label of the ejection counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EjectReason {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
    ConsecutiveLocalOriginFailure,
    SuccessRate,
}

impl EjectReason {
    pub const ALL: [EjectReason; 4] = [
        EjectReason::Consecutive5xx,
        EjectReason::ConsecutiveGatewayFailure,
        EjectReason::ConsecutiveLocalOriginFailure,
        EjectReason::SuccessRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::Consecutive5xx => "consecutive_5xx",
            EjectReason::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            EjectReason::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            EjectReason::SuccessRate => "success_rate",
        }
    }
}

/// How one attempt at an endpoint ended, as outlier detection counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Response(u16),
    /// No answer: connect failure, reset, refused stream, timeout.
    LocalFailure,
}

impl Outcome {
    /// The outcome of a failed attempt; `None` when the failure says nothing about the
    /// endpoint (an overflow, a bad request).
    pub fn of_error(e: &ProxyError) -> Option<Outcome> {
        match e {
            ProxyError::Protocol(_) => Some(Outcome::Response(502)),
            ProxyError::Timeout(_) => Some(Outcome::LocalFailure),
            e => e.upstream_failure().map(|_| Outcome::LocalFailure),
        }
    }
}

/// An endpoint's outlier counters and ejection.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Milliseconds since the detector's epoch until which the endpoint is out; 0 when in.
    ejected_until: AtomicU64,
    /// The ejection-time multiplier: ejections not yet worked off by intervals spent in.
    multiplier: AtomicU32,
    ejections_total: AtomicU64,
    interval_requests: AtomicU64,
    interval_failures: AtomicU64,
}

impl OutlierState {
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    /// Failures in a row now (5xx responses and local-origin failures).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_5xx
            .load(Ordering::Relaxed)
            .max(self.consecutive_local.load(Ordering::Relaxed))
    }

    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU32) -> u32 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn clear(counter: &AtomicU32) {
        // Read first: a success is the common case, and most counters are already zero.
        if counter.load(Ordering::Relaxed) != 0 {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// A cluster's outlier detection: thresholds, clock, metric handles.
#[derive(Debug)]
pub struct OutlierDetector {
    cfg: config::OutlierDetection,
    epoch: Instant,
    cluster: Arc<str>,
    ejections: [Counter; 4],
    returns: Counter,
    ejected: Gauge,
}

impl OutlierDetector {
    pub fn new(cfg: &config::OutlierDetection, cluster: &str, metrics: &Metrics) -> Self {
        let (ejections, returns, ejected) =
            metrics.outlier(cluster, EjectReason::ALL.map(EjectReason::as_str));
        // A rebuilt cluster starts with fresh endpoints, none of them out.
        ejected.set(0);
        OutlierDetector {
            cfg: cfg.clone(),
            epoch: Instant::now(),
            cluster: cluster.into(),
            ejections,
            returns,
            ejected,
        }
    }

    pub fn interval(&self) -> Duration {
        self.cfg.interval.get()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// When an ejected endpoint comes back, as wall-clock time (for `/clusters`).
    pub fn ejected_until(&self, s: &OutlierState) -> Option<SystemTime> {
        let until = s.ejected_until.load(Ordering::Relaxed);
        (until != 0)
            .then(|| SystemTime::now() + Duration::from_millis(until.saturating_sub(self.now_ms())))
    }

    /// Count one attempt's outcome; eject when it crosses a threshold.
    pub fn record(&self, ep: &Endpoint, all: &[Arc<Endpoint>], outcome: Outcome) {
        let s = &ep.outlier;
        let c = &self.cfg;
        if c.success_rate_minimum_hosts > 0 {
            s.interval_requests.fetch_add(1, Ordering::Relaxed);
        }
        let crossed = |n: u32, threshold: u32| threshold > 0 && n >= threshold;
        let reason = match outcome {
            Outcome::Response(code) if code < 500 => {
                OutlierState::clear(&s.consecutive_5xx);
                OutlierState::clear(&s.consecutive_gateway);
                OutlierState::clear(&s.consecutive_local);
                return;
            }
            Outcome::Response(code) => {
                s.interval_failures.fetch_add(1, Ordering::Relaxed);
                OutlierState::clear(&s.consecutive_local);
                let gateway = if matches!(code, 502..=504) {
                    OutlierState::bump(&s.consecutive_gateway)
                } else {
                    OutlierState::clear(&s.consecutive_gateway);
                    0
                };
                let any = OutlierState::bump(&s.consecutive_5xx);
                if crossed(gateway, c.consecutive_gateway_failure) {
                    EjectReason::ConsecutiveGatewayFailure
                } else if crossed(any, c.consecutive_5xx) {
                    EjectReason::Consecutive5xx
                } else {
                    return;
                }
            }
            // No answer at all is also a gateway failure and a 5xx, as the client sees it.
            Outcome::LocalFailure => {
                s.interval_failures.fetch_add(1, Ordering::Relaxed);
                let local = OutlierState::bump(&s.consecutive_local);
                let gateway = OutlierState::bump(&s.consecutive_gateway);
                let any = OutlierState::bump(&s.consecutive_5xx);
                if crossed(local, c.consecutive_local_origin_failure) {
                    EjectReason::ConsecutiveLocalOriginFailure
                } else if crossed(gateway, c.consecutive_gateway_failure) {
                    EjectReason::ConsecutiveGatewayFailure
                } else if crossed(any, c.consecutive_5xx) {
                    EjectReason::Consecutive5xx
                } else {
                    return;
                }
            }
        };
        self.eject(ep, all, reason);
    }

    /// Take `ep` out for base × multiplier (capped), unless it is out already or the
    /// ejection cap is reached.
    fn eject(&self, ep: &Endpoint, all: &[Arc<Endpoint>], reason: EjectReason) {
        let s = &ep.outlier;
        if s.is_ejected() {
            return;
        }
        let out = all.iter().filter(|e| e.outlier.is_ejected()).count();
        let cap = (all.len() * self.cfg.max_ejection_percent as usize / 100).max(1);
        if out + 1 > cap {
            tracing::debug!(cluster = %self.cluster, endpoint = %ep.addr, reason = reason.as_str(), "not ejected: max_ejection_percent reached");
            return;
        }
        let times = s.multiplier.load(Ordering::Relaxed) + 1;
        let time = self
            .cfg
            .base_ejection_time
            .get()
            .saturating_mul(times)
            .min(self.cfg.max_ejection_time.get());
        let until = self.now_ms() + (time.as_millis() as u64).max(1);
        if s.ejected_until
            .compare_exchange(0, until, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        s.multiplier.store(times, Ordering::Relaxed);
        s.ejections_total.fetch_add(1, Ordering::Relaxed);
        self.ejections[EjectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0)]
        .inc();
        self.ejected.inc();
        tracing::warn!(cluster = %self.cluster, endpoint = %ep.addr, reason = reason.as_str(), ejection_time = ?time, ejections = times, "endpoint ejected");
    }

    /// The periodic review: return endpoints whose time is over, work off the multiplier of
    /// those that stayed in, and eject by success rate.
    pub fn review(&self, all: &[Arc<Endpoint>]) {
        let now = self.now_ms();
        for ep in all {
            let s = &ep.outlier;
            let until = s.ejected_until.load(Ordering::Acquire);
            if until != 0 && until <= now {
                s.ejected_until.store(0, Ordering::Release);
                // A returning endpoint starts with a clean slate, or one more failure would
                // eject it again at once.
                OutlierState::clear(&s.consecutive_5xx);
                OutlierState::clear(&s.consecutive_gateway);
                OutlierState::clear(&s.consecutive_local);
                self.returns.inc();
                tracing::info!(cluster = %self.cluster, endpoint = %ep.addr, "endpoint returned after ejection");
            } else if until == 0 && s.multiplier.load(Ordering::Relaxed) > 0 {
                s.multiplier.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.success_rate(all);
        let out = all.iter().filter(|e| e.outlier.is_ejected()).count();
        self.ejected.set(out as i64);
    }

    fn success_rate(&self, all: &[Arc<Endpoint>]) {
        let c = &self.cfg;
        if c.success_rate_minimum_hosts == 0 {
            return;
        }
        let rates: Vec<(&Arc<Endpoint>, f64)> = all
            .iter()
            .filter_map(|ep| {
                let s = &ep.outlier;
                let requests = s.interval_requests.swap(0, Ordering::Relaxed);
                let failures = s.interval_failures.swap(0, Ordering::Relaxed);
                (requests >= u64::from(c.success_rate_request_volume) && !s.is_ejected())
                    .then(|| (ep, 1.0 - failures.min(requests) as f64 / requests as f64))
            })
            .collect();
        if rates.len() < c.success_rate_minimum_hosts as usize {
            return;
        }
        let n = rates.len() as f64;
        let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
        let var = rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
        let threshold = mean - var.sqrt() * f64::from(c.success_rate_stdev_factor) / 1000.0;
        for (ep, rate) in &rates {
            if *rate < threshold {
                self.eject(ep, all, EjectReason::SuccessRate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(yaml: &str, n: u16) -> (OutlierDetector, Vec<Arc<Endpoint>>) {
        let cfg: config::OutlierDetection = serde_norway::from_str(yaml).unwrap();
        let cluster: config::Cluster =
            serde_norway::from_str("{name: c, endpoints: [\"127.0.0.1:1\"]}").unwrap();
        let eps = (1..=n)
            .map(|p| Arc::new(Endpoint::new(([127, 0, 0, 1], p).into(), 1, &cluster)))
            .collect();
        (OutlierDetector::new(&cfg, "c", &Metrics::new("t")), eps)
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let (d, eps) = setup(
            "{consecutive_5xx: 3, consecutive_local_origin_failure: 0}",
            3,
        );
        let ep = &eps[0];
        d.record(ep, &eps, Outcome::Response(500));
        d.record(ep, &eps, Outcome::Response(503));
        d.record(ep, &eps, Outcome::Response(200));
        d.record(ep, &eps, Outcome::Response(500));
        d.record(ep, &eps, Outcome::Response(500));
        assert!(!ep.outlier.is_ejected(), "the success broke the run");
        d.record(ep, &eps, Outcome::LocalFailure);
        assert!(ep.outlier.is_ejected(), "local failures count as 5xx too");
        assert_eq!(ep.outlier.ejections_total(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_each_ejection_and_shrinks_while_in() {
        let (d, eps) = setup(
            "{consecutive_local_origin_failure: 1, interval: 1s, base_ejection_time: 10s, max_ejection_time: 25s}",
            2,
        );
        let ep = &eps[0];
        let out_for = async |d: &OutlierDetector| {
            let start = Instant::now();
            while ep.outlier.is_ejected() {
                tokio::time::advance(Duration::from_secs(1)).await;
                d.review(&eps);
            }
            start.elapsed()
        };
        d.record(ep, &eps, Outcome::LocalFailure);
        assert_eq!(out_for(&d).await, Duration::from_secs(10));
        d.record(ep, &eps, Outcome::LocalFailure);
        assert_eq!(out_for(&d).await, Duration::from_secs(20), "second: twice");
        d.record(ep, &eps, Outcome::LocalFailure);
        assert_eq!(out_for(&d).await, Duration::from_secs(25), "capped");
        // Three intervals in work off three ejections.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(1)).await;
            d.review(&eps);
        }
        d.record(ep, &eps, Outcome::LocalFailure);
        assert_eq!(out_for(&d).await, Duration::from_secs(10), "back to base");
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_keeps_some_endpoints_in_but_always_allows_one() {
        let (d, eps) = setup(
            "{consecutive_local_origin_failure: 1, max_ejection_percent: 10}",
            3,
        );
        for ep in &eps {
            d.record(ep, &eps, Outcome::LocalFailure);
        }
        let out = eps.iter().filter(|e| e.outlier.is_ejected()).count();
        assert_eq!(out, 1, "10% of 3 rounds to none, but one may always go");
    }

    #[tokio::test(start_paused = true)]
    async fn success_rate_ejects_the_endpoint_far_below_its_peers() {
        let (d, eps) = setup(
            "{consecutive_5xx: 0, consecutive_local_origin_failure: 0, success_rate_minimum_hosts: 5, success_rate_request_volume: 50, success_rate_stdev_factor: 1000}",
            6,
        );
        for (i, ep) in eps.iter().enumerate() {
            for k in 0..100 {
                let fails = if i == 0 { k % 2 == 0 } else { k % 50 == 0 };
                let outcome = if fails {
                    Outcome::Response(500)
                } else {
                    Outcome::Response(200)
                };
                d.record(ep, &eps, outcome);
            }
        }
        d.review(&eps);
        let out: Vec<bool> = eps.iter().map(|e| e.outlier.is_ejected()).collect();
        assert_eq!(out, [true, false, false, false, false, false]);
    }
}
