//! Which configured cluster an intercepted connection's destination belongs to.
//!
//! An app dials an address; when that address is an endpoint of a cluster, the connection
//! takes the cluster's policies (load balancing, breakers, outlier detection, and for HTTP
//! the per-request metrics of an implicit route to it). Built with the snapshot, so a pick
//! reads one map and takes no lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::cluster::Cluster;
use prometheus_client::metrics::counter::Counter;

use crate::config::{self, Discovery, InterceptMode};
use crate::detect::Detected;
use crate::route::Route;
use crate::snapshot::ListenerRoutes;
use crate::telemetry::metrics::{ClusterStats, Metrics};

pub struct Destinations {
    /// Static endpoints and their cluster; with an address in two clusters, the first
    /// in the document wins.
    by_addr: HashMap<SocketAddr, Arc<Cluster>>,
    /// DNS clusters: their addresses change, so they are looked through at connect time.
    dns: Vec<Arc<Cluster>>,
    /// For HTTP connections matched by address: a catch-all route to each cluster, named
    /// after it (so its requests are counted as `route="<cluster>"` on this listener).
    by_cluster: HashMap<Arc<str>, Arc<ListenerRoutes>>,
    /// Counters of the connections that match no cluster: `passthrough` (outbound) or
    /// `inbound_passthrough` (inbound).
    pub passthrough: ClusterStats,
    /// Connections by detected protocol, in `Detected::LABELS` order.
    pub detections: [Counter; 7],
}

/// The cluster name outbound connections to unknown destinations are counted under.
pub const PASSTHROUGH: &str = "passthrough";
/// The cluster name inbound connections delivered to the app directly are counted under.
pub const INBOUND_PASSTHROUGH: &str = "inbound_passthrough";

impl Destinations {
    pub fn build(
        listener: &config::Listener,
        clusters: &[config::Cluster],
        lookup: impl Fn(&str) -> Option<Arc<Cluster>> + Copy,
        metrics: &Metrics,
        tls: Option<Arc<crate::tls::server::InboundTls>>,
    ) -> Destinations {
        let mut by_addr = HashMap::new();
        let mut dns = Vec::new();
        let mut by_cluster = HashMap::new();
        for c in clusters {
            let Some(cluster) = lookup(&c.name) else {
                continue;
            };
            match c.discovery {
                Discovery::Static => {
                    for ep in cluster.endpoints() {
                        by_addr.entry(ep.addr).or_insert_with(|| cluster.clone());
                    }
                }
                Discovery::Dns => dns.push(cluster.clone()),
            }
            let Some(route) = implicit_route(&c.name) else {
                continue;
            };
            let routes = ListenerRoutes {
                config: listener.clone(),
                routes: vec![Route::build(&listener.name, &route, lookup, metrics)],
                cluster: Some(cluster.clone()),
                destinations: None,
                // The listener's mTLS settings: its allow list applies to these routes too.
                tls: tls.clone(),
            };
            by_cluster.insert(cluster.name.clone(), Arc::new(routes));
        }
        let passthrough = match listener.intercept {
            Some(InterceptMode::Inbound) => INBOUND_PASSTHROUGH,
            _ => PASSTHROUGH,
        };
        Destinations {
            by_addr,
            dns,
            by_cluster,
            passthrough: metrics.cluster(passthrough),
            detections: metrics.detections(&listener.name, Detected::LABELS),
        }
    }

    /// The cluster that has `addr` among its endpoints, if any.
    pub fn cluster_for(&self, addr: SocketAddr) -> Option<&Arc<Cluster>> {
        self.by_addr.get(&addr).or_else(|| {
            self.dns
                .iter()
                .find(|c| c.endpoints().iter().any(|e| e.addr == addr))
        })
    }

    /// The implicit routes to `cluster`.
    pub fn routes_for(&self, cluster: &str) -> Option<&Arc<ListenerRoutes>> {
        self.by_cluster.get(cluster)
    }
}

/// `{ name: <cluster>, cluster: <cluster> }` with every other field at its default, as if
/// the user had written it (so the defaults live in one place, the config model).
fn implicit_route(cluster: &str) -> Option<config::Route> {
    serde_json::from_value(serde_json::json!({ "name": cluster, "cluster": cluster })).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_route_has_the_defaults() {
        let r = implicit_route("svc-b").unwrap();
        assert_eq!(r.name, "svc-b");
        assert_eq!(r.cluster.as_deref(), Some("svc-b"));
        assert!(r.retry_policy.is_none());
        assert_eq!(r.matcher, config::RouteMatch::default());
    }

    #[tokio::test]
    async fn static_endpoints_map_to_their_first_cluster() {
        let yaml = r#"
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    intercept: outbound
clusters:
  - name: a
    endpoints: ["198.18.0.2:8080", "198.18.0.3:8080"]
  - name: b
    endpoints: ["198.18.0.3:8080", "198.18.0.4:9090"]
"#;
        let cfg = config::Config::from_yaml(yaml).unwrap();
        let metrics = Metrics::new("t");
        let snap = crate::snapshot::Snapshot::build(cfg, None, &metrics)
            .await
            .unwrap();
        let l = &snap.listeners["outbound"];
        let d = l.destinations.as_ref().unwrap();
        let name = |a: &str| {
            d.cluster_for(a.parse().unwrap())
                .map(|c| c.name.to_string())
        };
        assert_eq!(name("198.18.0.2:8080").as_deref(), Some("a"));
        assert_eq!(name("198.18.0.3:8080").as_deref(), Some("a"));
        assert_eq!(name("198.18.0.4:9090").as_deref(), Some("b"));
        assert_eq!(name("198.18.0.4:8080"), None);
        let via_b = l.for_connection(Some("b"));
        assert_eq!(&*via_b.routes[0].name, "b");
        assert!(Arc::ptr_eq(l.for_connection(None), l));
        assert!(Arc::ptr_eq(l.for_connection(Some("gone")), l));
    }
}
