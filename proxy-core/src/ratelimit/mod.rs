//! Rate limits per route: each rule counts requests per value of its key (a header, the
//! client address, the client's mesh identity, or the whole route), either in this process
//! (`gcra`, a token bucket per key) or in Redis, shared by every replica (`redis_window`).
//! A request must be allowed by every rule of its route.
//!
//! A request over a limit gets 429 with `Retry-After` and the `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` headers (the IETF draft's), and the same three
//! headers ride on every allowed response of a limited route, from its tightest rule.
//!
//! Besides these policing rules, `local` is a shaping bucket in front of a route
//! (`local_rate_limit`): a request over quota waits up to `max_wait` for a token before it is
//! refused, which is what a client of a rate-limited API (the ambassador) wants.

pub mod gcra;
pub mod local;
pub mod redis_window;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;

use crate::config;
use crate::telemetry::metrics::Metrics;
use gcra::Gcra;
use redis_window::{Answer, RedisLimiter};

pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Where a rule stands for one key after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Until the next request is allowed (when limited) or the quota is whole again.
    pub reset: Duration,
}

impl Quota {
    /// Add the `RateLimit-*` headers; the reset in whole seconds, rounded up.
    pub fn write(&self, h: &mut HeaderMap) {
        h.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(self.limit));
        h.insert(
            RATELIMIT_REMAINING.clone(),
            HeaderValue::from(self.remaining),
        );
        h.insert(
            RATELIMIT_RESET.clone(),
            HeaderValue::from(whole_seconds(self.reset)),
        );
    }
}

/// Whole seconds, rounded up, at least 1: a client told 0 would come back at once.
pub fn whole_seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

enum KeySource {
    Route,
    Header(HeaderName),
    RemoteAddress,
    ClientIdentity,
}

enum Counting {
    Local(Gcra),
    Global { requests: u64, per: Duration },
}

struct Rule {
    name: Arc<str>,
    /// `listener:route:rule:`, the start of this rule's Redis keys.
    key_prefix: Vec<u8>,
    source: KeySource,
    counting: Counting,
    allowed: Counter,
    limited: Counter,
    unavailable: Counter,
}

/// What the rules of a route decided for one request.
pub enum Verdict {
    /// Allowed; the tightest quota among the rules that counted it, if any did.
    Allowed(Option<Quota>),
    Limited {
        rule: Arc<str>,
        quota: Quota,
        global: bool,
    },
    /// A global rule could not reach Redis and its service fails closed.
    Unavailable { rule: Arc<str> },
}

/// Who is asking, for the keys that need it.
pub struct Client<'a> {
    pub address: IpAddr,
    pub identity: Option<&'a str>,
}

/// The compiled rules of one route.
pub struct RouteLimits {
    rules: Vec<Rule>,
}

impl RouteLimits {
    pub fn build(
        listener: &str,
        route: &str,
        rules: &[config::RateLimit],
        metrics: &Metrics,
    ) -> RouteLimits {
        let rules = rules
            .iter()
            .map(|r| {
                let source = match &r.key {
                    None => KeySource::Route,
                    Some(k) if k.remote_address => KeySource::RemoteAddress,
                    Some(k) if k.client_identity => KeySource::ClientIdentity,
                    Some(k) => match k
                        .header
                        .as_deref()
                        .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                    {
                        Some(h) => KeySource::Header(h),
                        None => KeySource::Route,
                    },
                };
                let counting = if r.global {
                    Counting::Global {
                        requests: r.requests,
                        per: r.per.get(),
                    }
                } else {
                    Counting::Local(Gcra::new(
                        r.requests,
                        r.per.get(),
                        r.burst.unwrap_or(r.requests),
                    ))
                };
                let (allowed, limited, unavailable) =
                    metrics.rate_limit_stats(listener, route, &r.name);
                Rule {
                    name: r.name.as_str().into(),
                    key_prefix: format!("{listener}:{route}:{}:", r.name).into_bytes(),
                    source,
                    counting,
                    allowed,
                    limited,
                    unavailable,
                }
            })
            .collect();
        RouteLimits { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Count the request against every rule whose key it has. Stops at the first rule that
    /// limits it (later rules do not count a refused request).
    pub async fn check(
        &self,
        headers: &HeaderMap,
        client: &Client<'_>,
        redis: Option<&RedisLimiter>,
    ) -> Verdict {
        let mut tightest: Option<Quota> = None;
        let mut address = None;
        for rule in &self.rules {
            let key: &[u8] = match &rule.source {
                KeySource::Route => b"",
                KeySource::Header(h) => match headers.get(h) {
                    Some(v) => v.as_bytes(),
                    None => continue,
                },
                KeySource::RemoteAddress => address
                    .get_or_insert_with(|| client.address.to_string())
                    .as_bytes(),
                KeySource::ClientIdentity => match client.identity {
                    Some(id) => id.as_bytes(),
                    None => continue,
                },
            };
            let outcome = match &rule.counting {
                Counting::Local(g) => g.check(key).map_err(|q| (q, false)),
                Counting::Global { requests, per } => {
                    let Some(redis) = redis else {
                        continue;
                    };
                    let mut full = Vec::with_capacity(rule.key_prefix.len() + key.len());
                    full.extend_from_slice(&rule.key_prefix);
                    full.extend_from_slice(key);
                    match redis.check(&full, *requests, *per).await {
                        Answer::Allowed(q) => Ok(q),
                        Answer::Limited(q) => Err((q, true)),
                        Answer::Unavailable => {
                            rule.unavailable.inc();
                            if redis.fail_open() {
                                continue;
                            }
                            return Verdict::Unavailable {
                                rule: rule.name.clone(),
                            };
                        }
                    }
                }
            };
            match outcome {
                Ok(q) => {
                    rule.allowed.inc();
                    if tightest.is_none_or(|t| q.remaining < t.remaining) {
                        tightest = Some(q);
                    }
                }
                Err((quota, global)) => {
                    rule.limited.inc();
                    return Verdict::Limited {
                        rule: rule.name.clone(),
                        quota,
                        global,
                    };
                }
            }
        }
        Verdict::Allowed(tightest)
    }
}
