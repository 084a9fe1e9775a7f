//! Clusters: a named set of endpoints, how they are discovered (static or DNS), and how one
//! is chosen per request: by the load balancer (`lb`), passing over endpoints that outlier
//! detection ejected (`outlier`) or that fail their active health checks (`health`).
//!
//! The endpoint set is an immutable value swapped atomically when discovery changes it, so a
//! pick reads one pointer and never takes a lock. Endpoints keep their identity (and their
//! pooled connections and counters) across re-resolutions and config reloads.

pub mod health;
pub mod lb;
pub mod outlier;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{self, Discovery, LbPolicy};
use crate::http::client::Pool;
use crate::resilience::breaker::{BreakerView, ErrorRateBreaker};
use crate::resilience::budget::RetryBudget;
use crate::resilience::limits::ClusterLimits;
use crate::telemetry::metrics::{ClusterStats, Metrics};
use health::{HealthChecker, HealthState};
use outlier::{Outcome, OutlierDetector, OutlierState};

/// One upstream address with its connection pool and load counters.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    pub pool: Pool,
    active_requests: AtomicU64,
    requests_total: AtomicU64,
    connect_failures: AtomicU64,
    pub outlier: OutlierState,
    pub health: HealthState,
}

impl Endpoint {
    /// Neither ejected by outlier detection nor failing its active health checks.
    pub fn is_available(&self) -> bool {
        !self.outlier.is_ejected() && self.health.is_healthy()
    }

    fn new(addr: SocketAddr, weight: u32, cfg: &config::Cluster) -> Endpoint {
        Endpoint {
            addr,
            weight,
            pool: Pool::new(cfg),
            active_requests: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            outlier: OutlierState::default(),
            health: HealthState::default(),
        }
    }

    pub fn active_requests(&self) -> u64 {
        self.active_requests.load(Ordering::Relaxed)
    }

    pub fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a request as started; the guard ends it when dropped.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        ActiveRequest::new(self.clone())
    }
}

/// Keeps an endpoint's active-request count up while a request (and its response body) lives.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Endpoint>);

impl ActiveRequest {
    /// A request starts at `endpoint`, the picked handle itself: a request that keeps the
    /// one it was given saves a reference count taken and given back.
    pub fn new(endpoint: Arc<Endpoint>) -> ActiveRequest {
        endpoint.active_requests.fetch_add(1, Ordering::Relaxed);
        endpoint.requests_total.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(endpoint)
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints of a cluster at one moment, with the LB schedules precomputed.
#[derive(Debug, Default)]
struct EndpointSet {
    endpoints: Vec<Arc<Endpoint>>,
    schedule: Vec<u32>,
    cumulative: Vec<u64>,
    ring: Vec<(u64, u32)>,
}

impl EndpointSet {
    fn new(endpoints: Vec<Arc<Endpoint>>, policy: LbPolicy) -> EndpointSet {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let mut set = EndpointSet {
            endpoints,
            ..Default::default()
        };
        match policy {
            LbPolicy::RoundRobin => set.schedule = lb::round_robin_schedule(&weights),
            LbPolicy::Random => set.cumulative = lb::cumulative(&weights),
            LbPolicy::RingHash => {
                let keys: Vec<String> = set.endpoints.iter().map(|e| e.addr.to_string()).collect();
                set.ring = lb::ring(&keys, &weights);
            }
            LbPolicy::LeastRequest => {}
        }
        set
    }
}

/// A named group of endpoints with its policies.
#[derive(Debug)]
pub struct Cluster {
    pub name: Arc<str>,
    pub config: config::Cluster,
    pub stats: ClusterStats,
    /// Shared by every route with a retry policy that sends here.
    pub budget: RetryBudget,
    /// The `circuit_breakers` thresholds, when configured.
    pub limits: Option<ClusterLimits>,
    /// Outlier detection, when configured.
    pub outlier: Option<OutlierDetector>,
    /// The error-rate breaker, when configured.
    pub breaker: Option<ErrorRateBreaker>,
    /// Active health checks, when configured.
    pub health: Option<HealthChecker>,
    /// mTLS to the endpoints, when the cluster is meshed.
    pub mesh: Option<crate::tls::mesh_client::MeshConnector>,
    /// Whether endpoints can be unavailable at all (outlier detection or health checks):
    /// when not, a pick never looks at their state.
    tracks_health: bool,
    /// TLS toward the endpoints, when configured; a `tls:` block that cannot be loaded
    /// (a CA file removed since validation) fails each connection with its reason.
    pub tls: Option<Result<crate::tls::upstream::UpstreamConnector, String>>,
    set: ArcSwap<EndpointSet>,
    rr: AtomicUsize,
}

impl Cluster {
    /// Build a cluster, resolving DNS endpoints once so the first requests have somewhere to go.
    pub async fn build(cfg: &config::Cluster, metrics: &Metrics) -> Arc<Cluster> {
        Cluster::build_meshed(cfg, metrics, None).await
    }

    /// Build a cluster whose connections are mTLS sessions opened by `mesh`.
    pub async fn build_meshed(
        cfg: &config::Cluster,
        metrics: &Metrics,
        mesh: Option<crate::tls::mesh_client::MeshConnector>,
    ) -> Arc<Cluster> {
        let cluster = Arc::new(Cluster {
            name: cfg.name.as_str().into(),
            config: cfg.clone(),
            stats: metrics.cluster(&cfg.name),
            budget: RetryBudget::new(&cfg.retry_budget),
            limits: cfg
                .circuit_breakers
                .as_ref()
                .map(|cb| ClusterLimits::new(metrics, &cfg.name, cb)),
            outlier: cfg
                .outlier_detection
                .as_ref()
                .map(|od| OutlierDetector::new(od, &cfg.name, metrics)),
            breaker: cfg
                .error_rate_breaker
                .as_ref()
                .map(|b| ErrorRateBreaker::new(b, &cfg.name, metrics)),
            health: cfg
                .health_checks
                .as_ref()
                .map(|h| HealthChecker::new(h, cfg.protocol, &cfg.name, metrics)),
            mesh,
            tracks_health: cfg.outlier_detection.is_some() || cfg.health_checks.is_some(),
            tls: crate::tls::upstream::UpstreamConnector::for_cluster(cfg).map(|r| {
                r.map_err(|e| {
                    tracing::error!(cluster = %cfg.name, error = %e, "cannot load the cluster's tls block");
                    e.to_string()
                })
            }),
            set: ArcSwap::from_pointee(EndpointSet::default()),
            rr: AtomicUsize::new(0),
        });
        match cfg.discovery {
            Discovery::Static => {
                let eps = cfg
                    .endpoints
                    .iter()
                    .filter_map(|e| {
                        let hp = config::parse_host_port(&e.address).ok()?;
                        Some(Arc::new(Endpoint::new(hp.socket_addr()?, e.weight, cfg)))
                    })
                    .collect();
                cluster
                    .set
                    .store(Arc::new(EndpointSet::new(eps, cfg.lb_policy)));
            }
            Discovery::Dns => cluster.resolve().await,
        }
        tokio::spawn(maintain(Arc::downgrade(&cluster)));
        if let Some(od) = &cluster.outlier {
            tokio::spawn(review_outliers(Arc::downgrade(&cluster), od.interval()));
        }
        if cluster.health.is_some() {
            tokio::spawn(health::run(Arc::downgrade(&cluster)));
        }
        cluster
    }

    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.set.load().endpoints.clone()
    }

    /// Choose an endpoint. `hash` is the request's hash-policy key (ring_hash only).
    /// Unavailable endpoints (ejected, failing health checks) are passed over; when too few
    /// are available (`healthy_panic_threshold`), health is ignored, and when none is and
    /// the threshold is 0, there is no endpoint to send to.
    pub fn pick(&self, hash: Option<u64>) -> Option<Arc<Endpoint>> {
        let set = self.set.load();
        let i = self.choose(&set, hash)?;
        let ep = &set.endpoints[i];
        if !self.tracks_health || ep.is_available() {
            return Some(ep.clone());
        }
        self.pick_available(&set, hash, i)
    }

    /// The balancer chose the unavailable endpoint `i`.
    fn pick_available(
        &self,
        set: &EndpointSet,
        hash: Option<u64>,
        i: usize,
    ) -> Option<Arc<Endpoint>> {
        let eps = &set.endpoints;
        let n = eps.len();
        if self.panicking(set) {
            return Some(eps[i].clone());
        }
        // Ask the balancer again first, so that the load of an unavailable endpoint spreads
        // the way the policy spreads it; then take the next one that is available.
        for _ in 0..2 {
            if let Some(j) = self.choose(set, hash)
                && eps[j].is_available()
            {
                return Some(eps[j].clone());
            }
        }
        (1..n)
            .map(|k| (i + k) % n)
            .find(|j| eps[*j].is_available())
            .map(|j| eps[j].clone())
    }

    /// Panic mode: so few endpoints are available (below `healthy_panic_threshold` percent)
    /// that health is ignored and every endpoint takes traffic.
    fn panicking(&self, set: &EndpointSet) -> bool {
        let n = set.endpoints.len();
        let available = set.endpoints.iter().filter(|e| e.is_available()).count();
        self.tracks_health && available * 100 < self.config.healthy_panic_threshold as usize * n
    }

    fn choose(&self, set: &EndpointSet, hash: Option<u64>) -> Option<usize> {
        let eps = &set.endpoints;
        Some(match eps.len() {
            0 => return None,
            1 => 0,
            n => match self.config.lb_policy {
                LbPolicy::RoundRobin => {
                    let k = self.rr.fetch_add(1, Ordering::Relaxed) % set.schedule.len();
                    set.schedule[k] as usize
                }
                LbPolicy::Random => lb::weighted_random(&set.cumulative),
                LbPolicy::LeastRequest => {
                    let a = fastrand::usize(0..n);
                    let mut b = fastrand::usize(0..n - 1);
                    if b >= a {
                        b += 1;
                    }
                    // Compare active/weight without division.
                    let load =
                        |i: usize, j: usize| eps[i].active_requests() * u64::from(eps[j].weight);
                    if load(b, a) < load(a, b) { b } else { a }
                }
                LbPolicy::RingHash => match hash {
                    Some(h) => lb::ring_lookup(&set.ring, h),
                    None => fastrand::usize(0..n),
                },
            },
        })
    }

    /// Choose an endpoint for a retry: by weight among the available ones other than
    /// `failed`, since the endpoint that just failed is the likeliest to fail again. Not
    /// through the balancer: a retry taking a round-robin turn would hand the failing
    /// endpoint the next request's first attempt. With no other available, the balancer
    /// decides.
    pub fn pick_other(&self, hash: Option<u64>, failed: &Endpoint) -> Option<Arc<Endpoint>> {
        let set = self.set.load();
        let candidate = |e: &&Arc<Endpoint>| !std::ptr::eq(&***e, failed) && e.is_available();
        let total: u64 = set
            .endpoints
            .iter()
            .filter(candidate)
            .map(|e| u64::from(e.weight))
            .sum();
        if total == 0 {
            return self.pick(hash);
        }
        let mut x = fastrand::u64(0..total);
        for e in set.endpoints.iter().filter(candidate) {
            let w = u64::from(e.weight);
            if x < w {
                return Some(e.clone());
            }
            x -= w;
        }
        self.pick(hash)
    }

    /// Report an attempt's outcome to outlier detection, when configured.
    pub fn record_outcome(&self, ep: &Endpoint, outcome: Option<Outcome>) {
        if let (Some(od), Some(outcome)) = (&self.outlier, outcome) {
            od.record(ep, &self.set.load().endpoints, outcome);
        }
    }

    /// Re-resolve DNS endpoints; keep existing endpoints (and their pools) for addresses
    /// that are still there. A failed lookup keeps the previous set.
    async fn resolve(&self) {
        let old = self.set.load_full();
        let mut next: Vec<Arc<Endpoint>> = Vec::new();
        let mut failed = false;
        for e in &self.config.endpoints {
            let Ok(hp) = config::parse_host_port(&e.address) else {
                continue;
            };
            let lookup = tokio::net::lookup_host((hp.host.as_str(), hp.port));
            match tokio::time::timeout(Duration::from_secs(5), lookup).await {
                Ok(Ok(addrs)) => {
                    for addr in addrs {
                        if next.iter().any(|n| n.addr == addr) {
                            continue;
                        }
                        let ep = old
                            .endpoints
                            .iter()
                            .find(|o| o.addr == addr)
                            .cloned()
                            .unwrap_or_else(|| {
                                Arc::new(Endpoint::new(addr, e.weight, &self.config))
                            });
                        next.push(ep);
                    }
                }
                Ok(Err(err)) => {
                    failed = true;
                    tracing::warn!(cluster = %self.name, host = %hp.host, error = %err, "DNS lookup failed; keeping previous endpoints");
                }
                Err(_) => {
                    failed = true;
                    tracing::warn!(cluster = %self.name, host = %hp.host, "DNS lookup timed out; keeping previous endpoints");
                }
            }
        }
        if failed && next.is_empty() {
            return;
        }
        let changed = next.len() != old.endpoints.len()
            || next
                .iter()
                .zip(old.endpoints.iter())
                .any(|(a, b)| a.addr != b.addr);
        if changed {
            tracing::info!(cluster = %self.name, endpoints = ?next.iter().map(|e| e.addr).collect::<Vec<_>>(), "endpoints changed");
            self.set
                .store(Arc::new(EndpointSet::new(next, self.config.lb_policy)));
        }
    }

    /// JSON for the admin `/clusters` view.
    pub fn admin_view(&self) -> ClusterView {
        ClusterView {
            name: self.name.to_string(),
            discovery: self.config.discovery,
            lb_policy: self.config.lb_policy,
            protocol: self.config.protocol,
            retry_budget_remaining: self.budget.remaining(),
            panic_mode: self.panicking(&self.set.load()),
            error_rate_breaker: self.breaker.as_ref().map(ErrorRateBreaker::view),
            circuit_breakers: self.limits.as_ref().map(|l| {
                [
                    ("max_connections", &l.connections),
                    ("max_pending_requests", &l.pending),
                    ("max_requests", &l.requests),
                    ("max_retries", &l.retries),
                ]
                .into_iter()
                .map(|(name, limit)| {
                    (
                        name,
                        LimitView {
                            max: limit.max(),
                            remaining: limit.remaining(),
                        },
                    )
                })
                .collect()
            }),
            endpoints: self
                .set
                .load()
                .endpoints
                .iter()
                .map(|e| EndpointView {
                    address: e.addr.to_string(),
                    weight: e.weight,
                    healthy: e.is_available(),
                    health_check: self.health.as_ref().map(|_| {
                        if e.health.is_healthy() {
                            "passing"
                        } else {
                            "failing"
                        }
                    }),
                    ejected_until: self
                        .outlier
                        .as_ref()
                        .and_then(|od| od.ejected_until(&e.outlier))
                        .map(crate::telemetry::access_log::rfc3339),
                    consecutive_failures: e.outlier.consecutive_failures(),
                    ejections_total: e.outlier.ejections_total(),
                    active_requests: e.active_requests(),
                    requests_total: e.requests_total.load(Ordering::Relaxed),
                    connect_failures_total: e.connect_failures.load(Ordering::Relaxed),
                    idle_connections: e.pool.idle_count(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub discovery: Discovery,
    pub lb_policy: LbPolicy,
    pub protocol: config::UpstreamProtocol,
    /// Retries the retry budget would allow right now.
    pub retry_budget_remaining: u64,
    /// Too few endpoints are available (`healthy_panic_threshold`): health is ignored and
    /// every endpoint takes traffic.
    pub panic_mode: bool,
    /// The error-rate breaker's state and window, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate_breaker: Option<BreakerView>,
    /// Per threshold: its limit and the units left under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<std::collections::BTreeMap<&'static str, LimitView>>,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Serialize)]
pub struct LimitView {
    pub max: u32,
    pub remaining: i64,
}

#[derive(Debug, Serialize)]
pub struct EndpointView {
    pub address: String,
    pub weight: u32,
    /// Taking traffic: neither ejected by outlier detection nor failing health checks.
    pub healthy: bool,
    /// `passing` or `failing` active health checks; absent without health checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<&'static str>,
    /// When an ejected endpoint returns (RFC 3339); absent when it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_until: Option<String>,
    /// 5xx responses or local-origin failures in a row now.
    pub consecutive_failures: u32,
    pub ejections_total: u64,
    pub active_requests: u64,
    pub requests_total: u64,
    pub connect_failures_total: u64,
    pub idle_connections: usize,
}

/// Background upkeep for one cluster: DNS re-resolution and closing idle pooled connections
/// past their idle timeout. Ends when the cluster is dropped (after a reload removed it).
async fn maintain(cluster: Weak<Cluster>) {
    let period = match cluster.upgrade() {
        Some(c) => match c.config.discovery {
            Discovery::Dns => c.config.dns_refresh_rate.get(),
            Discovery::Static => c.config.idle_timeout.get().min(Duration::from_secs(10)),
        },
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        if c.config.discovery == Discovery::Dns {
            c.resolve().await;
        }
        for e in c.set.load().endpoints.iter() {
            e.pool.evict_expired();
        }
    }
}

/// Outlier detection's periodic review for one cluster; ends with the cluster.
async fn review_outliers(cluster: Weak<Cluster>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        if let Some(od) = &c.outlier {
            od.review(&c.set.load().endpoints);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> config::Cluster {
        serde_norway::from_str(yaml).unwrap()
    }

    #[tokio::test]
    async fn round_robin_cycles_by_weight() {
        let c = Cluster::build(
            &cfg("{name: c, endpoints: [\"127.0.0.1:1\", {address: \"127.0.0.1:2\", weight: 2}]}"),
            &Metrics::new("t"),
        )
        .await;
        let ports: Vec<u16> = (0..6).map(|_| c.pick(None).unwrap().addr.port()).collect();
        assert_eq!(ports.iter().filter(|p| **p == 2).count(), 4);
    }

    #[tokio::test]
    async fn least_request_avoids_the_busy_endpoint() {
        let c = Cluster::build(
            &cfg("{name: c, lb_policy: least_request, endpoints: [\"127.0.0.1:1\", \"127.0.0.1:2\"]}"),
            &Metrics::new("t"),
        )
        .await;
        let busy = c.endpoints()[0].clone();
        let _guards: Vec<_> = (0..5).map(|_| busy.start_request()).collect();
        for _ in 0..50 {
            assert_eq!(c.pick(None).unwrap().addr.port(), 2);
        }
    }

    #[tokio::test]
    async fn ring_hash_is_sticky() {
        let c = Cluster::build(
            &cfg("{name: c, lb_policy: ring_hash, hash_policy: {header: x-user}, endpoints: [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]}"),
            &Metrics::new("t"),
        )
        .await;
        let h = lb::hash_key(b"alice");
        let first = c.pick(Some(h)).unwrap().addr;
        for _ in 0..20 {
            assert_eq!(c.pick(Some(h)).unwrap().addr, first);
        }
    }

    #[tokio::test]
    async fn picks_pass_over_ejected_endpoints_and_the_panic_threshold_decides_when_none_is_left() {
        let yaml = |threshold: u32| {
            cfg(&format!(
                "{{name: c, healthy_panic_threshold: {threshold}, endpoints: [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"], outlier_detection: {{consecutive_local_origin_failure: 1, max_ejection_percent: 100}}}}"
            ))
        };
        let c = Cluster::build(&yaml(0), &Metrics::new("t")).await;
        let eps = c.endpoints();
        c.record_outcome(&eps[0], Some(Outcome::LocalFailure));
        for _ in 0..30 {
            assert_ne!(c.pick(None).unwrap().addr.port(), 1);
        }
        let other = c.pick_other(None, &eps[1]).unwrap();
        assert_eq!(
            other.addr.port(),
            3,
            "neither the failed one nor the ejected one"
        );
        c.record_outcome(&eps[1], Some(Outcome::LocalFailure));
        c.record_outcome(&eps[2], Some(Outcome::LocalFailure));
        assert!(c.pick(None).is_none(), "threshold 0: fail fast");
        assert!(!c.admin_view().panic_mode, "threshold 0 never panics");

        let c = Cluster::build(&yaml(50), &Metrics::new("t")).await;
        for ep in c.endpoints() {
            c.record_outcome(&ep, Some(Outcome::LocalFailure));
        }
        assert!(c.pick(None).is_some(), "panic mode: try them all anyway");
        assert!(c.admin_view().panic_mode, "/clusters shows panic mode");
    }

    #[tokio::test]
    async fn dns_discovery_resolves_localhost() {
        let c = Cluster::build(
            &cfg("{name: c, discovery: dns, endpoints: [\"localhost:9\"]}"),
            &Metrics::new("t"),
        )
        .await;
        let eps = c.endpoints();
        assert!(!eps.is_empty());
        assert!(
            eps.iter()
                .all(|e| e.addr.ip().is_loopback() && e.addr.port() == 9)
        );
    }
}
