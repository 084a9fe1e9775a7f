//! The error-rate breaker of a cluster: closed → open → half-open → closed.
//!
//! Closed, it counts requests and failures over a sliding window and opens when the failure
//! rate passes the threshold with enough requests. Open, it refuses every request at once
//! (503 `circuit_open` with `Retry-After`) for `open_duration`. Then the first requests to
//! come are let through as probes (half-open): all of them succeeding closes it, one failing
//! opens it again. State changes are compare-and-swaps on one atomic, so exactly one request
//! makes each transition, and that one logs it and counts it.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::time::Instant;

use super::window::SlidingCounts;
use crate::config;
use crate::error::ProxyError;
use crate::telemetry::metrics::Metrics;

const REQUESTS: usize = 0;
const FAILURES: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl State {
    const ALL: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// How a request was let through; its outcome is recorded accordingly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Normal,
    Probe,
}

#[derive(Debug)]
pub struct ErrorRateBreaker {
    cfg: config::ErrorRateBreaker,
    cluster: std::sync::Arc<str>,
    state: AtomicU8,
    epoch: Instant,
    /// Milliseconds since `epoch` when the breaker last opened.
    opened_at: AtomicU64,
    probes_sent: AtomicU32,
    probes_passed: AtomicU32,
    window: SlidingCounts,
    /// 1 for the current state, 0 for the others; by `State as usize`.
    state_gauges: [Gauge; 3],
    /// Transitions into each state.
    transitions: [Counter; 3],
}

/// The breaker as `/clusters` shows it.
#[derive(Debug, Serialize)]
pub struct BreakerView {
    pub state: State,
    pub requests_in_window: u64,
    pub failures_in_window: u64,
}

impl ErrorRateBreaker {
    pub fn new(cfg: &config::ErrorRateBreaker, cluster: &str, metrics: &Metrics) -> Self {
        let (state_gauges, transitions) =
            metrics.error_rate_breaker(cluster, State::ALL.map(State::as_str));
        let b = ErrorRateBreaker {
            cfg: cfg.clone(),
            cluster: cluster.into(),
            state: AtomicU8::new(State::Closed as u8),
            epoch: Instant::now(),
            opened_at: AtomicU64::new(0),
            probes_sent: AtomicU32::new(0),
            probes_passed: AtomicU32::new(0),
            window: SlidingCounts::new(cfg.window.get()),
            state_gauges,
            transitions,
        };
        b.show(State::Closed);
        b
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn view(&self) -> BreakerView {
        let [requests, failures] = self.window.totals();
        BreakerView {
            state: self.state(),
            requests_in_window: requests,
            failures_in_window: failures,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn show(&self, state: State) {
        for (i, g) in self.state_gauges.iter().enumerate() {
            g.set(i64::from(i == state as usize));
        }
    }

    /// Move from `from` to `to` if still in `from`; true for the one caller that did.
    fn transition(&self, from: State, to: State, why: &str) -> bool {
        if self
            .state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        match to {
            State::Open => {
                self.opened_at.store(self.now_ms(), Ordering::Release);
                tracing::warn!(cluster = %self.cluster, from = from.as_str(), why, open_for = ?self.cfg.open_duration.get(), "circuit breaker opened");
            }
            State::HalfOpen => {
                self.probes_sent.store(0, Ordering::Release);
                self.probes_passed.store(0, Ordering::Release);
                tracing::info!(cluster = %self.cluster, why, probes = self.cfg.half_open_requests, "circuit breaker half-open");
            }
            State::Closed => {
                self.window.clear();
                tracing::info!(cluster = %self.cluster, why, "circuit breaker closed");
            }
        }
        self.transitions[to as usize].inc();
        self.show(to);
        true
    }

    /// Let a request through, or refuse it while open (and when half-open with all probes
    /// out), saying when to come back.
    pub fn admit(&self) -> Result<Ticket<'_>, ProxyError> {
        self.admission().map(|admission| Ticket {
            breaker: self,
            admission,
            recorded: false,
        })
    }

    fn admission(&self) -> Result<Admission, ProxyError> {
        let mut state = self.state();
        if state == State::Closed {
            return Ok(Admission::Normal);
        }
        if state == State::Open {
            let open = self.cfg.open_duration.get();
            let since = Duration::from_millis(
                self.now_ms()
                    .saturating_sub(self.opened_at.load(Ordering::Acquire)),
            );
            if since < open {
                return Err(self.refusal(open - since));
            }
            self.transition(State::Open, State::HalfOpen, "open_duration passed");
            state = self.state();
        }
        if state == State::HalfOpen
            && self.probes_sent.fetch_add(1, Ordering::AcqRel) < self.cfg.half_open_requests
        {
            return Ok(Admission::Probe);
        }
        // All probes are out (or the breaker moved on meanwhile): come back when they
        // will have answered.
        Err(self.refusal(self.cfg.open_duration.get()))
    }

    fn refusal(&self, retry_after: Duration) -> ProxyError {
        ProxyError::CircuitOpen {
            cluster: self.cluster.clone(),
            retry_after,
        }
    }

    /// The final outcome of an admitted request.
    fn record(&self, admission: Admission, failed: bool) {
        match admission {
            Admission::Normal => {
                self.window.add(REQUESTS, 1);
                if !failed {
                    return;
                }
                self.window.add(FAILURES, 1);
                let [requests, failures] = self.window.totals();
                if requests >= u64::from(self.cfg.minimum_requests)
                    && failures as f64 * 100.0 >= self.cfg.failure_rate_threshold * requests as f64
                {
                    self.transition(
                        State::Closed,
                        State::Open,
                        &format!("{failures} of {requests} requests failed"),
                    );
                }
            }
            Admission::Probe if failed => {
                self.transition(State::HalfOpen, State::Open, "a probe failed");
            }
            Admission::Probe => {
                if self.probes_passed.fetch_add(1, Ordering::AcqRel) + 1
                    >= self.cfg.half_open_requests
                {
                    self.transition(State::HalfOpen, State::Closed, "every probe succeeded");
                }
            }
        }
    }
}

/// An admitted request's pass. A probe dropped without an outcome (the request ended some
/// other way) counts as failed: a half-open breaker must never wait for an answer that will
/// not come.
#[derive(Debug)]
pub struct Ticket<'a> {
    breaker: &'a ErrorRateBreaker,
    admission: Admission,
    recorded: bool,
}

impl Ticket<'_> {
    pub fn admission(&self) -> Admission {
        self.admission
    }

    pub fn record(mut self, failed: bool) {
        self.recorded = true;
        self.breaker.record(self.admission, failed);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.admission == Admission::Probe {
            self.breaker.record(Admission::Probe, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> ErrorRateBreaker {
        let cfg = serde_norway::from_str(
            "{failure_rate_threshold: 50, minimum_requests: 10, window: 10s, open_duration: 2s, half_open_requests: 2}",
        )
        .unwrap();
        ErrorRateBreaker::new(&cfg, "c", &Metrics::new("t"))
    }

    fn send(b: &ErrorRateBreaker, failed: bool) -> Result<(), ProxyError> {
        b.admit()?.record(failed);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_rate_with_enough_requests() {
        let b = breaker();
        for _ in 0..9 {
            send(&b, true).unwrap();
        }
        assert_eq!(b.state(), State::Closed, "9 requests are under the minimum");
        send(&b, true).unwrap();
        assert_eq!(b.state(), State::Open);
        match b.admit() {
            Err(ProxyError::CircuitOpen { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(2))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_failure_rate_and_old_failures_do_not_open_it() {
        let b = breaker();
        for i in 0..40 {
            send(&b, i % 3 == 0).unwrap();
        }
        assert_eq!(b.state(), State::Closed, "a third failing is under 50%");
        let b = breaker();
        for _ in 0..9 {
            send(&b, true).unwrap();
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        send(&b, true).unwrap();
        assert_eq!(b.state(), State::Closed, "the first nine left the window");
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_probes_close_it_or_open_it_again() {
        let b = breaker();
        for _ in 0..10 {
            send(&b, true).unwrap();
        }
        tokio::time::advance(Duration::from_millis(1_900)).await;
        assert!(b.admit().is_err(), "still open");
        tokio::time::advance(Duration::from_millis(100)).await;

        // Half-open: two probes, a third request waits.
        let p1 = b.admit().unwrap();
        let p2 = b.admit().unwrap();
        assert_eq!(
            (p1.admission(), p2.admission()),
            (Admission::Probe, Admission::Probe)
        );
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.admit().is_err(), "only two probes at a time");
        p1.record(false);
        p2.record(true);
        assert_eq!(b.state(), State::Open, "one failed probe reopens");

        tokio::time::advance(Duration::from_secs(2)).await;
        let p1 = b.admit().unwrap();
        let p2 = b.admit().unwrap();
        p1.record(false);
        assert_eq!(b.state(), State::HalfOpen);
        p2.record(false);
        assert_eq!(b.state(), State::Closed, "every probe passed");
        assert_eq!(
            b.view().requests_in_window,
            0,
            "closing starts a fresh window"
        );
        assert_eq!(b.admit().unwrap().admission(), Admission::Normal);

        // A probe that ends without an outcome counts as failed.
        for _ in 0..10 {
            send(&b, true).unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(b.admit().unwrap());
        assert_eq!(b.state(), State::Open);
    }
}
