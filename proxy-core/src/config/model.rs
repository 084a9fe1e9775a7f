//! The YAML document, as plain nested structs.
//!
//! Names follow Envoy's where Envoy has one (`listeners`, `clusters`, `lb_policy`,
//! `connect_timeout`, `request_headers_to_add`), so Envoy users can read a file at sight.
//! Every struct denies unknown keys: a typo is an error with its path, never a silent default.
//! Semantic checks (addresses, references, regexes) live in `validate`.

use serde::{Deserialize, Serialize};

use super::units::{Dur, Size};

/// The whole sidecar config document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Distributed tracing; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<super::Tracing>,
    /// The Redis that global rate limits count in; needed only by `global` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_service: Option<super::RateLimitService>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    /// The workload's certificate, key and trust bundle, for mTLS; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<super::Identity>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Loopback by default: the admin API can drain and stop the proxy.
    pub address: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            address: "127.0.0.1:15000".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Worker threads; 0 means one per available CPU (honouring cgroup quotas).
    pub worker_threads: usize,
    /// After SIGTERM: how long to keep serving (with `/ready` at 503) before closing listeners.
    pub drain_grace: Dur,
    /// After the grace period: how long to wait for in-flight requests before exiting.
    pub drain_deadline: Dur,
    /// Watch the config file and reload when it changes (SIGHUP always reloads).
    pub watch_config: bool,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            worker_threads: 0,
            drain_grace: Dur::secs(5),
            drain_deadline: Dur::secs(30),
            watch_config: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// `stdout`, `stderr`, or a file path (appended to).
    #[serde(default = "default_access_log_path")]
    pub path: String,
}

fn default_access_log_path() -> String {
    "stdout".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// HTTP/1.1, or HTTP/2 when the client opens with the h2c prior-knowledge preface.
    #[default]
    Auto,
    Http1,
    Http2,
    /// Opaque TCP: bytes are copied to `cluster` as they are.
    Tcp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// HTTP listeners: requests are matched against these in order; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// TCP listeners: where the bytes go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A connection with no bytes moving (TCP) or no request in flight (HTTP) for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// Time allowed for a client to send a whole request head (slowloris guard).
    #[serde(default = "default_header_timeout")]
    pub request_header_timeout: Dur,
    /// Largest request head accepted; larger gets 431.
    #[serde(default = "default_max_header_size")]
    pub max_request_headers_size: Size,
    /// Most request header fields accepted; more gets 431.
    #[serde(default = "default_max_headers")]
    pub max_request_headers: usize,
    /// Most concurrent HTTP/2 streams per downstream connection.
    #[serde(default = "default_max_streams")]
    pub max_concurrent_streams: u32,
    /// Inbound (to the local app) or outbound (from it): the kind of span traced requests get.
    #[serde(default)]
    pub traffic_direction: super::TraceDirection,
    /// Terminate mTLS (and authorize peers by SPIFFE ID); plaintext when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<super::ListenerMtls>,
    /// Receives connections redirected by `sidecar iptables`: `inbound` or `outbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intercept: Option<super::InterceptMode>,
    /// Intercepting listeners: how long to wait for a client's first bytes before taking
    /// the connection as opaque TCP.
    #[serde(
        default = "super::intercept::default_detect_timeout",
        skip_serializing_if = "super::intercept::is_default_detect_timeout"
    )]
    pub protocol_detection_timeout: Dur,
    /// Intercepting listeners: destination ports that skip detection (opaque TCP at once).
    #[serde(
        default = "super::intercept::default_opaque_ports",
        skip_serializing_if = "super::intercept::is_default_opaque_ports"
    )]
    pub opaque_ports: Vec<u16>,
}

fn default_idle_timeout() -> Dur {
    Dur::secs(300)
}
fn default_header_timeout() -> Dur {
    Dur::secs(10)
}
fn default_max_header_size() -> Size {
    Size::kib(60)
}
fn default_max_headers() -> usize {
    100
}
fn default_max_streams() -> u32 {
    256
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: RouteMatch,
    /// Send every matching request to this cluster ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// ... or split them by weight (canaries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weighted_clusters: Vec<WeightedCluster>,
    /// Upper bound on the time until the upstream's response headers arrive.
    #[serde(default = "default_route_timeout")]
    pub timeout: Dur,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<HeaderValueOption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_remove: Vec<String>,
    /// Retries of failed attempts; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<super::RetryPolicy>,
    /// Delays and aborts injected into a share of requests; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<super::Fault>,
    /// Copies of a share of requests sent to other clusters, responses discarded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_mirror_policies: Vec<super::MirrorPolicy>,
    /// With `weighted_clusters`: the header whose value keeps a client on one cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_policy: Option<HashPolicy>,
    /// Request rate limits, each counted per value of its key; all must allow a request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<super::RateLimit>,
    /// With a `match.prefix`: the matched prefix is replaced by this before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// The Host (HTTP/1) or `:authority` (HTTP/2) sent upstream, instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_rewrite_literal: Option<String>,
    /// A token bucket in front of the route; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_rate_limit: Option<crate::ratelimit::local::LocalRateLimit>,
}

fn default_route_timeout() -> Dur {
    Dur::secs(15)
}

/// All given conditions must hold. An empty match matches every request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Hosts (authority without port) as Envoy's `domains`: exact, `*.suffix`, `prefix.*` or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Path prefix, like `/api/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Exact path (query excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Regular expression that must match the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A header condition: exactly one of `exact`, `prefix`, `regex`, `present`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Match when the condition does *not* hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueOption {
    pub name: String,
    pub value: String,
    /// Add beside existing values instead of replacing them.
    #[serde(default)]
    pub append: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// Endpoints are IP:port literals.
    #[default]
    Static,
    /// Endpoints are host:port, re-resolved every `dns_refresh_rate`; each address is an endpoint.
    Dns,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    /// Power of two choices: of two random endpoints, the one with fewer active requests.
    LeastRequest,
    Random,
    /// Consistent hashing on `hash_policy.header`; the same value sticks to the same endpoint.
    RingHash,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c); all requests multiplexed on one connection per endpoint.
    Http2,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub discovery: Discovery,
    #[serde(default = "default_dns_refresh")]
    pub dns_refresh_rate: Dur,
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub lb_policy: LbPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_policy: Option<HashPolicy>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Idle keep-alive connections kept per endpoint (HTTP/1).
    #[serde(default = "default_max_idle")]
    pub max_idle_connections: usize,
    /// An idle pooled connection older than this is closed.
    #[serde(default = "default_pool_idle")]
    pub idle_timeout: Dur,
    /// How many retries the routes to this cluster may add to its load.
    #[serde(default)]
    pub retry_budget: super::RetryBudget,
    /// Limits on concurrent connections, requests and retries; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<super::CircuitBreakers>,
    /// Ejection of failing endpoints from load balancing; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<super::OutlierDetection>,
    /// The cluster-wide failure-rate breaker; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_breaker: Option<super::ErrorRateBreaker>,
    /// Active health checks; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<super::HealthChecks>,
    /// When fewer than this percentage of the endpoints are healthy (neither ejected nor
    /// failing health checks), health is ignored and requests go to all endpoints (Envoy's
    /// panic mode): better to try than to refuse everything. 0 never panics: with no healthy
    /// endpoint, requests fail fast with 503 `no_healthy_upstream`.
    #[serde(default = "default_panic_threshold")]
    pub healthy_panic_threshold: u32,
    /// Originate mTLS to the endpoints and check their SPIFFE ID; plaintext when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<super::ClusterMtls>,
    /// TLS toward the endpoints; plain TCP when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::upstream::UpstreamTls>,
}

fn default_dns_refresh() -> Dur {
    Dur::secs(5)
}
fn default_connect_timeout() -> Dur {
    Dur::secs(1)
}
fn default_max_idle() -> usize {
    64
}
fn default_panic_threshold() -> u32 {
    50
}
fn default_pool_idle() -> Dur {
    Dur::secs(60)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashPolicy {
    /// Request header whose value picks the endpoint.
    pub header: String,
}

/// `"10.0.0.1:8080"`, or `{ address: "10.0.0.1:8080", weight: 3 }`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Endpoint {
    pub address: String,
    pub weight: u32,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        use std::fmt;

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            address: String,
            #[serde(default = "one")]
            weight: u32,
        }
        fn one() -> u32 {
            1
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host:port\" or { address: \"host:port\", weight: N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoint, E> {
                Ok(Endpoint {
                    address: v.to_owned(),
                    weight: 1,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Endpoint, A::Error> {
                let f = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Endpoint {
                    address: f.address,
                    weight: f.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}
