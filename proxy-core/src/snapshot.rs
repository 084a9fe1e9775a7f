//! The running config as one immutable value: the validated document, the compiled routes of
//! each listener, and the clusters. Swapped whole on reload; a request reads it once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::config::{Config, Listener};
use crate::http::inject::RouteHooks;
use crate::route::Route;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;

/// What a listener needs per request: its config (limits) and its routes in match order.
pub struct ListenerRoutes {
    pub config: Listener,
    pub routes: Vec<Route>,
    /// For tcp listeners.
    pub cluster: Option<Arc<Cluster>>,
}

pub struct Snapshot {
    pub config: Arc<Config>,
    pub listeners: HashMap<String, Arc<ListenerRoutes>>,
    pub clusters: HashMap<String, Arc<Cluster>>,
    pub access_log: Option<Arc<AccessLog>>,
}

impl Snapshot {
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
        let mut clusters = HashMap::new();
        for c in &cfg.clusters {
            let reused = prev
                .and_then(|p| p.clusters.get(&c.name))
                .filter(|old| old.config == *c)
                .cloned();
            let cluster = match reused {
                Some(old) => old,
                None => Cluster::build(c, metrics).await,
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
                let lr = ListenerRoutes {
                    config: l.clone(),
                    routes,
                    cluster: l.cluster.as_deref().and_then(lookup),
                };
                (l.name.clone(), Arc::new(lr))
            })
            .collect();
        let access_log = match (&cfg.access_log, prev.and_then(|p| p.access_log.as_ref())) {
            (None, _) => None,
            (Some(want), Some(old)) if old.path() == want.path => Some(old.clone()),
            (Some(want), _) => Some(Arc::new(AccessLog::open(&want.path)?)),
        };
        Ok(Snapshot {
            config: Arc::new(cfg),
            listeners,
            clusters,
            access_log,
        })
    }
}
