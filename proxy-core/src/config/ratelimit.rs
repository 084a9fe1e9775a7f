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
    /// `redis://[user:password@]host:port[/db]`. A password never leaves the process:
    /// `/config_dump` and error messages show it as `<redacted>`.
    #[serde(serialize_with = "serialize_redacted_url")]
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

/// The URL with the password of its user info, if any, replaced by `<redacted>`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:<redacted>@{host}{}", &rest[host_start..])
        }
        None => url.to_owned(),
    }
}

fn serialize_redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted_url(url))
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
                        redacted_url(&s.redis)
                    ),
                );
            }
        }
        _ => p.at(
            "rate_limit_service.redis",
            format!("{:?} is not a redis:// URL", redacted_url(&s.redis)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_are_redacted() {
        assert_eq!(
            redacted_url("redis://:s3cret@127.0.0.1:6379/2"),
            "redis://:<redacted>@127.0.0.1:6379/2"
        );
        assert_eq!(
            redacted_url("redis://app:s3cret@redis:6379"),
            "redis://app:<redacted>@redis:6379"
        );
        assert_eq!(
            redacted_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let svc = RateLimitService {
            redis: "redis://:s3cret@127.0.0.1:6379".into(),
            timeout: default_service_timeout(),
            failure_mode: FailureMode::Allow,
            key_prefix: default_key_prefix(),
        };
        let dumped = serde_json::to_string(&svc).unwrap();
        assert!(!dumped.contains("s3cret"), "{dumped}");
        let mut p = Problems::default();
        validate_service(
            &RateLimitService {
                redis: "redis://:s3cret@".into(),
                ..svc
            },
            &mut p,
        );
        assert!(!format!("{:?}", p.0).contains("s3cret"), "{:?}", p.0);
    }
}
