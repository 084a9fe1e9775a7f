//! Request deadlines on a downstream connection, with one timer that is rarely moved.
//!
//! A tokio timer costs a lock of the timer wheel and an insert to set, and the same again
//! to clear: about 600 instructions for a request that sets a route timeout and is
//! answered well within it, 2% of what the proxy does for a request. An HTTP/1 connection
//! has one request at a time, so it keeps one timer and lets it run: a request only
//! compares its deadline with the timer's, and the timer is moved only when it goes off
//! before the deadline of the request then waiting (or when a request's deadline is
//! earlier than the timer's). Under keep-alive that is about once per timeout period per
//! connection instead of twice per request. nginx's timers are lazy in the same way.
//!
//! HTTP/2 streams run at once on one connection and each needs its own wake-up: they keep
//! tokio's per-request timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The timer of a connection whose requests come one at a time (HTTP/1).
#[derive(Default)]
pub struct RequestTimer {
    /// Set at the connection's first request that waits; then moved, never dropped, until
    /// the connection ends.
    slot: Mutex<Option<Armed>>,
}

struct Armed {
    sleep: Pin<Box<Sleep>>,
    /// The waker the timer holds, when it is known to hold one: after a poll that left it
    /// pending, until it goes off or is moved by us.
    ///
    /// A request's task is polled several times while it waits, and polling the timer each
    /// time registers the same waker again: two atomic read-modify-writes and some fifty
    /// instructions a request. With the waker known, a poll from the same task only checks
    /// that the timer has not gone off.
    holds: Option<Waker>,
}

impl Armed {
    /// Whether the timer holds the waker of the task polling now.
    fn holds_waker_of(&self, cx: &Context<'_>) -> bool {
        self.holds.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
    }
}

impl std::fmt::Debug for RequestTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestTimer")
    }
}

impl RequestTimer {
    /// Ready once `deadline` has passed; else Pending, with the calling task woken no later
    /// than then. The task may also be woken before (when the timer was set for an earlier
    /// request): it then finds this still Pending.
    fn poll_until(&self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let t = slot.get_or_insert_with(|| Armed {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            holds: None,
        });
        if t.sleep.deadline() > deadline {
            t.sleep.as_mut().reset(deadline);
            // A reset to a passed deadline goes off at once, taking the waker.
            t.holds = None;
        }
        if t.holds_waker_of(cx) && !t.sleep.is_elapsed() {
            // Pending, and going off will wake this task.
            return Poll::Pending;
        }
        loop {
            match t.sleep.as_mut().poll(cx) {
                Poll::Pending => {
                    if !t.holds_waker_of(cx) {
                        t.holds = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                // Gone off: its waker is used up.
                Poll::Ready(()) => t.holds = None,
            }
            // Set for this deadline (or a later one, moved above): it has passed.
            if t.sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // Set for an earlier request's deadline: move it to this one's.
            t.sleep.as_mut().reset(deadline);
        }
    }
}

pin_project! {
    /// `fut` bounded by a deadline on a connection's timer: its output, or `None` when the
    /// deadline passes first.
    ///
    /// A struct, not an `async fn`: the wrapped future (a request's whole trip upstream,
    /// over a kilobyte) is moved in once, as into tokio's `Timeout`, and not again.
    pub struct Within<'a, F> {
        #[pin]
        fut: F,
        timer: &'a RequestTimer,
        deadline: Instant,
    }
}

impl<'a, F: Future> Within<'a, F> {
    pub fn new(timer: &'a RequestTimer, deadline: Instant, fut: F) -> Self {
        Within {
            fut,
            timer,
            deadline,
        }
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        this.timer.poll_until(cx, *this.deadline).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn at(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// The paused clock moves to the timer's millisecond tick: `ms`, or at most one more.
    fn assert_took(start: Instant, ms: u64) {
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(ms) && took <= Duration::from_millis(ms + 1),
            "took {took:?}, not {ms} ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answer_before_the_deadline_is_returned() {
        let timer = RequestTimer::default();
        let answer = Within::new(&timer, at(1000), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            7
        });
        assert_eq!(answer.await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_ends_the_wait() {
        let timer = RequestTimer::default();
        let start = Instant::now();
        let answer = Within::new(&timer, at(1000), std::future::pending::<()>()).await;
        assert_eq!(answer, None);
        assert_took(start, 1000);
    }

    /// A request answered after `answer_ms` within `first_ms`, then one that is never
    /// answered, with `second_ms`: the second must end at its own deadline, whatever the
    /// timer was left at by the first.
    async fn second_request_ends_at_its_deadline(answer_ms: u64, first_ms: u64, second_ms: u64) {
        let timer = RequestTimer::default();
        let first = Within::new(&timer, at(first_ms), async {
            tokio::time::sleep(Duration::from_millis(answer_ms)).await;
        });
        assert_eq!(first.await, Some(()));

        let start = Instant::now();
        let second = Within::new(&timer, at(second_ms), std::future::pending::<()>()).await;
        assert_eq!(second, None);
        assert_took(start, second_ms);
    }

    /// The timer set for the first request goes off during the second, whose deadline is
    /// later: the second must not end then.
    #[tokio::test(start_paused = true)]
    async fn timer_left_from_an_earlier_request_does_not_end_a_later_one() {
        second_request_ends_at_its_deadline(500, 1000, 1000).await;
    }

    /// A shorter deadline after a longer one (another route's timeout) moves the timer
    /// earlier.
    #[tokio::test(start_paused = true)]
    async fn earlier_deadline_than_the_timers_is_kept() {
        second_request_ends_at_its_deadline(10, 10_000, 200).await;
    }

    /// The timer holds the first task's waker when a second task waits on it with a later
    /// deadline (so the timer is not moved): the second must still be woken, and end at its
    /// own deadline.
    #[tokio::test(start_paused = true)]
    async fn a_waiting_task_other_than_the_last_one_is_woken() {
        let timer = Arc::new(RequestTimer::default());
        let t = timer.clone();
        let first = tokio::spawn(async move {
            Within::new(&t, at(1000), tokio::time::sleep(Duration::from_millis(10))).await
        });
        assert_eq!(first.await.unwrap(), Some(()));
        let t = timer.clone();
        let start = Instant::now();
        let second =
            tokio::spawn(
                async move { Within::new(&t, at(1500), std::future::pending::<()>()).await },
            );
        let ended = tokio::time::timeout(Duration::from_secs(10), second).await;
        assert_eq!(ended.expect("woken by its deadline").unwrap(), None);
        assert_took(start, 1500);
    }

    /// Many polls of one waiting request, as its task is woken by other work: it still
    /// ends at its deadline, and not before.
    #[tokio::test(start_paused = true)]
    async fn a_request_polled_many_times_ends_at_its_deadline() {
        let timer = RequestTimer::default();
        let start = Instant::now();
        let mut waiting =
            std::pin::pin!(Within::new(&timer, at(300), std::future::pending::<()>()));
        for _ in 0..50 {
            assert!(futures_poll_once(waiting.as_mut()).await.is_none());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(waiting.await, None);
        assert_took(start, 300);
    }

    /// Poll `f` once with the current task's waker.
    async fn futures_poll_once<F: Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut f).poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            })
        })
        .await
    }
}
