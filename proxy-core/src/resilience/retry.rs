//! A route's retry policy, compiled: which outcomes are retried, the back-off before each
//! retry (exponential with full jitter), and the server's own `Retry-After`.
//!
//! The decisions are pure functions of the outcome so they are tested without a network;
//! the loop that acts on them is `http::attempts`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, StatusCode, header};

use crate::config::{self, RetryOn};
use crate::error::UpstreamFailure;
use crate::route::HeaderMatcher;

/// Sent upstream on every attempt of a route with a retry policy: `1` for the first, `2` for
/// the first retry, so an upstream can tell a retry from a new request.
pub static ATTEMPT_COUNT_HEADER: HeaderName = HeaderName::from_static("x-sidecar-attempt-count");

/// A set of [`RetryOn`] conditions as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Conditions(u8);

impl Conditions {
    fn has(self, c: RetryOn) -> bool {
        self.0 & (1 << c.index()) != 0
    }

    /// The first of `candidates` (most specific first) in the set.
    fn first(self, candidates: &[RetryOn]) -> Option<RetryOn> {
        candidates.iter().copied().find(|c| self.has(*c))
    }
}

/// What the back-off or the server asks to wait before the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    Wait(Duration),
    /// The server's `Retry-After` is longer than `max_retry_after`: do not retry.
    TooLong(Duration),
}

pub struct RetryPolicy {
    pub num_retries: u32,
    on: Conditions,
    status_codes: Vec<u16>,
    headers: Vec<HeaderMatcher>,
    pub per_try_timeout: Option<Duration>,
    base_interval: Duration,
    max_interval: Duration,
    max_retry_after: Duration,
    retry_non_idempotent: bool,
    pub buffer_limit: usize,
}

impl RetryPolicy {
    /// Compile a validated policy.
    pub fn new(cfg: &config::RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            num_retries: cfg.num_retries,
            on: Conditions(
                cfg.retry_on
                    .iter()
                    .fold(0, |bits, c| bits | (1 << c.index())),
            ),
            status_codes: cfg.retriable_status_codes.clone(),
            headers: cfg
                .retriable_headers
                .iter()
                .filter_map(HeaderMatcher::build)
                .collect(),
            per_try_timeout: cfg.per_try_timeout.map(config::Dur::get),
            base_interval: cfg.retry_back_off.base_interval.get(),
            max_interval: cfg.retry_back_off.max(),
            max_retry_after: cfg.max_retry_after.get(),
            retry_non_idempotent: cfg.retry_non_idempotent,
            buffer_limit: cfg.per_request_buffer_limit.as_usize(),
        }
    }

    /// Whether requests with this method may be sent more than once.
    pub fn allows_method(&self, m: &Method) -> bool {
        self.retry_non_idempotent
            || matches!(
                *m,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            )
    }

    /// The condition that makes a failed attempt retryable, if any.
    pub fn retry_failure(&self, f: UpstreamFailure) -> Option<RetryOn> {
        use RetryOn::*;
        let candidates: &[RetryOn] = match f {
            UpstreamFailure::ConnectFailure => &[ConnectFailure, GatewayError, FiveXx],
            UpstreamFailure::Reset => &[Reset, GatewayError, FiveXx],
            UpstreamFailure::RefusedStream => &[RefusedStream, GatewayError, FiveXx],
            // A read timeout is a reset in Envoy's terms: no answer came back.
            UpstreamFailure::PerTryTimeout => &[Reset, GatewayError, FiveXx],
        };
        self.on.first(candidates)
    }

    /// The condition that makes a response retryable, if any.
    pub fn retry_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<RetryOn> {
        let code = status.as_u16();
        if self.on.has(RetryOn::RetriableStatusCodes) && self.status_codes.contains(&code) {
            return Some(RetryOn::RetriableStatusCodes);
        }
        if self.on.has(RetryOn::RetriableHeaders) && self.headers.iter().any(|h| h.matches(headers))
        {
            return Some(RetryOn::RetriableHeaders);
        }
        if self.on.has(RetryOn::GatewayError) && matches!(code, 502..=504) {
            return Some(RetryOn::GatewayError);
        }
        if self.on.has(RetryOn::FiveXx) && status.is_server_error() {
            return Some(RetryOn::FiveXx);
        }
        None
    }

    /// How long to wait before retry number `retry` (1 for the first retry): the server's
    /// `Retry-After` on a 429 or 503 when it sent one, else the back-off.
    pub fn pause(&self, retry: u32, response: Option<(StatusCode, &HeaderMap)>) -> Pause {
        if let Some((status, headers)) = response
            && let Some(after) = retry_after(status, headers, SystemTime::now())
        {
            return if after <= self.max_retry_after {
                Pause::Wait(after)
            } else {
                Pause::TooLong(after)
            };
        }
        Pause::Wait(backoff(
            self.base_interval,
            self.max_interval,
            retry,
            fastrand::f64(),
        ))
    }
}

/// Full jitter (AWS's name): a uniformly random wait up to `base * 2^(retry-1)`, capped at
/// `max`. Spreading retries over the whole interval is what keeps clients that failed
/// together from retrying together. `unit` is a random number in `[0, 1)`.
pub fn backoff(base: Duration, max: Duration, retry: u32, unit: f64) -> Duration {
    let doubling = 1u32 << retry.saturating_sub(1).min(20);
    let ceiling = base.saturating_mul(doubling).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// The `Retry-After` of a 429 or 503 response, as a delay from `now`: delta-seconds or an
/// HTTP-date (a date in the past is no delay).
pub fn retry_after(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> RetryPolicy {
        RetryPolicy::new(&serde_norway::from_str(yaml).unwrap())
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let (base, max) = (Duration::from_millis(25), Duration::from_millis(250));
        assert_eq!(backoff(base, max, 1, 0.999_999).as_millis(), 24);
        assert_eq!(
            backoff(base, max, 1, 0.5),
            Duration::from_micros(12_500),
            "half of the first ceiling"
        );
        assert_eq!(backoff(base, max, 2, 0.5), Duration::from_millis(25));
        assert_eq!(backoff(base, max, 3, 0.5), Duration::from_millis(50));
        assert_eq!(backoff(base, max, 4, 0.5), Duration::from_millis(100));
        assert_eq!(
            backoff(base, max, 5, 0.5),
            Duration::from_millis(125),
            "capped"
        );
        assert_eq!(backoff(base, max, 40, 0.5), Duration::from_millis(125));
        assert_eq!(
            backoff(base, max, 3, 0.0),
            Duration::ZERO,
            "full jitter starts at 0"
        );
    }

    #[test]
    fn backoff_spreads_uniformly() {
        let p = policy("{retry_back_off: {base_interval: 100ms, max_interval: 100ms}}");
        let waits: Vec<Duration> = (0..2000)
            .map(|_| match p.pause(3, None) {
                Pause::Wait(d) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(waits.iter().all(|d| *d <= Duration::from_millis(100)));
        let mean = waits.iter().sum::<Duration>() / 2000;
        assert!(
            (Duration::from_millis(45)..Duration::from_millis(55)).contains(&mean),
            "{mean:?}"
        );
    }

    #[test]
    fn conditions_map_failures_and_responses() {
        let p = policy("{}");
        assert_eq!(
            p.retry_failure(UpstreamFailure::ConnectFailure),
            Some(RetryOn::ConnectFailure)
        );
        assert_eq!(
            p.retry_failure(UpstreamFailure::PerTryTimeout),
            Some(RetryOn::Reset)
        );
        assert_eq!(
            p.retry_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()),
            None,
            "the default conditions do not retry responses"
        );

        let p = policy("{retry_on: [gateway-error]}");
        assert_eq!(
            p.retry_failure(UpstreamFailure::Reset),
            Some(RetryOn::GatewayError)
        );
        assert_eq!(
            p.retry_response(StatusCode::BAD_GATEWAY, &HeaderMap::new()),
            Some(RetryOn::GatewayError)
        );
        assert_eq!(
            p.retry_response(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new()),
            None
        );

        let p = policy(
            "{retry_on: [5xx, retriable-status-codes, retriable-headers], retriable_status_codes: [429], retriable_headers: [{name: x-retry, exact: please}]}",
        );
        assert_eq!(
            p.retry_response(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new()),
            Some(RetryOn::FiveXx)
        );
        assert_eq!(
            p.retry_response(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()),
            Some(RetryOn::RetriableStatusCodes)
        );
        let mut h = HeaderMap::new();
        h.insert("x-retry", "please".parse().unwrap());
        assert_eq!(
            p.retry_response(StatusCode::OK, &h),
            Some(RetryOn::RetriableHeaders)
        );
        assert_eq!(p.retry_response(StatusCode::OK, &HeaderMap::new()), None);
    }

    #[test]
    fn only_idempotent_methods_unless_opted_in() {
        let p = policy("{}");
        assert!(p.allows_method(&Method::GET));
        assert!(p.allows_method(&Method::PUT));
        assert!(!p.allows_method(&Method::POST));
        assert!(!p.allows_method(&Method::PATCH));
        assert!(policy("{retry_non_idempotent: true}").allows_method(&Method::POST));
    }

    #[test]
    fn retry_after_in_seconds_and_dates_within_the_cap() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h, now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(StatusCode::INTERNAL_SERVER_ERROR, &h, now),
            None,
            "only 429 and 503 carry a meaningful Retry-After"
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(3));
        h.insert(header::RETRY_AFTER, date.parse().unwrap());
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::from_secs(3))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(header::RETRY_AFTER, past.parse().unwrap());
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h, now),
            Some(Duration::ZERO)
        );

        let p = policy("{max_retry_after: 1s}");
        h.insert(header::RETRY_AFTER, "1".parse().unwrap());
        assert_eq!(
            p.pause(1, Some((StatusCode::SERVICE_UNAVAILABLE, &h))),
            Pause::Wait(Duration::from_secs(1))
        );
        h.insert(header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(
            p.pause(1, Some((StatusCode::SERVICE_UNAVAILABLE, &h))),
            Pause::TooLong(Duration::from_secs(120))
        );
    }
}
