//! Fault injection, per route: a fixed delay before forwarding and an abort with a chosen
//! status, each for a share of requests. For chaos testing the callers: does the client
//! time out, retry, fall back, when this dependency is slow or failing?

use std::time::Duration;

use http::StatusCode;
use prometheus_client::metrics::counter::Counter;

use crate::config;
use crate::telemetry::metrics::Metrics;

pub struct FaultRule {
    delay: Option<(Duration, f64)>,
    abort: Option<(StatusCode, f64)>,
    delays: Counter,
    aborts: Counter,
}

/// True for a `fraction` (0 to 1) of calls.
fn chosen(fraction: f64) -> bool {
    fraction >= 1.0 || (fraction > 0.0 && fastrand::f64() < fraction)
}

impl FaultRule {
    pub fn build(listener: &str, route: &str, cfg: &config::Fault, metrics: &Metrics) -> FaultRule {
        let (delays, aborts) = metrics.fault_stats(listener, route);
        FaultRule {
            delay: cfg
                .delay
                .as_ref()
                .map(|d| (d.fixed_delay.get(), d.percentage / 100.0)),
            abort: cfg.abort.as_ref().and_then(|a| {
                Some((
                    StatusCode::from_u16(a.http_status).ok()?,
                    a.percentage / 100.0,
                ))
            }),
            delays,
            aborts,
        }
    }

    /// The delay to hold this request for, if it is one of the delayed share.
    pub fn delay(&self) -> Option<Duration> {
        let (d, fraction) = self.delay?;
        chosen(fraction).then(|| {
            self.delays.inc();
            d
        })
    }

    /// The status to abort this request with, if it is one of the aborted share.
    pub fn abort(&self) -> Option<StatusCode> {
        let (status, fraction) = self.abort?;
        chosen(fraction).then(|| {
            self.aborts.inc();
            status
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_applied() {
        let cfg = config::Fault {
            delay: Some(config::FaultDelay {
                fixed_delay: config::Dur::millis(5),
                percentage: 100.0,
            }),
            abort: Some(config::FaultAbort {
                http_status: 418,
                percentage: 30.0,
            }),
        };
        let f = FaultRule::build("l", "r", &cfg, &Metrics::new("t"));
        assert_eq!(f.delay(), Some(Duration::from_millis(5)));
        let n = 10_000;
        let aborted = (0..n).filter(|_| f.abort().is_some()).count();
        assert!((2700..3300).contains(&aborted), "{aborted}");
        assert_eq!(f.aborts.get(), aborted as u64);
        assert_eq!(f.abort.unwrap().0, StatusCode::IM_A_TEAPOT);
        assert!(!chosen(0.0));
    }
}
