//! Sending a request upstream: once (a route without a retry policy, the common and cheap
//! case), or as a series of attempts under the route's retry policy.
//!
//! One attempt of the series, in order: take a body (a replay of the buffered one) → send
//! to the endpoint under the per-try deadline → classify the outcome → if retryable, ask in
//! turn the policy (attempts left, replayable body, `Retry-After` within its cap, time left
//! before the route deadline), the cluster's `max_retries` threshold and its retry budget →
//! back off → pick another endpoint than the one that failed.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::body::{Buffered, RequestBody};
use super::client::{self, H1Conn};
use super::deadline::{RequestTimer, Within};
use super::inject::RequestHook;
use super::proxy::{Pending, Progress};
use crate::cluster::outlier::Outcome;
use crate::cluster::{Cluster, Endpoint};
use crate::error::ProxyError;
use crate::resilience::retry::{ATTEMPT_COUNT_HEADER, Pause, RetryPolicy};
use crate::telemetry::tap;

/// An upstream response, and for HTTP/1 the connection to pool when its body ends.
pub(super) type Sent = (Response<Incoming>, Option<Box<H1Conn>>);

/// The single attempt of a route without a retry policy: the route timeout bounds it.
///
/// Not itself async: the request's future is `send_within`'s own, one layer (and one move
/// of the response) fewer on the path every request takes.
///
/// `timer` is the downstream connection's when its requests come one at a time.
pub(super) fn once<'a>(
    timeout: Duration,
    cluster: &'a Cluster,
    endpoint: Arc<Endpoint>,
    req: Request<RequestBody>,
    finish: &'a mut Progress,
    timer: Option<&'a RequestTimer>,
) -> impl Future<Output = Result<Sent, ProxyError>> + 'a {
    // Timed from the request's arrival, a few microseconds of routing before: one clock
    // read fewer on every request.
    let sent_at = finish.start;
    let (endpoint, tap) = finish.sending_to(endpoint);
    send_within(
        cluster,
        endpoint,
        req,
        sent_at,
        Limit::Route(timeout),
        tap,
        timer,
    )
}

/// How long an attempt has to answer with its response headers, and which timeout set it.
#[derive(Clone, Copy)]
enum Limit {
    /// What is left of the route's timeout: running out ends the request (`Timeout`).
    Route(Duration),
    /// A per-try timeout: running out ends this attempt (`PerTryTimeout`).
    PerTry(Duration),
}

/// One attempt at `endpoint`, sent at `sent_at`, given `limit` to answer with its response
/// headers: counted at the cluster and recorded for outlier detection.
async fn send_within(
    cluster: &Cluster,
    endpoint: &Arc<Endpoint>,
    req: Request<RequestBody>,
    sent_at: Instant,
    limit: Limit,
    tap: &mut tap::Record,
    timer: Option<&RequestTimer>,
) -> Result<Sent, ProxyError> {
    let (limit, per_try) = match limit {
        Limit::Route(d) => (d, false),
        Limit::PerTry(d) => (d, true),
    };
    let started = tap.attempt_start(sent_at);
    let mut connect = None;
    // The deadline from the clock read just taken: one read fewer than `timeout`.
    let deadline = sent_at + limit;
    let sending = client::send(cluster, endpoint, req, sent_at, &mut connect);
    let answered = match timer {
        Some(timer) => Within::new(timer, deadline, sending).await,
        None => tokio::time::timeout_at(deadline, sending).await.ok(),
    };
    let outcome = match answered {
        Some(outcome) => outcome,
        None if per_try => {
            cluster.stats.per_try_timeouts.inc();
            Err(ProxyError::PerTryTimeout(limit))
        }
        None => {
            cluster.stats.timeouts.inc();
            Err(ProxyError::Timeout(limit))
        }
    };
    if let Ok((resp, _)) = &outcome {
        cluster.stats.response(resp.status().as_u16());
    }
    cluster.stats.duration.observe(sent_at.elapsed());
    cluster.record_outcome(endpoint, outcome_of(&outcome));
    let status = outcome.as_ref().map(|(r, _)| r.status().as_u16());
    tap.attempt_end(endpoint.addr, started, connect, status);
    outcome
}

fn outcome_of(sent: &Result<Sent, ProxyError>) -> Option<Outcome> {
    match sent {
        Ok((resp, _)) => Some(Outcome::Response(resp.status().as_u16())),
        Err(e) => Outcome::of_error(e),
    }
}

/// What a retrying route needs besides the request.
pub(super) struct Retrying<'a> {
    pub policy: &'a RetryPolicy,
    /// The route timeout: the bound of all attempts and pauses together.
    pub timeout: Duration,
    pub cluster: &'a Cluster,
    /// The request's hash-policy key, so retries pick as the first attempt did.
    pub hash: Option<u64>,
    /// The route's per-attempt request editing, if any.
    pub hook: Option<&'a dyn RequestHook>,
}

/// Send under the route's retry policy; the last outcome is returned as it is when no
/// further retry is allowed.
pub(super) async fn with_retries(
    r: Retrying<'_>,
    mut endpoint: Arc<Endpoint>,
    parts: Parts,
    body: Pending,
    received: Option<Arc<AtomicU64>>,
    finish: &mut Progress,
) -> Result<Sent, ProxyError> {
    let Retrying {
        policy,
        timeout,
        cluster,
        hash,
        hook,
    } = r;
    let deadline = Instant::now() + timeout;
    cluster.budget.deposit();

    // The body: buffered for replay when it may be sent again, else streamed once. A
    // hooked route holds it whatever the method: to sign it, and to send it again after
    // the upstream refused the hook's credential. A body already read whole (to mirror it)
    // replays whatever its size.
    let method_allowed = policy.allows_method(&parts.method);
    let (replay, mut once, not_replayable) = match body {
        body if !method_allowed && hook.is_none() => {
            let body = match body {
                Pending::Stream(b) => RequestBody::new(b, received),
                Pending::Buffered(b) => b.into_body(),
                Pending::Started(b) => b,
            };
            (None, Some(body), Some("method"))
        }
        Pending::Buffered(b @ Buffered::Whole { .. }) => {
            (Some(b), None, (!method_allowed).then_some("method"))
        }
        Pending::Buffered(Buffered::TooLarge(b)) | Pending::Started(b) => {
            (None, Some(b), Some("body_too_large"))
        }
        Pending::Stream(body) => {
            let buffering = RequestBody::buffer(body, policy.buffer_limit, received);
            match tokio::time::timeout_at(deadline, buffering).await {
                Ok(Ok(b @ Buffered::Whole { .. })) => {
                    (Some(b), None, (!method_allowed).then_some("method"))
                }
                Ok(Ok(Buffered::TooLarge(b))) => (None, Some(b), Some("body_too_large")),
                Ok(Err(_)) => return Err(ProxyError::BadRequest("the request body ended early")),
                Err(_) => return Err(ProxyError::Timeout(timeout)),
            }
        }
    };

    let mut attempt: u32 = 1;
    // Held while a retry is in flight, for the cluster's max_retries threshold.
    let mut retry_permit = None;
    // Whether the one attempt after a refused credential was made.
    let mut reauthorized = false;
    loop {
        let body = match &replay {
            Some(b) => b.replay(),
            None => once.take(),
        }
        .ok_or(ProxyError::BadRequest("the request body was already sent"))?;
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.version_mut() = parts.version;
        *req.headers_mut() = parts.headers.clone();
        req.headers_mut()
            .insert(ATTEMPT_COUNT_HEADER.clone(), HeaderValue::from(attempt));
        if let Some(hook) = hook {
            let (mut head, body) = req.into_parts();
            let data = match &replay {
                Some(Buffered::Whole { data, .. }) => Some(data),
                _ => None,
            };
            match tokio::time::timeout_at(deadline, hook.prepare(&mut head, data)).await {
                Ok(prepared) => prepared?,
                Err(_) => return Err(ProxyError::Timeout(timeout)),
            }
            req = Request::from_parts(head, body);
        }

        finish.sending_to(endpoint.clone());
        let now = Instant::now();
        let Some(left) = deadline.checked_duration_since(now) else {
            cluster.stats.timeouts.inc();
            return Err(ProxyError::Timeout(timeout));
        };
        // A per-try timeout shorter than what is left sets this attempt's limit; otherwise
        // the attempt has the rest of the route timeout, and running out ends the request.
        let outcome = match policy.per_try_timeout {
            Some(t) if t < left => {
                send_within(
                    cluster,
                    &endpoint,
                    req,
                    now,
                    Limit::PerTry(t),
                    &mut finish.tap,
                    None,
                )
                .await
            }
            _ => match send_within(
                cluster,
                &endpoint,
                req,
                now,
                Limit::Route(left),
                &mut finish.tap,
                None,
            )
            .await
            {
                Err(ProxyError::Timeout(_)) => return Err(ProxyError::Timeout(timeout)),
                outcome => outcome,
            },
        };
        drop(retry_permit.take());

        if let (Some(hook), Ok((resp, _))) = (hook, &outcome)
            && hook.rejected(resp.status())
            && !reauthorized
            && replay.is_some()
        {
            reauthorized = true;
            tracing::debug!(cluster = %cluster.name, attempt, status = resp.status().as_u16(), "credential refused; sending again with a fresh one");
            drop(outcome);
            attempt += 1;
            continue;
        }

        let reason = match &outcome {
            Ok((resp, _)) => policy.retry_response(resp.status(), resp.headers()),
            Err(e) => e.upstream_failure().and_then(|f| policy.retry_failure(f)),
        };
        let Some(reason) = reason else {
            return outcome;
        };

        // Retryable: does everything allow one more attempt?
        let skip = |why: &'static str| {
            cluster.stats.retry_skipped(why);
            tracing::debug!(cluster = %cluster.name, attempt, reason = reason.as_str(), why, "not retrying");
        };
        if let Some(why) = not_replayable {
            skip(why);
            return outcome;
        }
        if attempt > policy.num_retries {
            skip("num_retries");
            return outcome;
        }
        let response = outcome
            .as_ref()
            .ok()
            .map(|(r, _)| (r.status(), r.headers()));
        let wait = match policy.pause(attempt, response) {
            Pause::Wait(d) => d,
            Pause::TooLong(_) => {
                skip("retry_after_too_long");
                return outcome;
            }
        };
        if Instant::now() + wait >= deadline {
            skip("deadline");
            return outcome;
        }
        if let Some(limits) = &cluster.limits {
            match limits.retries.acquire(&cluster.name) {
                Ok(p) => retry_permit = Some(p),
                Err(_) => {
                    skip("max_retries");
                    return outcome;
                }
            }
        }
        if !cluster.budget.try_withdraw() {
            cluster.stats.retry_budget_exhausted.inc();
            tracing::debug!(cluster = %cluster.name, attempt, reason = reason.as_str(), "retry budget spent");
            return outcome;
        }
        cluster.stats.retry(reason);
        finish.tap.retried(reason.as_str());
        tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, attempt, reason = reason.as_str(), ?wait, "retrying");
        // A retried response's connection is closed with it: its body was not read.
        drop(outcome);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        endpoint = cluster
            .pick_other(hash, &endpoint)
            .ok_or_else(|| ProxyError::NoHealthyUpstream(cluster.name.to_string()))?;
        attempt += 1;
    }
}
