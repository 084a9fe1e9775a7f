//! Rate limits: the per-route `rate_limits` rules and the top-level `rate_limit_service`
//! (the Redis that global rules count in).

use serde::{Deserialize, Serialize};

use super::Problems;
use super::units::Dur;

/// One rule of a route: at most `requests` per `per` for each value of `key`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Names the rule in metrics and in Redis keys.
    pub name: String,
    /// What is counted separately: absent counts the whole route as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RateLimitKey>,
    pub requests: u64,
    pub per: Dur,
    /// Local rules: how many requests may come at once after a quiet period (the bucket size).
    /// Defaults to `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Count in the `rate_limit_service` Redis, shared by every replica, instead of in this
    /// process.
    #[serde(default)]
    pub global: bool,
}

/// The descriptor a rule counts by. Exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitKey {
    /// The value of this request header; a request without it is not limited by the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote_address: bool,
    /// The client's SPIFFE ID from its mTLS certificate; a plaintext request is not limited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_identity: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitService {
    /// `redis://host:port[/db]`.
    pub redis: String,
    /// Time allowed for one Redis round trip; past it the failure mode applies.
    #[serde(default = "default_service_timeout")]
    pub timeout: Dur,
    /// When Redis cannot answer: `allow` the request (fail open) or `deny` it (fail closed,
    /// 503 `rate_limit_unavailable`).
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Prefix of every key the proxy writes, so several services can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_service_timeout() -> Dur {
    Dur::millis(50)
}
fn default_key_prefix() -> String {
    "sidecar".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    #[default]
    Allow,
    Deny,
}

pub(super) fn validate_service(s: &RateLimitService, p: &mut Problems) {
    match s.redis.strip_prefix("redis://") {
        Some(rest) if !rest.is_empty() => {
            let hostport = rest.split('/').next().unwrap_or_default();
            let hostport = hostport.rsplit('@').next().unwrap_or_default();
            if super::parse_host_port(hostport).is_err() {
                p.at(
                    "rate_limit_service.redis",
                    format!(
                        "{:?} needs a host and port, like redis://127.0.0.1:6379",
                        s.redis
                    ),
                );
            }
        }
        _ => p.at(
            "rate_limit_service.redis",
            format!("{:?} is not a redis:// URL", s.redis),
        ),
    }
    if s.timeout.get().is_zero() {
        p.at("rate_limit_service.timeout", "must be more than 0");
    }
}

pub(super) fn validate_rule(p: &mut Problems, path: &str, r: &RateLimit) {
    if r.requests == 0 {
        p.at(format!("{path}.requests"), "must be at least 1");
    }
    if r.per.get().is_zero() {
        p.at(format!("{path}.per"), "must be more than 0");
    }
    if r.burst == Some(0) {
        p.at(format!("{path}.burst"), "must be at least 1");
    }
    if r.global && r.burst.is_some() {
        p.at(
            format!("{path}.burst"),
            "applies to local rules only (a global rule counts fixed windows of `per`)",
        );
    }
    if r.name.is_empty()
        || !r
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        p.at(
            format!("{path}.name"),
            "letters, digits, '-', '_' and '.' only, not empty",
        );
    }
    if let Some(k) = &r.key {
        let set = usize::from(k.header.is_some())
            + usize::from(k.remote_address)
            + usize::from(k.client_identity);
        if set != 1 {
            p.at(
                format!("{path}.key"),
                "set exactly one of header, remote_address, client_identity",
            );
        }
        if let Some(h) = &k.header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            p.at(
                format!("{path}.key.header"),
                format!("{h:?} is not a valid header name"),
            );
        }
    }
}

/// Global rules need the service: checked over the whole document, once it is parsed.
pub(super) fn check_global_rules(cfg: &super::Config, listener_index: &[usize], p: &mut Problems) {
    if cfg.rate_limit_service.is_some() {
        return;
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        let li = listener_index.get(i).copied().unwrap_or(i);
        for (ri, r) in l.routes.iter().enumerate() {
            for (k, rl) in r.rate_limits.iter().enumerate() {
                if rl.global {
                    p.at(
                        format!("listeners[{li}].routes[{ri}].rate_limits[{k}].global"),
                        "needs a top-level rate_limit_service (the Redis the replicas share)",
                    );
                }
            }
        }
    }
}
