//! The idle and header timeouts of a listener's downstream connections, and its drain, kept
//! by one sweep per listener.
//!
//! A connection registers when it starts and is told, through a oneshot its task polls
//! beside hyper's connection, when to end: no request in flight for the idle timeout, or
//! (HTTP/1) a request head incomplete past the header timeout, or a drain. Before this, each
//! connection had a watcher task of its own with a timer and a drain receiver: a task
//! spawned per connection, and a timer that, whenever it was the earliest one pending,
//! made registering it wake the runtime's driver with an `eventfd` write (`strace`). A new
//! connection now costs a map insert under a short lock; the sweep's one timer serves all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;

use super::proxy::Downstream;

/// How a connection is to end early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Finish the request in flight, then close (drain, idle keep-alive connection).
    Graceful,
    /// Close now: a request head has been dribbling in past the header timeout (slowloris).
    Now,
}

/// A listener's sweep over its connections' timeouts. Dropping it (with the listener's
/// last connection) ends the sweep task.
pub struct Supervisor {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the sweep: a connection due before its next sweep, a drain, or the end.
    wake: Notify,
}

#[derive(Default)]
struct State {
    next_id: u64,
    conns: HashMap<u64, Watched>,
    draining: bool,
    closed: bool,
    /// When the sweep task will next look, if it is waiting.
    next_sweep: Option<Instant>,
}

struct Watched {
    down: Arc<Downstream>,
    idle: Duration,
    header_timeout: Option<Duration>,
    /// Taken when the connection has been told to finish.
    finish: Option<oneshot::Sender<Finish>>,
}

impl Watched {
    /// What this connection is to do now; else when it is next to be looked at.
    fn check(&self, now: Instant) -> Result<Finish, Instant> {
        if self
            .header_timeout
            .is_some_and(|h| self.down.head_pending_for() >= h)
        {
            return Ok(Finish::Now);
        }
        let quiet = self.down.idle_for();
        if quiet >= self.idle {
            return Ok(Finish::Graceful);
        }
        // Looked at every eighth of the header timeout: a head's start is noted by the
        // first look after it (up to an eighth late), and the head is cut by the first
        // look past the timeout (up to another eighth): within 1.25 times it.
        let tick = self
            .header_timeout
            .map_or(self.idle, |h| (h / 8).max(Duration::from_millis(10)));
        Err(now + tick.min(self.idle - quiet))
    }
}

/// A connection's place in the sweep; dropping it (when the connection ends) leaves.
pub struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.shared.state).conns.remove(&self.id);
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is a map and flags, each update whole: a panic elsewhere cannot leave it
    // half-done, so a poisoned lock is still good.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sweeps at least this often even with nothing due, so a quiet listener's task still
/// notices its end within this time should a wake be missed.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

impl Supervisor {
    /// A supervisor, and its sweep task on the current runtime; a drain (`drain` turning
    /// true) tells every connection, present and future, to finish gracefully.
    pub fn start(drain: watch::Receiver<bool>) -> Supervisor {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        tokio::spawn(sweep(shared.clone(), drain));
        Supervisor { shared }
    }

    /// Watch a connection with these timeouts (`header_timeout` only for HTTP/1); the
    /// receiver says when and how it is to end.
    pub fn watch(
        &self,
        down: Arc<Downstream>,
        idle: Duration,
        header_timeout: Option<Duration>,
    ) -> (Registration, oneshot::Receiver<Finish>) {
        let (tx, rx) = oneshot::channel();
        let mut w = Watched {
            down,
            idle,
            header_timeout,
            finish: Some(tx),
        };
        let now = Instant::now();
        let mut st = lock(&self.shared.state);
        let id = st.next_id;
        st.next_id += 1;
        let mut wake = false;
        if st.draining {
            if let Some(tx) = w.finish.take() {
                let _ = tx.send(Finish::Graceful);
            }
        } else if let Err(due) = w.check(now) {
            // Connections of one listener share their timeouts, so the sweep is usually
            // due sooner already; a wake only when it is not (the first connection).
            wake = st.next_sweep.is_none_or(|next| due < next);
        }
        st.conns.insert(id, w);
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        (
            Registration {
                shared: self.shared.clone(),
                id,
            },
            rx,
        )
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
    }
}

async fn sweep(shared: Arc<Shared>, mut drain: watch::Receiver<bool>) {
    let mut drain_open = true;
    loop {
        let now = Instant::now();
        let next = {
            let mut st = lock(&shared.state);
            if st.closed {
                return;
            }
            let mut next = now + MAX_SLEEP;
            for w in st.conns.values_mut() {
                if w.finish.is_none() {
                    continue;
                }
                match w.check(now) {
                    Ok(how) => {
                        if let Some(tx) = w.finish.take() {
                            let _ = tx.send(how);
                        }
                    }
                    Err(due) => next = next.min(due),
                }
            }
            st.next_sweep = Some(next);
            next
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shared.wake.notified() => {}
            d = drain.wait_for(|d| *d), if drain_open => {
                // A closed channel (the proxy stopping without a drain) drains nothing.
                drain_open = false;
                if d.is_ok() {
                    let mut st = lock(&shared.state);
                    st.draining = true;
                    for w in st.conns.values_mut() {
                        if let Some(tx) = w.finish.take() {
                            let _ = tx.send(Finish::Graceful);
                        }
                    }
                }
            }
        }
        lock(&shared.state).next_sweep = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;

    // Real time, not tokio's paused clock: `Downstream` keeps its times with the
    // standard clock, as the connection's reads record them.
    fn down() -> Arc<Downstream> {
        Arc::new(Downstream::new(SocketAddr::from(([127, 0, 0, 1], 9))))
    }

    /// A connection with a request in flight: neither idle nor waiting for a head.
    fn busy() -> Arc<Downstream> {
        let d = down();
        d.in_flight.store(1, Ordering::Release);
        d
    }

    /// A started supervisor and the drain switch it listens to.
    fn supervisor() -> (watch::Sender<bool>, Supervisor) {
        let (tx, drain) = watch::channel(false);
        (tx, Supervisor::start(drain))
    }

    const MS: Duration = Duration::from_millis(1);

    /// What the connection was told, failing the test rather than hanging if nothing is.
    async fn told(rx: oneshot::Receiver<Finish>) -> Finish {
        tokio::time::timeout(2000 * MS, rx)
            .await
            .expect("told within 2 s")
            .expect("the supervisor kept the sender until telling")
    }

    /// Watch `d` alone under a new supervisor: what it is told, and after how long.
    async fn told_after(
        d: Arc<Downstream>,
        idle: Duration,
        header_timeout: Option<Duration>,
    ) -> (Finish, Duration) {
        let (_tx, sup) = supervisor();
        let t0 = Instant::now();
        let (_reg, rx) = sup.watch(d, idle, header_timeout);
        let how = told(rx).await;
        (how, t0.elapsed())
    }

    #[tokio::test]
    async fn idle_connection_is_told_to_finish_gracefully() {
        let d = down();
        // No request head pending: only the idle timeout applies.
        d.head_since_ms
            .store(super::super::proxy::NOT_WAITING, Ordering::Relaxed);
        let (how, waited) = told_after(d, 150 * MS, Some(100 * MS)).await;
        assert_eq!(how, Finish::Graceful);
        assert!(waited >= 150 * MS && waited < 1000 * MS, "{waited:?}");
    }

    #[tokio::test]
    async fn silent_client_is_cut_at_the_header_timeout() {
        // A new connection waits for its first head from the start.
        let (how, waited) = told_after(down(), 60_000 * MS, Some(100 * MS)).await;
        assert_eq!(how, Finish::Now);
        assert!(waited >= 100 * MS && waited < 1000 * MS, "{waited:?}");
    }

    /// A keep-alive connection whose next head begins and never completes: its start is
    /// only marked by the read, and the sweep must time it from there.
    #[tokio::test]
    async fn head_begun_between_requests_is_cut_at_the_header_timeout() {
        let d = down();
        d.head_since_ms
            .store(super::super::proxy::NOT_WAITING, Ordering::Relaxed);
        d.bytes_read();
        assert_eq!(
            d.head_since_ms.load(Ordering::Relaxed),
            super::super::proxy::HEAD_STARTED
        );
        let (how, waited) = told_after(d.clone(), 60_000 * MS, Some(100 * MS)).await;
        assert_eq!(how, Finish::Now);
        assert!(waited >= 100 * MS && waited < 1000 * MS, "{waited:?}");
        // A request starting clears it; the next read marks the next head.
        d.head_since_ms
            .store(super::super::proxy::NOT_WAITING, Ordering::Relaxed);
        d.in_flight.store(1, Ordering::Release);
        d.bytes_read();
        assert_eq!(
            d.head_since_ms.load(Ordering::Relaxed),
            super::super::proxy::NOT_WAITING
        );
    }

    #[tokio::test]
    async fn busy_connection_is_left_alone() {
        let (_tx, sup) = supervisor();
        let d = busy();
        let (_reg, mut rx) = sup.watch(d, 40 * MS, Some(40 * MS));
        tokio::time::sleep(300 * MS).await;
        assert!(rx.try_recv().is_err(), "a request in flight keeps it open");
    }

    #[tokio::test]
    async fn one_sweep_serves_connections_with_different_deadlines() {
        let (_tx, sup) = supervisor();
        let (long, short) = (down(), down());
        for d in [&long, &short] {
            d.head_since_ms
                .store(super::super::proxy::NOT_WAITING, Ordering::Relaxed);
        }
        // The long one first, and the sweep asleep until its deadline: the short one must
        // wake it.
        let (_a, long_rx) = sup.watch(long, 60_000 * MS, None);
        for _ in 0..100 {
            if lock(&sup.shared.state).next_sweep.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let asleep_until = lock(&sup.shared.state).next_sweep.expect("the sweep waits");
        assert!(asleep_until > Instant::now() + 50_000 * MS);
        let t0 = Instant::now();
        let (_b, short_rx) = sup.watch(short, 100 * MS, None);
        assert_eq!(told(short_rx).await, Finish::Graceful);
        assert!(t0.elapsed() < 1000 * MS, "{:?}", t0.elapsed());
        let mut long_rx = long_rx;
        assert!(long_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn drain_reaches_present_and_later_connections() {
        let (tx, sup) = supervisor();
        let d = busy();
        let (_a, before) = sup.watch(d.clone(), 60_000 * MS, None);
        tx.send(true).unwrap();
        assert_eq!(told(before).await, Finish::Graceful);
        let (_b, after) = sup.watch(d, 60_000 * MS, None);
        assert_eq!(told(after).await, Finish::Graceful);
    }

    #[tokio::test]
    async fn ended_connections_leave_and_the_sweep_ends_with_its_supervisor() {
        let (_tx, sup) = supervisor();
        let shared = sup.shared.clone();
        let (reg, _rx) = sup.watch(down(), 60_000 * MS, None);
        assert_eq!(lock(&shared.state).conns.len(), 1);
        drop(reg);
        assert!(lock(&shared.state).conns.is_empty());
        drop(sup);
        // The sweep task holds the only other reference and lets go when it ends.
        let deadline = Instant::now() + 1000 * MS;
        while Arc::strong_count(&shared) > 1 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(Arc::strong_count(&shared), 1);
    }
}
