//! Per-attempt request editing: the hook a program puts on a route to inject credentials or
//! sign requests (the ambassador does; the sidecar never sets one).
//!
//! The hook runs on each attempt's request right before it is sent, after every other
//! header edit, so a signature covers exactly what goes out, and a retried attempt is signed
//! again. When the upstream refuses a request the hook authorized (a 401 for an expired
//! token), the hook may drop what it sent and ask for one more attempt, which is made when
//! the body can be replayed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;

use crate::config;
use crate::error::ProxyError;
use crate::resilience::retry::RetryPolicy;

/// What `RequestHook::prepare` returns.
pub type PrepareFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProxyError>> + Send + 'a>>;

/// Edits a route's requests, attempt by attempt.
pub trait RequestHook: Send + Sync {
    /// Edit one attempt's request head. `body` is the whole body when it is held for
    /// replay (signers hash it), `None` when it streams.
    fn prepare<'a>(&'a self, req: &'a mut Parts, body: Option<&'a Bytes>) -> PrepareFuture<'a>;

    /// The upstream answered `status` to a request this hook prepared. `true`: what the hook
    /// sent was refused and is dropped; one more attempt (prepared afresh) is wanted.
    fn rejected(&self, status: StatusCode) -> bool {
        let _ = status;
        false
    }
}

/// Gives the routes of a snapshot their hooks, by listener and route name.
pub trait RouteHooks: Send + Sync {
    fn hook(&self, listener: &str, route: &str) -> Option<Arc<dyn RequestHook>>;
}

/// The policy of a hooked route without a retry policy: no retries, but the body is held
/// (up to the default buffer limit) so it can be signed and sent again after a refusal.
pub(super) fn no_retries() -> &'static RetryPolicy {
    static POLICY: OnceLock<RetryPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let cfg: config::RetryPolicy = serde_norway::from_str("{num_retries: 0, retry_on: []}")
            .expect("a fixed, valid policy");
        RetryPolicy::new(&cfg)
    })
}
