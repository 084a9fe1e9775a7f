//! A cluster's `circuit_breakers` thresholds: bounded counts of connections, requests waiting
//! for a connection, requests and retries in flight. Over a limit, the request is refused at
//! once (503 `overflow`) rather than queued.
//!
//! Each limit *is* its `sidecar_circuit_breaker_remaining` gauge: taking a unit is one atomic
//! decrement of the gauge, giving it back one increment, so the exported figure is always the
//! true one and costs nothing extra. The gauge outlives a reload (metrics are keyed by cluster
//! name), so a rebuilt cluster shifts it by the change of the limit instead of setting it:
//! units held by requests of the old cluster stay counted until they come back.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config;
use crate::error::ProxyError;
use crate::telemetry::metrics::Metrics;

/// One bounded resource.
#[derive(Debug)]
pub struct Limit {
    remaining: Gauge,
    max: u32,
    resource: &'static str,
    overflows: Counter,
}

impl Limit {
    fn new(metrics: &Metrics, cluster: &str, resource: &'static str, max: u32) -> Limit {
        let (remaining, limit, overflows) = metrics.breaker(cluster, resource);
        let previous = limit.set(i64::from(max));
        remaining.inc_by(i64::from(max) - previous);
        Limit {
            remaining,
            max,
            resource,
            overflows,
        }
    }

    /// Take one unit, or report the overflow (counted) naming the resource.
    pub fn acquire(&self, cluster: &std::sync::Arc<str>) -> Result<Permit, ProxyError> {
        if self.remaining.dec() <= 0 {
            self.remaining.inc();
            self.overflows.inc();
            return Err(ProxyError::Overflow {
                cluster: cluster.clone(),
                resource: self.resource,
                limit: self.max,
            });
        }
        Ok(Permit(self.remaining.clone()))
    }

    pub fn remaining(&self) -> i64 {
        self.remaining.get()
    }

    pub fn max(&self) -> u32 {
        self.max
    }
}

/// One unit of a [`Limit`], given back when dropped.
#[derive(Debug)]
pub struct Permit(Gauge);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.inc();
    }
}

/// The four thresholds of one cluster.
#[derive(Debug)]
pub struct ClusterLimits {
    pub connections: Limit,
    pub pending: Limit,
    pub requests: Limit,
    pub retries: Limit,
}

impl ClusterLimits {
    pub fn new(metrics: &Metrics, cluster: &str, cfg: &config::CircuitBreakers) -> ClusterLimits {
        ClusterLimits {
            connections: Limit::new(metrics, cluster, "max_connections", cfg.max_connections),
            pending: Limit::new(
                metrics,
                cluster,
                "max_pending_requests",
                cfg.max_pending_requests,
            ),
            requests: Limit::new(metrics, cluster, "max_requests", cfg.max_requests),
            retries: Limit::new(metrics, cluster, "max_retries", cfg.max_retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_refuses_at_zero_and_recovers() {
        let m = Metrics::new("t");
        let name: std::sync::Arc<str> = "c".into();
        let l = Limit::new(&m, "c", "max_requests", 2);
        let a = l.acquire(&name).unwrap();
        let _b = l.acquire(&name).unwrap();
        let err = l.acquire(&name).unwrap_err();
        assert_eq!(err.reason(), "overflow");
        assert_eq!(err.status().as_u16(), 503);
        assert_eq!(l.remaining(), 0);
        drop(a);
        assert_eq!(l.remaining(), 1);
        assert!(l.acquire(&name).is_ok());
        let text = m.encode();
        assert!(
            text.contains("t_upstream_overflow_total{cluster=\"c\",resource=\"max_requests\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_rebuilt_limit_keeps_units_in_use_counted() {
        let m = Metrics::new("t");
        let name: std::sync::Arc<str> = "c".into();
        let old = Limit::new(&m, "c", "max_requests", 3);
        let held = old.acquire(&name).unwrap();
        let new = Limit::new(&m, "c", "max_requests", 5);
        assert_eq!(
            new.remaining(),
            4,
            "one of five is still held by the old cluster"
        );
        drop(held);
        assert_eq!(new.remaining(), 5);
    }
}
