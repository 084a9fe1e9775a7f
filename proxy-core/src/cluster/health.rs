//! Active health checks: a background task per cluster probes every endpoint each
//! `interval` (a TCP connect, or an HTTP `GET` with expected statuses) and flips the
//! endpoint's health after enough failures or successes in a row. Requests only read the
//! resulting flag; the probing never touches the request path.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;

use super::{Cluster, Endpoint};
use crate::config::{self, UpstreamProtocol};
use crate::telemetry::metrics::Metrics;
use crate::tls::mesh_client::MeshConnector;

/// An endpoint's active-health state. Written only by its cluster's checking task.
#[derive(Debug)]
pub struct HealthState {
    healthy: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
        }
    }
}

impl HealthState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// A cluster's health checking: its settings and metric handles.
#[derive(Debug)]
pub struct HealthChecker {
    cfg: config::HealthChecks,
    protocol: UpstreamProtocol,
    /// `[success, failure]` checks.
    checks: [Counter; 2],
}

impl HealthChecker {
    pub fn new(
        cfg: &config::HealthChecks,
        protocol: UpstreamProtocol,
        cluster: &str,
        metrics: &Metrics,
    ) -> HealthChecker {
        HealthChecker {
            cfg: cfg.clone(),
            protocol,
            checks: metrics.health_checks(cluster),
        }
    }

    /// One check of one endpoint: does it answer as expected within the timeout? A meshed
    /// cluster's endpoints are checked over mTLS, as its requests go.
    async fn probe(&self, ep: &Endpoint, mesh: Option<&MeshConnector>) -> Result<(), String> {
        let check = async {
            let stream = TcpStream::connect(ep.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            match mesh {
                Some(m) => {
                    let tls = m
                        .handshake(stream, ep.addr, false)
                        .await
                        .map_err(|e| e.to_string())?;
                    self.http_check(ep, TokioIo::new(tls)).await
                }
                None => self.http_check(ep, TokioIo::new(stream)).await,
            }
        };
        match tokio::time::timeout(self.cfg.timeout.get(), check).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}", self.cfg.timeout)),
        }
    }

    /// The HTTP part of a check, if the checks are HTTP, over a connected stream.
    async fn http_check<S>(&self, ep: &Endpoint, io: TokioIo<S>) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Some(h) = &self.cfg.http_health_check else {
            return Ok(());
        };
        let handshake_failed = |e: hyper::Error| format!("handshake: {e}");
        let req = http::Request::get(format!("http://{}{}", ep.addr, h.path))
            .header(http::header::USER_AGENT, "sidecar-health-check")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        // Checked in the cluster's own protocol: an h2c-only upstream refuses HTTP/1.
        let resp = match self.protocol {
            UpstreamProtocol::Http1 => {
                let (mut tx, conn) = http1::handshake(io).await.map_err(handshake_failed)?;
                let conn = tokio::spawn(conn);
                let (mut parts, body) = req.into_parts();
                parts.uri = http::Uri::from_maybe_shared(h.path.clone())
                    .map_err(|e| format!("request: {e}"))?;
                parts.headers.insert(
                    http::header::HOST,
                    http::HeaderValue::from_str(&ep.addr.to_string())
                        .map_err(|e| format!("request: {e}"))?,
                );
                let resp = tx
                    .send_request(http::Request::from_parts(parts, body))
                    .await;
                conn.abort();
                resp
            }
            UpstreamProtocol::Http2 => {
                let (mut tx, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(io)
                    .await
                    .map_err(handshake_failed)?;
                let conn = tokio::spawn(conn);
                let resp = tx.send_request(req).await;
                conn.abort();
                resp
            }
        };
        let status = resp.map_err(|e| e.to_string())?.status().as_u16();
        let expected = if h.expected_statuses.is_empty() {
            (200..300).contains(&status)
        } else {
            h.expected_statuses.contains(&status)
        };
        if expected {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    }

    /// Count one check's result; flip the endpoint's health at a threshold.
    fn apply(&self, cluster: &str, ep: &Endpoint, result: Result<(), String>) {
        let h = &ep.health;
        match result {
            Ok(()) => {
                self.checks[0].inc();
                h.failures.store(0, Ordering::Relaxed);
                let n = h.successes.fetch_add(1, Ordering::Relaxed) + 1;
                if !h.is_healthy() && n >= self.cfg.healthy_threshold {
                    h.healthy.store(true, Ordering::Relaxed);
                    tracing::info!(cluster, endpoint = %ep.addr, checks = n, "endpoint healthy again");
                }
            }
            Err(why) => {
                self.checks[1].inc();
                h.successes.store(0, Ordering::Relaxed);
                let n = h.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if h.is_healthy() && n >= self.cfg.unhealthy_threshold {
                    h.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(cluster, endpoint = %ep.addr, checks = n, reason = %why, "endpoint failed its health checks");
                } else {
                    tracing::debug!(cluster, endpoint = %ep.addr, reason = %why, "health check failed");
                }
            }
        }
    }
}

/// The checking task of one cluster; ends with the cluster.
pub(super) async fn run(cluster: Weak<Cluster>) {
    let Some(period) = cluster
        .upgrade()
        .and_then(|c| c.health.as_ref().map(|h| h.cfg.interval.get()))
    else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        let Some(checker) = &c.health else { return };
        let endpoints: Vec<Arc<Endpoint>> = c.endpoints();
        let results = futures_util::future::join_all(
            endpoints
                .iter()
                .map(|ep| checker.probe(ep, c.mesh.as_ref())),
        )
        .await;
        for (ep, result) in endpoints.iter().zip(results) {
            checker.apply(&c.name, ep, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_health_both_ways() {
        let cfg: config::HealthChecks =
            serde_norway::from_str("{healthy_threshold: 2, unhealthy_threshold: 3}").unwrap();
        let checker = HealthChecker::new(&cfg, UpstreamProtocol::Http1, "c", &Metrics::new("t"));
        let cluster: config::Cluster =
            serde_norway::from_str("{name: c, endpoints: [\"127.0.0.1:1\"]}").unwrap();
        let ep = Endpoint::new(([127, 0, 0, 1], 1).into(), 1, &cluster);
        let fail = || Err("refused".to_owned());
        checker.apply("c", &ep, fail());
        checker.apply("c", &ep, fail());
        checker.apply("c", &ep, Ok(()));
        checker.apply("c", &ep, fail());
        checker.apply("c", &ep, fail());
        assert!(
            ep.health.is_healthy(),
            "the success broke the run of failures"
        );
        checker.apply("c", &ep, fail());
        assert!(!ep.health.is_healthy());
        checker.apply("c", &ep, Ok(()));
        assert!(!ep.health.is_healthy(), "one success is not enough");
        checker.apply("c", &ep, Ok(()));
        assert!(ep.health.is_healthy());
    }
}
