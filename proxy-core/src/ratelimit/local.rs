//! A local token bucket in front of a route, so an API behind it never sees more than its
//! quota: at most `burst` requests at once, then one per `per / requests`.
//!
//! The bucket is GCRA (the "virtual scheduling" form of a token bucket): one atomic holds the
//! theoretical arrival time of the next conforming request, and a request reserves its slot
//! with one compare-and-swap, so there is no lock on the request path. A request over the
//! quota reserves the first free slot and waits for it when that is within `max_wait`;
//! otherwise it is refused with 429 `local_rate_limited` and a `Retry-After`. Reserving before
//! waiting keeps the waiting requests in order and the quota exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{Dur, Problems};
use crate::error::ProxyError;

/// The `local_rate_limit:` block of a route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimit {
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The period of the quota.
    #[serde(default = "one_second")]
    pub per: Dur,
    /// Requests allowed back to back after a quiet period; `requests` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// How long a request over the quota may wait for its turn before it is refused.
    #[serde(default = "no_wait")]
    pub max_wait: Dur,
}

fn one_second() -> Dur {
    Dur::secs(1)
}

fn no_wait() -> Dur {
    Dur::millis(0)
}

/// Report the problems of a `local_rate_limit:` block.
pub fn validate(p: &mut Problems, path: &str, rl: &LocalRateLimit) {
    if rl.requests == 0 {
        p.at(format!("{path}.requests"), "must be at least 1");
    }
    if rl.per.get().is_zero() {
        p.at(format!("{path}.per"), "must be more than 0");
    }
    if rl.burst == Some(0) {
        p.at(format!("{path}.burst"), "must be at least 1");
    }
}

/// What the bucket says to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Now,
    /// A slot is reserved this far in the future.
    After(Duration),
    /// The first free slot is further away than `max_wait`; it is this far away.
    Refused(Duration),
}

/// One route's bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: super::gcra::Rate,
    max_wait_ns: u64,
    epoch: Instant,
    /// Theoretical arrival time of the next conforming request, in ns since `epoch`.
    tat: AtomicU64,
    waits: Counter,
    limited: Counter,
}

impl TokenBucket {
    /// `counters`: requests that waited, requests refused.
    pub fn new(cfg: &LocalRateLimit, counters: [Counter; 2]) -> TokenBucket {
        let [waits, limited] = counters;
        let rate = super::gcra::Rate::new(
            u64::from(cfg.requests),
            cfg.per.get(),
            u64::from(cfg.burst.unwrap_or(cfg.requests)),
        );
        TokenBucket {
            rate,
            max_wait_ns: cfg.max_wait.get().as_nanos() as u64,
            epoch: Instant::now(),
            tat: AtomicU64::new(0),
            waits,
            limited,
        }
    }

    /// Reserve a slot for one request, if one is free within `max_wait`.
    pub fn reserve(&self) -> Admission {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let (next, wait) = match self.rate.admit(tat, now, self.max_wait_ns) {
                Ok(admitted) => admitted,
                Err(wait) => return Admission::Refused(Duration::from_nanos(wait)),
            };
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if wait == 0 => return Admission::Now,
                Ok(_) => return Admission::After(Duration::from_nanos(wait)),
                Err(current) => tat = current,
            }
        }
    }

    /// Let one request of `route` through: at once, after waiting for its slot, or refused.
    pub async fn acquire(&self, route: &std::sync::Arc<str>) -> Result<(), ProxyError> {
        match self.reserve() {
            Admission::Now => Ok(()),
            Admission::After(d) => {
                self.waits.inc();
                tokio::time::sleep(d).await;
                Ok(())
            }
            Admission::Refused(d) => {
                self.limited.inc();
                Err(ProxyError::LocalRateLimited {
                    route: route.clone(),
                    retry_after: d,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(requests: u32, per_ms: u64, burst: Option<u32>, max_wait_ms: u64) -> TokenBucket {
        TokenBucket::new(
            &LocalRateLimit {
                requests,
                per: Dur::millis(per_ms),
                burst,
                max_wait: Dur::millis(max_wait_ms),
            },
            Default::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_one_per_interval() {
        let b = bucket(10, 1000, Some(3), 0);
        for _ in 0..3 {
            assert_eq!(b.reserve(), Admission::Now);
        }
        assert!(matches!(b.reserve(), Admission::Refused(d) if d == Duration::from_millis(100)));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(b.reserve(), Admission::Now);
        assert!(matches!(b.reserve(), Admission::Refused(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_queue_in_order_within_max_wait() {
        let b = bucket(10, 1000, Some(1), 250);
        assert_eq!(b.reserve(), Admission::Now);
        assert_eq!(b.reserve(), Admission::After(Duration::from_millis(100)));
        assert_eq!(b.reserve(), Admission::After(Duration::from_millis(200)));
        assert!(matches!(b.reserve(), Admission::Refused(d) if d == Duration::from_millis(300)));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_quota_in_any_window() {
        // 1000 attempts spread over 2 s against 5/s with burst 5: at most 5 + 10 pass.
        let b = bucket(5, 1000, None, 0);
        let mut passed = 0;
        for _ in 0..1000 {
            if b.reserve() == Admission::Now {
                passed += 1;
            }
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        assert!((14..=15).contains(&passed), "{passed}");
    }

    #[test]
    fn validation_names_fields() {
        let mut p = Problems::default();
        validate(
            &mut p,
            "r",
            &LocalRateLimit {
                requests: 0,
                per: Dur::millis(0),
                burst: Some(0),
                max_wait: Dur::millis(0),
            },
        );
        let paths: Vec<_> = p.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["r.requests", "r.per", "r.burst"]);
    }
}
