//! Local rate limiting: a token bucket per key, kept as GCRA's one number per key (the
//! theoretical arrival time of the next request), so a check is one map lookup and a little
//! arithmetic under an uncontended lock.
//!
//! `requests` per `per` with a bucket of `burst`: after a quiet period `burst` requests may
//! come at once, then one every `per / requests`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Quota;

/// Keys tracked per rule at most (a bound on memory whatever the clients send). Idle keys
/// (whose bucket is full again) are dropped first; past that the rule starts over.
const MAX_KEYS: usize = 65_536;
const SHARDS: usize = 16;

/// The GCRA arithmetic every local limiter shares (this keyed one, and the route's shaping
/// `local::TokenBucket`): `requests` per `per`, bursts of `burst`, times in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Nanoseconds between requests at the sustained rate.
    pub interval: u64,
    /// How far ahead of now the theoretical arrival time may run: `(burst - 1) * interval`.
    pub tolerance: u64,
}

impl Rate {
    pub fn new(requests: u64, per: Duration, burst: u64) -> Rate {
        let interval = (per.as_nanos() / u128::from(requests.max(1))).max(1) as u64;
        Rate {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
        }
    }

    /// One request at `now` against the stored theoretical arrival time `tat`, allowed to
    /// wait up to `max_wait`: `Ok((next tat, wait))`, or `Err(wait)` when it would have to
    /// wait longer.
    pub fn admit(&self, tat: u64, now: u64, max_wait: u64) -> Result<(u64, u64), u64> {
        let start = tat.max(now);
        let wait = start.saturating_sub(self.tolerance).saturating_sub(now);
        if wait > max_wait {
            Err(wait)
        } else {
            Ok((start + self.interval, wait))
        }
    }
}

pub struct Gcra {
    rate: Rate,
    limit: u64,
    epoch: Instant,
    shards: Vec<Mutex<HashMap<Box<[u8]>, u64>>>,
}

impl Gcra {
    pub fn new(requests: u64, per: Duration, burst: u64) -> Gcra {
        Gcra {
            rate: Rate::new(requests, per, burst),
            limit: burst.max(1),
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Take one request's worth for `key`: `Ok` with what is left, or `Err` with when the
    /// next request would be allowed.
    pub fn check(&self, key: &[u8]) -> Result<Quota, Quota> {
        self.check_at(key, self.now())
    }

    fn check_at(&self, key: &[u8], now: u64) -> Result<Quota, Quota> {
        let shard = &self.shards[(crate::cluster::lb::hash_key(key) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let tat = map.get(key).copied().unwrap_or(now);
        let next = match self.rate.admit(tat, now, 0) {
            Ok((next, _)) => next,
            Err(wait) => {
                return Err(Quota {
                    limit: self.limit,
                    remaining: 0,
                    reset: Duration::from_nanos(wait),
                });
            }
        };
        if map.len() >= MAX_KEYS / SHARDS && !map.contains_key(key) {
            map.retain(|_, t| *t > now);
            if map.len() >= MAX_KEYS / SHARDS {
                map.clear();
            }
        }
        match map.get_mut(key) {
            Some(t) => *t = next,
            None => {
                map.insert(key.into(), next);
            }
        }
        // Whole requests still allowed right now, and when the bucket is full again.
        let room = (now + self.rate.tolerance + self.rate.interval).saturating_sub(next);
        Ok(Quota {
            limit: self.limit,
            remaining: room / self.rate.interval,
            reset: Duration::from_nanos(next - now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        // 10 per second, bursts of 3.
        let g = Gcra::new(10, Duration::from_secs(1), 3);
        let t0 = 1_000 * MS;
        let left: Vec<u64> = (0..3)
            .map(|_| g.check_at(b"k", t0).unwrap().remaining)
            .collect();
        assert_eq!(left, [2, 1, 0]);
        let denied = g.check_at(b"k", t0).unwrap_err();
        assert_eq!(denied.reset, Duration::from_millis(100));
        // One interval later, one more.
        assert!(g.check_at(b"k", t0 + 100 * MS).is_ok());
        assert!(g.check_at(b"k", t0 + 100 * MS).is_err());
        // Keys are counted apart.
        assert!(g.check_at(b"other", t0 + 100 * MS).is_ok());
        // After a quiet second the burst is back.
        let later = t0 + 2_000 * MS;
        assert_eq!(g.check_at(b"k", later).unwrap().remaining, 2);
    }

    #[test]
    fn exact_count_over_a_window() {
        let g = Gcra::new(50, Duration::from_secs(10), 50);
        let t0 = 5 * MS;
        let allowed = (0..200)
            .filter(|i| g.check_at(b"k", t0 + i * MS).is_ok())
            .count();
        // The burst of 50, and no refill yet: the next token comes 200 ms after the start.
        assert_eq!(allowed, 50);
        assert!(g.check_at(b"k", t0 + 200 * MS).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let g = Gcra::new(1, Duration::from_secs(3600), 1);
        for i in 0..200_000u32 {
            let _ = g.check_at(&i.to_le_bytes(), MS);
        }
        let total: usize = g.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= MAX_KEYS, "{total}");
    }
}
