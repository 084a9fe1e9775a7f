//! A cluster's retry budget (Linkerd's design): over a sliding window of `ttl`, retries may
//! be at most `budget_percent` of the requests that could be retried, plus a floor of
//! `min_retries_per_second`. When every replica fails, a policy of three retries would
//! quadruple the load on a service that is already down; the budget keeps it near
//! `1 + budget_percent / 100`.
//!
//! The window is `SlidingCounts`: a request deposits with one add, a retry withdraws with an
//! add and a sum of ten buckets. No lock, no allocation.

use crate::config;

use super::window::SlidingCounts;

const REQUESTS: usize = 0;
const RETRIES: usize = 1;

#[derive(Debug)]
pub struct RetryBudget {
    counts: SlidingCounts,
    ratio: f64,
    floor: f64,
}

impl RetryBudget {
    pub fn new(cfg: &config::RetryBudget) -> RetryBudget {
        let ttl = cfg.ttl.get();
        RetryBudget {
            counts: SlidingCounts::new(ttl),
            ratio: cfg.budget_percent / 100.0,
            floor: f64::from(cfg.min_retries_per_second) * ttl.as_secs_f64(),
        }
    }

    /// Count a request that may be retried.
    pub fn deposit(&self) {
        self.counts.add(REQUESTS, 1);
    }

    /// Take one retry from the budget; `false` when it is spent. Counted before checking, so
    /// concurrent retries cannot all see the last unit free.
    pub fn try_withdraw(&self) -> bool {
        self.counts.add(RETRIES, 1);
        let [requests, retries] = self.counts.totals();
        if retries as f64 <= self.floor + requests as f64 * self.ratio {
            true
        } else {
            self.counts.sub(RETRIES);
            false
        }
    }

    /// Retries still allowed now, for `/clusters`.
    pub fn remaining(&self) -> u64 {
        let [requests, retries] = self.counts.totals();
        let allowed = self.floor + requests as f64 * self.ratio;
        (allowed - retries as f64).max(0.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(percent: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(&config::RetryBudget {
            budget_percent: percent,
            min_retries_per_second: min_per_second,
            ttl: config::Dur::secs(10),
        })
    }

    fn withdraw_all(b: &RetryBudget) -> u64 {
        let mut n = 0;
        while b.try_withdraw() {
            n += 1;
            assert!(n < 10_000, "the budget never ran out");
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_requests() {
        let b = budget(20.0, 0);
        assert!(!b.try_withdraw(), "no requests, no floor: no retries");
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 20);
        assert_eq!(withdraw_all(&b), 20);
        assert_eq!(b.remaining(), 0);
        b.deposit();
        b.deposit();
        b.deposit();
        b.deposit();
        b.deposit();
        assert_eq!(
            withdraw_all(&b),
            1,
            "five more requests earn one more retry"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_on_a_quiet_cluster() {
        let b = budget(20.0, 2);
        assert_eq!(withdraw_all(&b), 20, "2/s over a 10s window");
    }

    #[tokio::test(start_paused = true)]
    async fn old_requests_and_retries_leave_the_window() {
        let b = budget(50.0, 0);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(withdraw_all(&b), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(withdraw_all(&b), 0, "still inside the 10s window");
        for _ in 0..4 {
            b.deposit();
        }
        assert_eq!(withdraw_all(&b), 2);
        // The first ten requests and five retries age out; the four later ones stay.
        tokio::time::advance(Duration::from_millis(5_500)).await;
        assert_eq!(b.remaining(), 0, "2 retries already spent of 4 * 50%");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.remaining(), 0, "everything aged out");
        assert!(!b.try_withdraw());
    }
}
