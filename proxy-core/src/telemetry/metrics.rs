//! The metrics registry and the pre-resolved handles the data path bumps.
//!
//! Label lookups (a lock and a hash) happen when a config snapshot is built, never per
//! request: a route, listener or cluster holds its own handles, and a request only does
//! atomic adds. Exposition is Prometheus text format 0.0.4 via `prometheus-client`.

use std::sync::Arc;
use std::time::Duration;

use super::histogram::LatencyHistogram;
use super::tap::Tap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: String,
    route: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteClassLabels {
    listener: String,
    route: String,
    cluster: String,
    code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    listener: String,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerRouteLabels {
    listener: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    listener: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterClassLabels {
    cluster: String,
    code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterReasonLabels {
    cluster: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterResourceLabels {
    cluster: String,
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterStateLabels {
    cluster: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterResultLabels {
    cluster: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    listener: String,
    route: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    listener: String,
    route: String,
    cluster: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    listener: String,
    route: String,
    rule: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// A family member's handle. The family's read guard must end here: a second lookup in the
/// same expression would wait on the write lock forever.
fn member<L, M>(family: &Family<L, M>, labels: &L) -> M
where
    L: Clone + std::hash::Hash + Eq,
    M: Clone + Default,
{
    family.get_or_create(labels).clone()
}

/// Why a retryable outcome was not retried (the `reason` of `upstream_retries_skipped`).
pub const RETRY_SKIP_REASONS: [&str; 6] = [
    "num_retries",
    "max_retries",
    "retry_after_too_long",
    "deadline",
    "method",
    "body_too_large",
];

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Every metric family of one program. Cheap to clone (families are shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Live inspection of requests; travels with the metrics handles to every listener.
    tap: Arc<Tap>,
    requests: Family<RouteClassLabels, Counter>,
    duration: Family<RouteLabels, LatencyHistogram>,
    local_replies: Family<ReasonLabels, Counter>,
    ds_connections: Family<ListenerLabels, Counter>,
    ds_active_connections: Family<ListenerLabels, Gauge>,
    ds_active_requests: Family<ListenerLabels, Gauge>,
    ds_header_timeouts: Family<ListenerLabels, Counter>,
    tcp_bytes: Family<DirectionLabels, Counter>,
    us_requests: Family<ClusterClassLabels, Counter>,
    us_connect_failures: Family<ClusterLabels, Counter>,
    us_timeouts: Family<ClusterLabels, Counter>,
    us_active_connections: Family<ClusterLabels, Gauge>,
    us_connections: Family<ClusterLabels, Counter>,
    us_per_try_timeouts: Family<ClusterLabels, Counter>,
    us_duration: Family<ClusterLabels, LatencyHistogram>,
    retries: Family<ClusterReasonLabels, Counter>,
    retry_budget_exhausted: Family<ClusterLabels, Counter>,
    retries_not_attempted: Family<ClusterReasonLabels, Counter>,
    breaker_remaining: Family<ClusterResourceLabels, Gauge>,
    breaker_limit: Family<ClusterResourceLabels, Gauge>,
    overflow: Family<ClusterResourceLabels, Counter>,
    ejections: Family<ClusterReasonLabels, Counter>,
    returns: Family<ClusterLabels, Counter>,
    ejected: Family<ClusterLabels, Gauge>,
    breaker_state: Family<ClusterStateLabels, Gauge>,
    breaker_transitions: Family<ClusterStateLabels, Counter>,
    health_checks: Family<ClusterResultLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    spans: Family<ResultLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
    mirrors: Family<MirrorLabels, Counter>,
    rate_limits: Family<RateLimitLabels, Counter>,
    redis_errors: Counter,
    pub tls: crate::tls::metrics::TlsMetrics,
    detections: Family<ProtocolLabels, Counter>,
    rate_limit_waits: Family<ListenerRouteLabels, Counter>,
    rate_limited: Family<ListenerRouteLabels, Counter>,
}

impl Metrics {
    /// A registry whose names all start with `prefix_` (`sidecar`, `ambassador`, `adapter`).
    pub fn new(prefix: &str) -> Metrics {
        Metrics::with_extra(prefix, |_| {})
    }

    /// As `new`, letting a program register its own families (under the same prefix) in
    /// the same registry, so `/metrics` shows them all.
    pub fn with_extra(prefix: &str, extra: impl FnOnce(&mut Registry)) -> Metrics {
        let mut r = Registry::with_prefix(prefix);
        let m = Metrics {
            registry: Arc::default(),
            tap: Tap::new(),
            requests: Family::default(),
            duration: Family::default(),
            local_replies: Family::default(),
            ds_connections: Family::default(),
            ds_active_connections: Family::default(),
            ds_active_requests: Family::default(),
            ds_header_timeouts: Family::default(),
            tcp_bytes: Family::default(),
            us_requests: Family::default(),
            us_connect_failures: Family::default(),
            us_timeouts: Family::default(),
            us_active_connections: Family::default(),
            us_connections: Family::default(),
            us_per_try_timeouts: Family::default(),
            us_duration: Family::default(),
            retries: Family::default(),
            retry_budget_exhausted: Family::default(),
            retries_not_attempted: Family::default(),
            breaker_remaining: Family::default(),
            breaker_limit: Family::default(),
            overflow: Family::default(),
            ejections: Family::default(),
            returns: Family::default(),
            ejected: Family::default(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            health_checks: Family::default(),
            reloads: Family::default(),
            spans: Family::default(),
            faults: Family::default(),
            mirrors: Family::default(),
            rate_limits: Family::default(),
            redis_errors: Counter::default(),
            tls: Default::default(),
            detections: Family::default(),
            rate_limit_waits: Family::default(),
            rate_limited: Family::default(),
        };
        r.register(
            "requests",
            "Downstream requests by listener, route, cluster and status class",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from request head received to response end",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "local_replies",
            "Responses made by the proxy itself, by reason",
            m.local_replies.clone(),
        );
        r.register(
            "downstream_connections",
            "Downstream connections accepted",
            m.ds_connections.clone(),
        );
        r.register(
            "downstream_active_connections",
            "Downstream connections open now",
            m.ds_active_connections.clone(),
        );
        r.register(
            "downstream_active_requests",
            "Downstream requests in flight now",
            m.ds_active_requests.clone(),
        );
        r.register(
            "downstream_header_timeouts",
            "HTTP/1 connections closed because a request head was incomplete past request_header_timeout",
            m.ds_header_timeouts.clone(),
        );
        r.register_with_unit(
            "tcp",
            "Bytes copied by tcp listeners",
            Unit::Bytes,
            m.tcp_bytes.clone(),
        );
        r.register(
            "upstream_requests",
            "Upstream attempts by cluster and status class",
            m.us_requests.clone(),
        );
        r.register(
            "upstream_connect_failures",
            "Upstream connections that failed or timed out",
            m.us_connect_failures.clone(),
        );
        r.register(
            "upstream_timeouts",
            "Upstream requests that hit the route timeout",
            m.us_timeouts.clone(),
        );
        r.register(
            "upstream_active_connections",
            "Upstream connections open now",
            m.us_active_connections.clone(),
        );
        r.register(
            "upstream_connections",
            "Upstream connections established",
            m.us_connections.clone(),
        );
        r.register_with_unit(
            "upstream_request_duration",
            "Time from sending an attempt upstream to its response headers (or its failure), by cluster",
            Unit::Seconds,
            m.us_duration.clone(),
        );
        r.register(
            "upstream_per_try_timeouts",
            "Upstream attempts that hit the retry policy's per_try_timeout",
            m.us_per_try_timeouts.clone(),
        );
        r.register(
            "upstream_retries",
            "Retries sent, by cluster and the retry_on condition that caused them",
            m.retries.clone(),
        );
        r.register(
            "retry_budget_exhausted",
            "Retries not sent because the cluster's retry budget was spent",
            m.retry_budget_exhausted.clone(),
        );
        r.register(
            "upstream_retries_skipped",
            "Retryable failures not retried (besides an empty budget), by why: num_retries, max_retries, retry_after_too_long, deadline, method, body_too_large",
            m.retries_not_attempted.clone(),
        );
        r.register(
            "circuit_breaker_remaining",
            "Units left under each circuit_breakers threshold of a cluster",
            m.breaker_remaining.clone(),
        );
        r.register(
            "circuit_breaker_limit",
            "Each circuit_breakers threshold of a cluster",
            m.breaker_limit.clone(),
        );
        r.register(
            "upstream_overflow",
            "Requests refused with 503 overflow, by cluster and the threshold that was full",
            m.overflow.clone(),
        );
        r.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection, by cluster and reason",
            m.ejections.clone(),
        );
        r.register(
            "outlier_returns",
            "Ejected endpoints returned to load balancing",
            m.returns.clone(),
        );
        r.register(
            "outlier_ejected_endpoints",
            "Endpoints ejected now",
            m.ejected.clone(),
        );
        r.register(
            "error_rate_breaker_state",
            "1 for the error-rate breaker's current state (closed, open, half_open), 0 for the others",
            m.breaker_state.clone(),
        );
        r.register(
            "error_rate_breaker_transitions",
            "Error-rate breaker state changes, by the state entered",
            m.breaker_transitions.clone(),
        );
        r.register(
            "health_checks",
            "Active health checks by cluster and result (success, failure)",
            m.health_checks.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads by result",
            m.reloads.clone(),
        );
        r.register(
            "trace_spans",
            "Sampled spans by result: queued for export, dropped (export queue full), exported, failed (the collector refused or was unreachable)",
            m.spans.clone(),
        );
        r.register(
            "faults_injected",
            "Requests delayed or aborted by a route's fault injection, by kind (delay, abort)",
            m.faults.clone(),
        );
        r.register(
            "mirror_requests",
            "Mirrored request copies by result: success (answered), failure (error or timeout), body_too_large and too_many_in_flight (not mirrored)",
            m.mirrors.clone(),
        );
        r.register(
            "rate_limit_decisions",
            "Rate limit rule decisions by result: allowed, limited, unavailable (a global rule's Redis did not answer)",
            m.rate_limits.clone(),
        );
        r.register(
            "rate_limit_redis_errors",
            "Global rate limit checks that got no answer from Redis in time (or found no connection)",
            m.redis_errors.clone(),
        );
        // Both outcomes exist from the start, so a rate over them works before any reload.
        for result in ["success", "failure"] {
            member(&m.reloads, &ResultLabels { result });
        }
        m.tls.register(&mut r);
        r.register(
            "protocol_detections",
            "Intercepted connections by listener and detected protocol",
            m.detections.clone(),
        );
        let info: Family<VersionLabels, Gauge> = Family::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        r.register("build_info", "Build information", info);
        r.register(
            "local_rate_limit_waits",
            "Requests that waited for a local rate limit token, by route",
            m.rate_limit_waits.clone(),
        );
        r.register(
            "local_rate_limited",
            "Requests refused (429) by a local rate limit, by route",
            m.rate_limited.clone(),
        );
        extra(&mut r);
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The process's tap (`/tap`, `/debug/failures`).
    pub fn tap(&self) -> &Arc<Tap> {
        &self.tap
    }

    /// A local rate limit's counters: requests that waited, requests refused.
    pub fn local_rate_limit(&self, listener: &str, route: &str) -> [Counter; 2] {
        let labels = ListenerRouteLabels {
            listener: listener.into(),
            route: route.into(),
        };
        [
            member(&self.rate_limit_waits, &labels),
            member(&self.rate_limited, &labels),
        ]
    }

    pub fn route(&self, listener: &str, route: &str, cluster: &str) -> RouteStats {
        let labels = |class| RouteClassLabels {
            listener: listener.into(),
            route: route.into(),
            cluster: cluster.into(),
            code_class: class,
        };
        RouteStats {
            route: route.into(),
            cluster: cluster.into(),
            classes: CLASSES.map(|c| member(&self.requests, &labels(c))),
            duration: member(
                &self.duration,
                &RouteLabels {
                    listener: listener.into(),
                    route: route.into(),
                    cluster: cluster.into(),
                },
            ),
        }
    }

    pub fn listener(&self, listener: &str) -> ListenerStats {
        let l = ListenerLabels {
            listener: listener.into(),
        };
        let dir = |direction| DirectionLabels {
            listener: listener.into(),
            direction,
        };
        ListenerStats {
            name: listener.into(),
            connections: member(&self.ds_connections, &l),
            active_connections: member(&self.ds_active_connections, &l),
            active_requests: member(&self.ds_active_requests, &l),
            header_timeouts: member(&self.ds_header_timeouts, &l),
            bytes_upstream: member(&self.tcp_bytes, &dir("upstream")),
            bytes_downstream: member(&self.tcp_bytes, &dir("downstream")),
            unrouted: Arc::new(self.route(listener, "", "")),
            local_replies: self.local_replies.clone(),
            tap: self.tap.clone(),
        }
    }

    pub fn cluster(&self, cluster: &str) -> ClusterStats {
        let c = ClusterLabels {
            cluster: cluster.into(),
        };
        // Every reason exists from the start, so a rate over them works before the first.
        for reason in RETRY_SKIP_REASONS {
            member(
                &self.retries_not_attempted,
                &ClusterReasonLabels {
                    cluster: cluster.into(),
                    reason,
                },
            );
        }
        ClusterStats {
            classes: CLASSES.map(|class| {
                member(
                    &self.us_requests,
                    &ClusterClassLabels {
                        cluster: cluster.into(),
                        code_class: class,
                    },
                )
            }),
            connect_failures: member(&self.us_connect_failures, &c),
            timeouts: member(&self.us_timeouts, &c),
            active_connections: member(&self.us_active_connections, &c),
            connections: member(&self.us_connections, &c),
            per_try_timeouts: member(&self.us_per_try_timeouts, &c),
            duration: member(&self.us_duration, &c),
            retries: crate::config::RetryOn::ALL.map(|r| {
                member(
                    &self.retries,
                    &ClusterReasonLabels {
                        cluster: cluster.into(),
                        reason: r.as_str(),
                    },
                )
            }),
            retry_budget_exhausted: member(&self.retry_budget_exhausted, &c),
            retries_skipped: self.retries_not_attempted.clone(),
            name: cluster.into(),
        }
    }

    /// Outlier detection's handles: ejections by `reasons`, returns, endpoints out now.
    pub fn outlier(
        &self,
        cluster: &str,
        reasons: [&'static str; 4],
    ) -> ([Counter; 4], Counter, Gauge) {
        let c = ClusterLabels {
            cluster: cluster.into(),
        };
        (
            reasons.map(|reason| {
                member(
                    &self.ejections,
                    &ClusterReasonLabels {
                        cluster: cluster.into(),
                        reason,
                    },
                )
            }),
            member(&self.returns, &c),
            member(&self.ejected, &c),
        )
    }

    /// The error-rate breaker's state gauges and transition counters, by `states`.
    pub fn error_rate_breaker(
        &self,
        cluster: &str,
        states: [&'static str; 3],
    ) -> ([Gauge; 3], [Counter; 3]) {
        let l = |state| ClusterStateLabels {
            cluster: cluster.into(),
            state,
        };
        (
            states.map(|s| member(&self.breaker_state, &l(s))),
            states.map(|s| member(&self.breaker_transitions, &l(s))),
        )
    }

    /// An intercepting listener's detection counters, one per protocol label, all present
    /// from the start.
    pub fn detections<const N: usize>(
        &self,
        listener: &str,
        protocols: [&'static str; N],
    ) -> [Counter; N] {
        protocols.map(|protocol| {
            member(
                &self.detections,
                &ProtocolLabels {
                    listener: listener.into(),
                    protocol,
                },
            )
        })
    }

    /// Active health check counters: `[success, failure]`.
    pub fn health_checks(&self, cluster: &str) -> [Counter; 2] {
        ["success", "failure"].map(|result| {
            member(
                &self.health_checks,
                &ClusterResultLabels {
                    cluster: cluster.into(),
                    result,
                },
            )
        })
    }

    /// The gauges and the overflow counter of one `circuit_breakers` threshold.
    pub fn breaker(&self, cluster: &str, resource: &'static str) -> (Gauge, Gauge, Counter) {
        let l = ClusterResourceLabels {
            cluster: cluster.into(),
            resource,
        };
        (
            member(&self.breaker_remaining, &l),
            member(&self.breaker_limit, &l),
            member(&self.overflow, &l),
        )
    }

    /// The fault injection counters of one route: (delays, aborts).
    pub fn fault_stats(&self, listener: &str, route: &str) -> (Counter, Counter) {
        let get = |kind| {
            member(
                &self.faults,
                &FaultLabels {
                    listener: listener.into(),
                    route: route.into(),
                    kind,
                },
            )
        };
        (get("delay"), get("abort"))
    }

    /// The counters of one route's mirror to `cluster`, one per result.
    pub fn mirror_stats(&self, listener: &str, route: &str, cluster: &str) -> MirrorStats {
        let get = |result| {
            member(
                &self.mirrors,
                &MirrorLabels {
                    listener: listener.into(),
                    route: route.into(),
                    cluster: cluster.into(),
                    result,
                },
            )
        };
        MirrorStats {
            success: get("success"),
            failure: get("failure"),
            body_too_large: get("body_too_large"),
            too_many_in_flight: get("too_many_in_flight"),
        }
    }

    /// One rate limit rule's counters: (allowed, limited, unavailable).
    pub fn rate_limit_stats(
        &self,
        listener: &str,
        route: &str,
        rule: &str,
    ) -> (Counter, Counter, Counter) {
        let get = |result| {
            member(
                &self.rate_limits,
                &RateLimitLabels {
                    listener: listener.into(),
                    route: route.into(),
                    rule: rule.into(),
                    result,
                },
            )
        };
        (get("allowed"), get("limited"), get("unavailable"))
    }

    /// Global rate limit checks without an answer from Redis.
    pub fn redis_errors(&self) -> Counter {
        self.redis_errors.clone()
    }

    /// The span counters of `trace_spans`, one handle per result.
    pub fn span_stats(&self) -> super::trace::SpanStats {
        let get = |result| member(&self.spans, &ResultLabels { result });
        super::trace::SpanStats {
            queued: get("queued"),
            dropped: get("dropped"),
            exported: get("exported"),
            failed: get("failed"),
        }
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        member(&self.reloads, &ResultLabels { result }).inc();
    }
}

/// RED handles of one (listener, route, cluster).
#[derive(Clone, Debug)]
pub struct RouteStats {
    /// The route and cluster names (empty before routing), for the tap.
    pub route: Arc<str>,
    pub cluster: Arc<str>,
    classes: [Counter; 5],
    duration: LatencyHistogram,
}

impl RouteStats {
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.classes[class_index(status)].inc();
        self.duration.observe(elapsed);
    }
}

/// What became of a route's mirrored copies.
#[derive(Clone, Debug, Default)]
pub struct MirrorStats {
    pub success: Counter,
    pub failure: Counter,
    pub body_too_large: Counter,
    pub too_many_in_flight: Counter,
}

/// Handles of one listener.
#[derive(Clone, Debug)]
pub struct ListenerStats {
    name: String,
    pub connections: Counter,
    pub active_connections: Gauge,
    pub active_requests: Gauge,
    /// Connections cut for a request head incomplete past the header timeout.
    pub header_timeouts: Counter,
    pub bytes_upstream: Counter,
    pub bytes_downstream: Counter,
    /// Requests answered before a route was chosen (no route, malformed).
    pub unrouted: Arc<RouteStats>,
    local_replies: Family<ReasonLabels, Counter>,
    pub tap: Arc<Tap>,
}

impl ListenerStats {
    /// Local replies are the rare path: a label lookup here is fine.
    pub fn local_reply(&self, reason: &'static str) {
        member(
            &self.local_replies,
            &ReasonLabels {
                listener: self.name.clone(),
                reason,
            },
        )
        .inc();
    }
}

/// Handles of one cluster.
#[derive(Clone, Debug)]
pub struct ClusterStats {
    name: String,
    classes: [Counter; 5],
    pub connect_failures: Counter,
    pub timeouts: Counter,
    pub active_connections: Gauge,
    pub connections: Counter,
    pub per_try_timeouts: Counter,
    /// Attempt sent to response headers: the upstream's share of a request's time.
    pub duration: LatencyHistogram,
    /// By `RetryOn::index`.
    retries: [Counter; 7],
    pub retry_budget_exhausted: Counter,
    retries_skipped: Family<ClusterReasonLabels, Counter>,
}

impl ClusterStats {
    pub fn response(&self, status: u16) {
        self.classes[class_index(status)].inc();
    }

    pub fn retry(&self, reason: crate::config::RetryOn) {
        self.retries[reason.index()].inc();
    }

    /// A retryable failure that was not retried. The rare path: a label lookup is fine.
    pub fn retry_skipped(&self, why: &'static str) {
        member(
            &self.retries_skipped,
            &ClusterReasonLabels {
                cluster: self.name.clone(),
                reason: why,
            },
        )
        .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_route_counters_and_histogram() {
        let m = Metrics::new("sidecar");
        let r = m.route("in", "api", "app");
        r.record(200, Duration::from_micros(300));
        r.record(503, Duration::from_millis(2));
        m.listener("in").local_reply("no_route");
        m.cluster("app").response(200);
        let text = m.encode();
        assert!(text.contains(
            "sidecar_requests_total{listener=\"in\",route=\"api\",cluster=\"app\",code_class=\"2xx\"} 1"
        ), "{text}");
        assert!(text.contains("sidecar_request_duration_seconds_count{listener=\"in\",route=\"api\",cluster=\"app\"} 2"), "{text}");
        assert!(text.contains("sidecar_request_duration_seconds_bucket{le=\"0.0005\",listener=\"in\",route=\"api\",cluster=\"app\"} 1")
            || text.contains("sidecar_request_duration_seconds_bucket{listener=\"in\",route=\"api\",cluster=\"app\",le=\"0.0005\"} 1"), "{text}");
        assert!(
            text.contains("sidecar_local_replies_total{listener=\"in\",reason=\"no_route\"} 1")
        );
        assert!(
            text.contains("sidecar_upstream_requests_total{cluster=\"app\",code_class=\"2xx\"} 1")
        );
        assert!(text.contains("sidecar_build_info{version="));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new("t");
        m.route("l", "r", "c")
            .record(200, Duration::from_micros(50));
        let text = m.encode();
        assert!(text.contains("le=\"2.5e-05\"} 0"), "{text}");
        assert!(text.contains("le=\"5e-05\"} 1"), "{text}");
        assert!(text.contains("le=\"0.0001\"} 1"), "{text}");
        assert!(text.contains("le=\"30\"} 1"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 1"), "{text}");
        assert_eq!(class_index(101), 0);
        assert_eq!(class_index(599), 4);
        assert_eq!(class_index(999), 4);
    }
}
