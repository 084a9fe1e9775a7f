//! Two counters over a sliding window of time, lock-free: ten buckets of `window / 10`, each
//! tagged with the slice of time it counts. A bump is one add (plus, once per slice, a
//! reset); a read sums the buckets still inside the window. Used by the retry budget
//! (requests, retries) and the error-rate breaker (requests, failures).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct Bucket {
    /// Which slice of time (counted from the window's epoch) the counts belong to.
    slice: AtomicU64,
    counts: [AtomicU64; 2],
}

#[derive(Debug)]
pub struct SlidingCounts {
    buckets: [Bucket; BUCKETS],
    slice_len: Duration,
    epoch: Instant,
}

impl SlidingCounts {
    pub fn new(window: Duration) -> SlidingCounts {
        SlidingCounts {
            buckets: Default::default(),
            slice_len: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            epoch: Instant::now(),
        }
    }

    fn now_slice(&self) -> u64 {
        // Slices start at 1 so that a fresh bucket (slice 0) is never mistaken for current.
        (self.epoch.elapsed().as_nanos() / self.slice_len.as_nanos()) as u64 + 1
    }

    /// The current bucket, emptied first if it still holds an older slice's counts.
    fn bucket(&self) -> (&Bucket, u64) {
        let slice = self.now_slice();
        let b = &self.buckets[(slice % BUCKETS as u64) as usize];
        let seen = b.slice.load(Ordering::Acquire);
        if seen != slice
            && b.slice
                .compare_exchange(seen, slice, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for c in &b.counts {
                c.store(0, Ordering::Relaxed);
            }
        }
        (b, slice)
    }

    /// Add `n` to counter `which` (0 or 1) now.
    pub fn add(&self, which: usize, n: u64) {
        self.bucket().0.counts[which].fetch_add(n, Ordering::Relaxed);
    }

    /// Take one back from counter `which` (undoing an `add` of this instant). Saturating:
    /// should a slice have begun in between, the new bucket may still be empty.
    pub fn sub(&self, which: usize) {
        let _ =
            self.bucket().0.counts[which].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    /// Both counters summed over the window.
    pub fn totals(&self) -> [u64; 2] {
        let slice = self.bucket().1;
        let oldest = slice.saturating_sub(BUCKETS as u64 - 1).max(1);
        let mut sum = [0; 2];
        for b in &self.buckets {
            if (oldest..=slice).contains(&b.slice.load(Ordering::Acquire)) {
                for (s, c) in sum.iter_mut().zip(&b.counts) {
                    *s += c.load(Ordering::Relaxed);
                }
            }
        }
        sum
    }

    /// Forget everything counted so far.
    pub fn clear(&self) {
        for b in &self.buckets {
            b.slice.store(0, Ordering::Release);
            for c in &b.counts {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}
