//! The ambassador's own metric families, registered beside proxy-core's (which already count
//! requests, latency and upstream status per route, and rate-limit waits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
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

#[derive(Clone, Debug, Default)]
pub struct AmbassadorMetrics {
    injected: Family<RouteLabels, Counter>,
    fetches: Family<FetchLabels, Counter>,
    issued: Family<RouteLabels, Gauge>,
    expires: Family<RouteLabels, Gauge>,
    ages: TokenAges,
}

/// When each OAuth2 route's current token was fetched (Unix ms, 0 before the first), for
/// `token_age_seconds`, computed at scrape time.
#[derive(Clone, Debug, Default)]
struct TokenAges(Arc<Mutex<Vec<FetchedAt>>>);

/// A route and when its current token was fetched.
type FetchedAt = (String, Arc<AtomicU64>);

impl Collector for TokenAges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let now = unix_ms();
        let ages = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        let mut metric = encoder.encode_descriptor(
            "token_age_seconds",
            "Age of the route's current OAuth2 token",
            None,
            MetricType::Gauge,
        )?;
        for (route, fetched) in ages {
            let at = fetched.load(Ordering::Relaxed);
            if at == 0 {
                continue;
            }
            let age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            age.set(now.saturating_sub(at) as f64 / 1000.0);
            age.encode(metric.encode_family(&RouteLabels { route })?)?;
        }
        Ok(())
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An OAuth2 route's token counters and gauges.
pub struct TokenStats {
    pub fetched: Counter,
    pub failed: Counter,
    /// Unix seconds the current token was fetched at: its age is `time() - this`.
    pub issued: Gauge,
    /// Unix seconds the current token expires at.
    pub expires: Gauge,
    /// Unix ms the current token was fetched at, for `token_age_seconds`.
    pub fetched_at: Arc<AtomicU64>,
}

impl AmbassadorMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register_collector(Box::new(self.ages.clone()));
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
            "When the route's current OAuth2 token was fetched",
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
        let fetched_at = Arc::new(AtomicU64::new(0));
        if let Ok(mut ages) = self.ages.0.lock() {
            ages.push((route.to_owned(), fetched_at.clone()));
        }
        TokenStats {
            fetched_at,
            fetched: fetch("success"),
            failed: fetch("failure"),
            issued: self.issued.get_or_create(&labels).clone(),
            expires: self.expires.get_or_create(&labels).clone(),
        }
    }
}
