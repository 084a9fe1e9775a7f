//! Surviving failing upstreams: retry policy and back-off (`retry`), the per-cluster retry
//! budget (`budget`), the per-cluster concurrency thresholds (`limits`) and the per-cluster
//! error-rate breaker (`breaker`), over lock-free sliding counts (`window`).
//!
//! Everything here is decided from atomics and the request's own state; the loop that sends
//! attempts and consults these is `http::attempts`, and endpoint choice (outlier state) is
//! `cluster`'s.

pub mod breaker;
pub mod budget;
pub mod limits;
pub mod retry;
pub mod window;
