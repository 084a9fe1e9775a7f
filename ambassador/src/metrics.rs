//! The ambassador's own metric families, registered beside proxy-core's (which already count
//! requests, latency and upstream status per route, and rate-limit waits).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    route: String,
    result: &'static str,
}

#[derive(Clone, Default)]
pub struct AmbassadorMetrics {
    injected: Family<RouteLabels, Counter>,
    fetches: Family<FetchLabels, Counter>,
    issued: Family<RouteLabels, Gauge>,
    expires: Family<RouteLabels, Gauge>,
}

/// An OAuth2 route's token counters and gauges.
pub struct TokenStats {
    pub fetched: Counter,
    pub failed: Counter,
    /// Unix seconds the current token was fetched at: its age is `time() - this`.
    pub issued: Gauge,
    /// Unix seconds the current token expires at.
    pub expires: Gauge,
}

impl AmbassadorMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "credentials_injected",
            "Requests a credential was put on (each attempt counts), by route",
            self.injected.clone(),
        );
        r.register(
            "token_fetches",
            "OAuth2 token endpoint calls by route and result (success, failure)",
            self.fetches.clone(),
        );
        r.register(
            "token_issued_timestamp_seconds",
            "When the route's current OAuth2 token was fetched (token age = time() - this)",
            self.issued.clone(),
        );
        r.register(
            "token_expiry_timestamp_seconds",
            "When the route's current OAuth2 token expires",
            self.expires.clone(),
        );
    }

    pub fn injected(&self, route: &str) -> Counter {
        self.injected
            .get_or_create(&RouteLabels {
                route: route.into(),
            })
            .clone()
    }

    pub fn token(&self, route: &str) -> TokenStats {
        let fetch = |result| {
            self.fetches
                .get_or_create(&FetchLabels {
                    route: route.into(),
                    result,
                })
                .clone()
        };
        let labels = RouteLabels {
            route: route.into(),
        };
        TokenStats {
            fetched: fetch("success"),
            failed: fetch("failure"),
            issued: self.issued.get_or_create(&labels).clone(),
            expires: self.expires.get_or_create(&labels).clone(),
        }
    }
}
