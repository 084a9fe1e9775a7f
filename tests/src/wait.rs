//! Waiting for a condition with a deadline, instead of sleeping and hoping.
//!
//! A sleep long enough for a slow CI machine wastes time on a fast one and still fails on a
//! slower one; polling a condition returns as soon as it holds and, when it never does, fails
//! with what was last seen.

use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

/// How often conditions are polled: quick enough not to slow tests, rare enough not to load
/// the two shared cores.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Ok`, and returns that value. Panics after `within`, naming
/// `what` and showing the last `Err` seen.
pub async fn eventually<T, E: Debug>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last seen: {last:?}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Checks that `check` holds throughout `period`, polling it; panics at the first `Err`.
/// For asserting that something does *not* happen (an old config keeps serving).
pub async fn consistently<E: Debug>(
    what: &str,
    period: Duration,
    mut check: impl AsyncFnMut() -> Result<(), E>,
) {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        if let Err(seen) = check().await {
            panic!("expected {what} to hold for {period:?}, but saw: {seen:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `Ok` when `seen` is `want`, else `Err(seen)`: the common check inside [`eventually`] and
/// [`consistently`], reporting what was seen when it fails.
pub fn equal<T: PartialEq + Debug>(seen: T, want: T) -> Result<(), T> {
    if seen == want { Ok(()) } else { Err(seen) }
}
