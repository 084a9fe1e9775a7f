//! Request mirroring (shadowing): a copy of a share of a route's requests goes to another
//! cluster, fire and forget. The copy's `Host` is suffixed `-shadow` (`orders:8080` becomes
//! `orders-shadow:8080`), as Envoy does, so the shadow service can tell copies from real
//! traffic. Its response is read and discarded.
//!
//! The primary request never waits for, or learns anything from, its copy: the copy runs in a
//! task of its own, bounded in time (`timeout`) and in number (`max_in_flight`, past which
//! copies are skipped), so a hung shadow cluster cannot pile up work in the proxy. A body is
//! mirrored only when its length is known and at most `max_body`; it is then read whole before
//! the primary goes on, so both copies carry it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use http::header;
use http::request::Parts;
use http::uri::Authority;

use super::body::RequestBody;
use super::client;
use crate::cluster::Cluster;
use crate::cluster::outlier::Outcome;
use crate::config;
use crate::telemetry::metrics::{Metrics, MirrorStats};

pub struct Mirror {
    cluster: Arc<Cluster>,
    fraction: f64,
    pub max_body: u64,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    timeout: Duration,
    stats: MirrorStats,
}

/// Gives back a unit of `max_in_flight` when a copy is done, however it ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `host[:port]` with `-shadow` after the host.
pub fn shadow_authority(authority: &str) -> String {
    // An IPv6 literal keeps its brackets; the port, if any, follows the closing one.
    let split = match authority.rfind(']') {
        Some(end) => authority[end..].find(':').map(|i| end + i),
        None => authority.rfind(':'),
    };
    match split {
        Some(i) => format!("{}-shadow{}", &authority[..i], &authority[i..]),
        None => format!("{authority}-shadow"),
    }
}

impl Mirror {
    pub fn build(
        listener: &str,
        route: &str,
        cfg: &config::MirrorPolicy,
        cluster: Arc<Cluster>,
        metrics: &Metrics,
    ) -> Mirror {
        Mirror {
            stats: metrics.mirror_stats(listener, route, &cfg.cluster),
            cluster,
            fraction: cfg.percentage / 100.0,
            max_body: cfg.max_body.as_usize() as u64,
            max_in_flight: cfg.max_in_flight,
            in_flight: Arc::default(),
            timeout: cfg.timeout.get(),
        }
    }

    /// Is this request one of the mirrored share?
    pub fn chosen(&self) -> bool {
        self.fraction >= 1.0 || (self.fraction > 0.0 && fastrand::f64() < self.fraction)
    }

    /// The request was chosen but its body cannot be mirrored.
    pub fn skip_body(&self) {
        self.stats.body_too_large.inc();
    }

    /// Send a copy of the request (`parts` as the primary's headers stand before the upstream
    /// protocol is applied; `body` a replay of its buffered body) and return at once.
    pub fn send(&self, parts: &Parts, authority: &Authority, body: RequestBody) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.stats.too_many_in_flight.inc();
            return;
        }
        let unit = InFlight(self.in_flight.clone());
        // A bracketed IPv6 host cannot take the suffix; such a copy keeps the authority.
        let shadow = Authority::try_from(shadow_authority(authority.as_str()).as_str())
            .unwrap_or_else(|_| authority.clone());
        let mut copy = Request::new(body);
        *copy.method_mut() = parts.method.clone();
        *copy.uri_mut() = parts.uri.clone();
        *copy.version_mut() = parts.version;
        *copy.headers_mut() = parts.headers.clone();
        let (mut copy_parts, body) = copy.into_parts();
        copy_parts.headers.remove(header::HOST);
        let protocol = self.cluster.config.protocol;
        let tls = self.cluster.tls.is_some();
        let shadow = super::proxy::RequestAuthority::Parsed(shadow);
        if super::proxy::for_upstream(&mut copy_parts, &shadow, protocol, tls).is_err() {
            self.stats.failure.inc();
            return;
        }
        let copy = Request::from_parts(copy_parts, body);
        let cluster = self.cluster.clone();
        let stats = self.stats.clone();
        let timeout = self.timeout;
        tokio::spawn(async move {
            let _unit = unit;
            let ok = tokio::time::timeout(timeout, shadow_send(&cluster, copy))
                .await
                .unwrap_or(false);
            if ok {
                stats.success.inc();
            } else {
                stats.failure.inc();
            }
        });
    }
}

/// Send the copy, read its response to the end (so an HTTP/1 connection can be pooled), and
/// say whether an answer came back.
async fn shadow_send(cluster: &Cluster, copy: Request<RequestBody>) -> bool {
    let Some(endpoint) = cluster.pick(None) else {
        return false;
    };
    let _active = endpoint.start_request();
    let sent = client::send(
        cluster,
        &endpoint,
        copy,
        tokio::time::Instant::now(),
        &mut None,
    )
    .await;
    let outcome = match &sent {
        Ok((resp, _)) => Some(Outcome::Response(resp.status().as_u16())),
        Err(e) => Outcome::of_error(e),
    };
    cluster.record_outcome(&endpoint, outcome);
    let Ok((resp, pooled)) = sent else {
        return false;
    };
    cluster.stats.response(resp.status().as_u16());
    client::read_to_end(resp.into_body(), pooled, &endpoint).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_hosts() {
        assert_eq!(shadow_authority("orders"), "orders-shadow");
        assert_eq!(shadow_authority("orders:8080"), "orders-shadow:8080");
        assert_eq!(shadow_authority("10.0.0.1:80"), "10.0.0.1-shadow:80");
        assert_eq!(shadow_authority("[::1]:8080"), "[::1]-shadow:8080");
        assert_eq!(shadow_authority("[::1]"), "[::1]-shadow");
    }
}
