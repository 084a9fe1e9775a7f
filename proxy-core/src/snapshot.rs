//! The running config as one immutable value: the validated document, the compiled routes of
//! each listener, and the clusters. Swapped whole on reload; a request reads it once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::config::{Config, Listener};
use crate::http::inject::RouteHooks;
use crate::intercept::destinations::Destinations;
use crate::ratelimit::redis_window::RedisLimiter;
use crate::route::Route;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::span_export::Exporter;
use crate::telemetry::trace::Tracer;
use crate::tls::mesh_client::MeshConnector;
use crate::tls::reload::WorkloadIdentity;
use crate::tls::server::InboundTls;

/// What a listener needs per request: its config (limits) and its routes in match order.
pub struct ListenerRoutes {
    pub config: Listener,
    pub routes: Vec<Route>,
    /// For tcp listeners.
    pub cluster: Option<Arc<Cluster>>,
    /// For mTLS listeners.
    pub tls: Option<Arc<InboundTls>>,
    /// For intercepting listeners: which cluster an original destination belongs to.
    pub destinations: Option<Destinations>,
}

impl ListenerRoutes {
    /// The routes for a connection: an intercepted one matched to a cluster by its
    /// original destination uses the implicit route to that cluster.
    ///
    /// Borrowed from the snapshot the request holds: a clone would be two more atomic
    /// read-modify-writes on every request.
    pub fn for_connection<'a>(self: &'a Arc<Self>, via_cluster: Option<&str>) -> &'a Arc<Self> {
        via_cluster
            .and_then(|c| self.destinations.as_ref()?.routes_for(c))
            .unwrap_or(self)
    }
}

pub struct Snapshot {
    pub config: Arc<Config>,
    pub listeners: HashMap<String, Arc<ListenerRoutes>>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    pub access_log: Option<Arc<AccessLog>>,
    /// Set when `tracing` is configured.
    pub tracer: Option<Arc<Tracer>>,
    /// Set when `rate_limit_service` is configured.
    pub redis_limiter: Option<Arc<RedisLimiter>>,
    /// The workload identity, when the config has one.
    pub identity: Option<Arc<WorkloadIdentity>>,
}

impl Snapshot {
    /// A listener's routes, looked up for every request: a pod's sidecar has a handful of
    /// listeners, and comparing a few short names costs less than hashing one (the
    /// `HashMap` lookup alone costs 208 more instructions per request under callgrind).
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerRoutes>> {
        if self.listeners.len() <= 8 {
            self.listeners
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .map(|(_, v)| v)
        } else {
            self.listeners.get(name)
        }
    }

    /// Give routes their per-attempt hooks (a program's credentials); called on a freshly
    /// built snapshot, whose routes nothing else holds yet.
    pub fn attach_hooks(&mut self, hooks: &dyn RouteHooks) {
        for (name, lr) in self.listeners.iter_mut() {
            if let Some(lr) = Arc::get_mut(lr) {
                for r in &mut lr.routes {
                    r.hook = hooks.hook(name, &r.name);
                }
            }
        }
    }

    /// Compile a validated config. Clusters whose config did not change are carried over
    /// from `prev` with their endpoints, pools and counters; so is an unchanged access log.
    pub async fn build(
        cfg: Config,
        prev: Option<&Snapshot>,
        metrics: &Metrics,
    ) -> std::io::Result<Snapshot> {
        // Unchanged files keep the running identity (and its watcher).
        let prev_identity = prev.and_then(|p| p.identity.as_ref());
        let identity = match (&cfg.identity, prev_identity) {
            (None, _) => None,
            (Some(want), Some(old)) if *old.files() == want.files() => Some(old.clone()),
            (Some(want), _) => Some(
                WorkloadIdentity::start(want.files(), metrics.tls.clone())
                    .map_err(std::io::Error::other)?,
            ),
        };
        let same_identity = match (&identity, prev_identity) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let mut clusters = HashMap::new();
        for c in &cfg.clusters {
            let reused = prev
                .and_then(|p| p.clusters.get(&c.name))
                .filter(|old| old.config == *c && (c.mtls.is_none() || same_identity))
                .cloned();
            let mesh = match (&c.mtls, &identity) {
                (Some(m), Some(id)) => Some(
                    MeshConnector::new(c, m, id.clone(), &metrics.tls)
                        .map_err(std::io::Error::other)?,
                ),
                _ => None,
            };
            let cluster = match reused {
                Some(old) => old,
                None => Cluster::build_meshed(c, metrics, mesh).await,
            };
            clusters.insert(c.name.clone(), cluster);
        }
        let lookup = |name: &str| clusters.get(name).cloned();
        let listeners = cfg
            .listeners
            .iter()
            .map(|l| {
                let routes = l
                    .routes
                    .iter()
                    .map(|r| Route::build(&l.name, r, lookup, metrics))
                    .collect();
                let tls = match (&l.mtls, &identity) {
                    (Some(m), Some(id)) => {
                        Some(Arc::new(InboundTls::new(l, m, id.clone(), &metrics.tls)))
                    }
                    _ => None,
                };
                let destinations = l
                    .intercept
                    .map(|_| Destinations::build(l, &cfg.clusters, lookup, metrics, tls.clone()));
                let lr = ListenerRoutes {
                    config: l.clone(),
                    routes,
                    cluster: l.cluster.as_deref().and_then(lookup),
                    tls,
                    destinations,
                };
                (l.name.clone(), Arc::new(lr))
            })
            .collect();
        let access_log = match (&cfg.access_log, prev.and_then(|p| p.access_log.as_ref())) {
            (None, _) => None,
            (Some(want), Some(old)) if old.path() == want.path => Some(old.clone()),
            (Some(want), _) => Some(Arc::new(AccessLog::open(&want.path)?)),
        };
        let tracer = match (&cfg.tracing, prev) {
            (None, _) => None,
            (Some(want), Some(p)) if p.config.tracing.as_ref() == Some(want) => p.tracer.clone(),
            (Some(want), _) => Some(Arc::new(start_tracer(want, metrics))),
        };
        let redis_limiter = match (&cfg.rate_limit_service, prev) {
            (None, _) => None,
            (Some(want), Some(p)) => match &p.redis_limiter {
                Some(old) if old.config() == want => Some(old.clone()),
                _ => Some(Arc::new(RedisLimiter::start(want, metrics.redis_errors()))),
            },
            (Some(want), None) => Some(Arc::new(RedisLimiter::start(want, metrics.redis_errors()))),
        };
        Ok(Snapshot {
            config: Arc::new(cfg),
            listeners,
            clusters,
            access_log,
            tracer,
            redis_limiter,
            identity,
        })
    }
}

/// A tracer and, with a collector, its export task. The task ends when the last snapshot
/// holding this tracer is gone (its queue closes), after sending what is left.
fn start_tracer(cfg: &crate::config::Tracing, metrics: &Metrics) -> Tracer {
    let stats = metrics.span_stats();
    let queue = cfg.collector.as_ref().map(|c| {
        let (tx, rx) = tokio::sync::mpsc::channel(c.queue_size);
        tokio::spawn(Exporter::new(c, &cfg.service_name, stats.clone()).run(rx));
        tx
    });
    Tracer::new(
        cfg.sampling,
        cfg.propagation(),
        &cfg.service_name,
        queue,
        stats,
    )
}
