//! Routes compiled from config: matchers ready to run (regexes compiled, header names
//! parsed) and targets holding their clusters and metric handles directly.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use regex::Regex;

use crate::cluster::Cluster;
use crate::config;
use crate::http::fault::FaultRule;
use crate::http::inject::RequestHook;
use crate::http::mirror::Mirror;
use crate::ratelimit::RouteLimits;
use crate::ratelimit::local::TokenBucket;
use crate::resilience::retry::RetryPolicy;
use crate::telemetry::metrics::{Metrics, RouteStats};

enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
    /// `api.*` stored as `api.`.
    Prefix(String),
}

impl HostMatch {
    fn new(p: &str) -> HostMatch {
        let p = p.to_ascii_lowercase();
        if p == "*" {
            HostMatch::Any
        } else if let Some(s) = p.strip_prefix('*') {
            HostMatch::Suffix(s.to_owned())
        } else if let Some(s) = p.strip_suffix('*') {
            HostMatch::Prefix(s.to_owned())
        } else {
            HostMatch::Exact(p)
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
            HostMatch::Prefix(p) => {
                host.len() > p.len()
                    && host.is_char_boundary(p.len())
                    && host[..p.len()].eq_ignore_ascii_case(p)
            }
        }
    }
}

enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

enum ValueMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present(bool),
}

/// One header condition, compiled. Routes match requests with it; retry policies match
/// responses (`retriable_headers`).
pub struct HeaderMatcher {
    name: HeaderName,
    value: ValueMatch,
    invert: bool,
}

impl HeaderMatcher {
    /// Compile a validated condition.
    pub fn build(h: &config::HeaderMatch) -> Option<HeaderMatcher> {
        let value = if let Some(e) = &h.exact {
            ValueMatch::Exact(e.clone())
        } else if let Some(p) = &h.prefix {
            ValueMatch::Prefix(p.clone())
        } else if let Some(r) = &h.regex {
            ValueMatch::Regex(anchored(r)?)
        } else {
            ValueMatch::Present(h.present.unwrap_or(true))
        };
        Some(HeaderMatcher {
            name: HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            value,
            invert: h.invert,
        })
    }

    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let v = headers.get(&self.name);
        let hit = match (&self.value, v) {
            (ValueMatch::Present(p), v) => *p == v.is_some(),
            (_, None) => false,
            (ValueMatch::Exact(e), Some(v)) => v.as_bytes() == e.as_bytes(),
            (ValueMatch::Prefix(p), Some(v)) => v.as_bytes().starts_with(p.as_bytes()),
            (ValueMatch::Regex(r), Some(v)) => v.to_str().is_ok_and(|s| r.is_match(s)),
        };
        hit != self.invert
    }
}

/// A header to add: name, value, and whether to append beside existing values.
pub type HeaderAdd = (HeaderName, HeaderValue, bool);

/// One cluster a route sends to, with the route's metric handles for it.
pub struct Target {
    pub cluster: Arc<Cluster>,
    pub weight: u32,
    pub stats: Arc<RouteStats>,
}

pub struct Route {
    pub name: Arc<str>,
    hosts: Vec<HostMatch>,
    path: PathMatch,
    headers: Vec<HeaderMatcher>,
    targets: Vec<Target>,
    cumulative: Vec<u64>,
    pub timeout: Duration,
    /// Boxed: most routes have none, and the route list is walked per request.
    pub retry: Option<Box<RetryPolicy>>,
    pub request_headers_to_add: Vec<HeaderAdd>,
    pub request_headers_to_remove: Vec<HeaderName>,
    pub response_headers_to_add: Vec<HeaderAdd>,
    pub response_headers_to_remove: Vec<HeaderName>,
    /// Boxed: most routes inject no faults.
    pub fault: Option<Box<FaultRule>>,
    pub mirrors: Vec<Mirror>,
    /// With weighted clusters: the header whose value keeps a client on one of them.
    sticky: Option<HeaderName>,
    pub rate_limits: RouteLimits,
    /// `prefix_rewrite` with the prefix it replaces; `host_rewrite_literal`.
    rewrite: Option<Box<Rewrite>>,
    /// The local rate limit, when configured.
    pub rate_limit: Option<TokenBucket>,
    /// Per-attempt request editing set by the program (never from config).
    pub hook: Option<Arc<dyn RequestHook>>,
}

struct Rewrite {
    prefix: Option<(String, String)>,
    host: Option<Authority>,
}

fn header_adds(list: &[config::HeaderValueOption]) -> Vec<HeaderAdd> {
    list.iter()
        .filter_map(|h| {
            Some((
                HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                HeaderValue::from_str(&h.value).ok()?,
                h.append,
            ))
        })
        .collect()
}

fn header_names(list: &[String]) -> Vec<HeaderName> {
    list.iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect()
}

/// Regexes in config must match the whole value, as Envoy's `safe_regex` does.
fn anchored(re: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{re})$")).ok()
}

impl Route {
    /// Compile a validated route. `clusters` resolves names; validation guaranteed they exist.
    pub fn build(
        listener: &str,
        cfg: &config::Route,
        cluster: impl Fn(&str) -> Option<Arc<Cluster>>,
        metrics: &Metrics,
    ) -> Route {
        let m = &cfg.matcher;
        let path = if let Some(p) = &m.prefix {
            PathMatch::Prefix(p.clone())
        } else if let Some(p) = &m.path {
            PathMatch::Exact(p.clone())
        } else if let Some(r) = m.regex.as_deref().and_then(anchored) {
            PathMatch::Regex(r)
        } else {
            PathMatch::Any
        };
        let headers = m.headers.iter().filter_map(HeaderMatcher::build).collect();
        let wanted: Vec<(&str, u32)> = match &cfg.cluster {
            Some(c) => vec![(c.as_str(), 1)],
            None => cfg
                .weighted_clusters
                .iter()
                .map(|w| (w.name.as_str(), w.weight))
                .collect(),
        };
        let targets: Vec<Target> = wanted
            .into_iter()
            .filter_map(|(name, weight)| {
                Some(Target {
                    cluster: cluster(name)?,
                    weight,
                    stats: Arc::new(metrics.route(listener, &cfg.name, name)),
                })
            })
            .collect();
        let cumulative =
            crate::cluster::lb::cumulative(&targets.iter().map(|t| t.weight).collect::<Vec<_>>());
        Route {
            name: cfg.name.as_str().into(),
            hosts: m.hosts.iter().map(|h| HostMatch::new(h)).collect(),
            path,
            headers,
            targets,
            cumulative,
            timeout: cfg.timeout.get(),
            retry: cfg
                .retry_policy
                .as_ref()
                .map(|r| Box::new(RetryPolicy::new(r))),
            request_headers_to_add: header_adds(&cfg.request_headers_to_add),
            request_headers_to_remove: header_names(&cfg.request_headers_to_remove),
            response_headers_to_add: header_adds(&cfg.response_headers_to_add),
            response_headers_to_remove: header_names(&cfg.response_headers_to_remove),
            fault: cfg
                .fault
                .as_ref()
                .map(|f| Box::new(FaultRule::build(listener, &cfg.name, f, metrics))),
            mirrors: cfg
                .request_mirror_policies
                .iter()
                .filter_map(|m| {
                    Some(Mirror::build(
                        listener,
                        &cfg.name,
                        m,
                        cluster(&m.cluster)?,
                        metrics,
                    ))
                })
                .collect(),
            sticky: cfg
                .hash_policy
                .as_ref()
                .and_then(|h| HeaderName::from_bytes(h.header.as_bytes()).ok()),
            rate_limits: RouteLimits::build(listener, &cfg.name, &cfg.rate_limits, metrics),
            rewrite: Rewrite::build(cfg).map(Box::new),
            rate_limit: cfg
                .local_rate_limit
                .as_ref()
                .map(|rl| TokenBucket::new(rl, metrics.local_rate_limit(listener, &cfg.name))),
            hook: None,
        }
    }

    /// Whether the route rewrites the path or the host.
    pub fn rewrites(&self) -> bool {
        self.rewrite.is_some()
    }

    /// Apply `prefix_rewrite` and `host_rewrite_literal` to the request going upstream.
    pub fn rewrite_target(&self, parts: &mut http::request::Parts, authority: &mut Authority) {
        let Some(rw) = &self.rewrite else {
            return;
        };
        if let Some((from, to)) = &rw.prefix
            && let Some(rest) = parts.uri.path().strip_prefix(from.as_str())
        {
            let mut pq = String::with_capacity(to.len() + rest.len() + 1);
            pq.push_str(to);
            // "/stripe" + "" and "/" + "/x" both become well-formed paths.
            if !pq.ends_with('/') && !rest.is_empty() && !rest.starts_with('/') {
                pq.push('/');
            }
            pq.push_str(if pq.ends_with('/') {
                rest.trim_start_matches('/')
            } else {
                rest
            });
            if pq.is_empty() {
                pq.push('/');
            }
            if let Some(q) = parts.uri.query() {
                pq.push('?');
                pq.push_str(q);
            }
            let mut up = parts.uri.clone().into_parts();
            if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
                up.path_and_query = Some(pq);
                if let Ok(uri) = Uri::from_parts(up) {
                    parts.uri = uri;
                }
            }
        }
        if let Some(host) = &rw.host {
            *authority = host.clone();
            if let Ok(v) = HeaderValue::from_str(host.as_str()) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
    }
}

impl Rewrite {
    fn build(cfg: &config::Route) -> Option<Rewrite> {
        let prefix = cfg
            .prefix_rewrite
            .clone()
            .and_then(|to| Some((cfg.matcher.prefix.clone()?, to)));
        let host = cfg
            .host_rewrite_literal
            .as_deref()
            .and_then(|h| Authority::try_from(h).ok());
        (prefix.is_some() || host.is_some()).then_some(Rewrite { prefix, host })
    }
}

impl Route {
    /// `host` is the request's host without port.
    pub fn matches(&self, host: &str, path: &str, headers: &HeaderMap) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host)))
            && match &self.path {
                PathMatch::Any => true,
                PathMatch::Prefix(p) => path.starts_with(p.as_str()),
                PathMatch::Exact(p) => path == p,
                PathMatch::Regex(r) => r.is_match(path),
            }
            && self.headers.iter().all(|h| h.matches(headers))
    }

    /// Could a request for `host` (without port) match, whatever its path and headers?
    /// Intercepted HTTP/1 connections are sent to the routes when one could.
    pub fn matches_host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host))
    }

    /// The target for one request: the only one, or one drawn by weight. With a sticky
    /// header, the draw is the header value's hash, so one client stays on one target (as
    /// long as the weights stay); a request without the header is drawn at random.
    pub fn target(&self, headers: &HeaderMap) -> Option<&Target> {
        match self.targets.len() {
            0 => None,
            1 => self.targets.first(),
            _ => {
                let sticky = self
                    .sticky
                    .as_ref()
                    .and_then(|h| headers.get(h))
                    .map(|v| crate::cluster::lb::hash_key(v.as_bytes()));
                let i = match sticky {
                    Some(hash) => weighted_by_hash(&self.cumulative, hash),
                    None => crate::cluster::lb::weighted_random(&self.cumulative),
                };
                self.targets.get(i)
            }
        }
    }
}

/// The index a hash falls on when the weights are laid end to end.
fn weighted_by_hash(cumulative: &[u64], hash: u64) -> usize {
    let total = *cumulative.last().unwrap_or(&0);
    if total == 0 {
        return 0;
    }
    let x = hash % total;
    cumulative.partition_point(|c| *c <= x)
}

/// Apply a route's header removals, then additions.
pub fn rewrite_headers(h: &mut HeaderMap, remove: &[HeaderName], add: &[HeaderAdd]) {
    for n in remove {
        h.remove(n);
    }
    for (n, v, append) in add {
        if *append {
            h.append(n.clone(), v.clone());
        } else {
            h.insert(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_keeps_its_target_and_hashes_split_by_weight() {
        let cum = crate::cluster::lb::cumulative(&[90, 10]);
        let mut counts = [0u32; 2];
        for i in 0..10_000u32 {
            let h = crate::cluster::lb::hash_key(format!("user-{i}").as_bytes());
            let first = weighted_by_hash(&cum, h);
            assert_eq!(first, weighted_by_hash(&cum, h), "same key, same target");
            counts[first] += 1;
        }
        assert!((8700..9300).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn host_patterns() {
        assert!(HostMatch::new("*.example.com").matches("api.example.com"));
        assert!(!HostMatch::new("*.example.com").matches("example.com"));
        assert!(HostMatch::new("api.*").matches("api.internal"));
        assert!(HostMatch::new("Exact.Host").matches("exact.host"));
        assert!(HostMatch::new("*").matches("anything"));
        assert!(!HostMatch::new("*.ü.com").matches("ü.com"));
    }

    #[test]
    fn header_matchers() {
        let mut h = HeaderMap::new();
        h.insert("x-canary", "yes".parse().unwrap());
        let m = |value, invert| HeaderMatcher {
            name: HeaderName::from_static("x-canary"),
            value,
            invert,
        };
        assert!(m(ValueMatch::Exact("yes".into()), false).matches(&h));
        assert!(m(ValueMatch::Prefix("y".into()), false).matches(&h));
        assert!(m(ValueMatch::Regex(anchored("y.s").unwrap()), false).matches(&h));
        assert!(!m(ValueMatch::Regex(anchored("y").unwrap()), false).matches(&h));
        assert!(m(ValueMatch::Present(true), false).matches(&h));
        assert!(m(ValueMatch::Exact("no".into()), true).matches(&h));
        assert!(m(ValueMatch::Present(false), false).matches(&HeaderMap::new()));
    }

    fn rewritten(yaml: &str, uri: &str) -> (String, String) {
        let cfg: config::Route = serde_norway::from_str(yaml).unwrap();
        let route = Route::build("l", &cfg, |_| None, &Metrics::new("test"));
        let (mut parts, ()) = http::Request::get(uri)
            .header("host", "local:9000")
            .body(())
            .unwrap()
            .into_parts();
        let mut authority = http::uri::Authority::from_static("local:9000");
        route.rewrite_target(&mut parts, &mut authority);
        (parts.uri.to_string(), authority.to_string())
    }

    #[test]
    fn prefix_and_host_rewrites() {
        let r = |prefix: &str, to: &str, uri: &str| {
            rewritten(
                &format!("{{name: r, cluster: c, match: {{prefix: \"{prefix}\"}}, prefix_rewrite: \"{to}\"}}"),
                uri,
            )
            .0
        };
        assert_eq!(r("/stripe/", "/", "/stripe/v1/x?q=1"), "/v1/x?q=1");
        assert_eq!(r("/stripe", "/v1", "/stripe/charges"), "/v1/charges");
        assert_eq!(r("/stripe", "/v1", "/stripe"), "/v1");
        assert_eq!(r("/", "/v1/", "/a/b"), "/v1/a/b");
        assert_eq!(r("/stripe/", "/api", "/stripe/x"), "/api/x");
        let (uri, authority) = rewritten(
            "{name: r, cluster: c, host_rewrite_literal: api.example.com}",
            "/same",
        );
        assert_eq!(
            (uri.as_str(), authority.as_str()),
            ("/same", "api.example.com")
        );
    }
}
