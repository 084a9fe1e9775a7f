//! The admin HTTP server: health, metrics, and what the proxy is doing right now.
//! Bound to loopback by default, because it can drain and stop the process.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::ListenerProtocol;

mod inspect;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;

/// Requests the admin API (or a signal) makes of the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Re-read the config file (SIGHUP, or the file changed).
    Reload { forced: bool },
    /// Drain as on SIGTERM: grace period, then stop accepting and wait for in-flight work.
    Drain,
    /// Stop now: skip the grace period, wait for in-flight work up to the deadline.
    Shutdown,
}

/// What the admin server reads and controls.
pub struct AdminState {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub control: mpsc::UnboundedSender<Control>,
    /// A program's own config, shown by `/config_dump` beside the proxy config it runs.
    pub config_dump: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ListenerView<'a> {
    name: &'a str,
    address: &'a str,
    protocol: ListenerProtocol,
    routes: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
}

/// A plain-text answer; the adapter's admin server answers with these too.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

/// Metrics in the Prometheus text format.
pub fn metrics_text(body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8"
            .parse()
            .expect("static"),
    );
    r
}

/// `405` for a known path asked with the wrong method, saying which one it takes.
pub fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    r
}

fn json(value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("static"),
            );
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
        ),
    }
}

pub fn respond(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match path {
        "/live" if get => text(StatusCode::OK, "live\n"),
        "/ready" if get => {
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            }
        }
        "/metrics" | "/stats/prometheus" if get => metrics_text(state.metrics.encode()),
        "/clusters" if get => {
            let snap = state.snapshot.load();
            let mut clusters: Vec<_> = snap.clusters.values().map(|c| c.admin_view()).collect();
            clusters.sort_by(|a, b| a.name.cmp(&b.name));
            json(&serde_json::json!({ "clusters": clusters }))
        }
        "/listeners" if get => {
            let snap = state.snapshot.load();
            let listeners: Vec<ListenerView<'_>> = snap
                .config
                .listeners
                .iter()
                .map(|l| ListenerView {
                    name: &l.name,
                    address: &l.address,
                    protocol: l.protocol,
                    routes: l.routes.iter().map(|r| r.name.as_str()).collect(),
                    cluster: l.cluster.as_deref(),
                })
                .collect();
            json(&serde_json::json!({ "listeners": listeners }))
        }
        "/config_dump" if get => match &state.config_dump {
            None => json(&*state.snapshot.load().config),
            Some(own) => json(&serde_json::json!({
                "config": own,
                "proxy": &*state.snapshot.load().config,
            })),
        },
        "/drain" if post => {
            let _ = state.control.send(Control::Drain);
            text(StatusCode::OK, "draining\n")
        }
        "/shutdown" | "/quitquitquit" if post => {
            let _ = state.control.send(Control::Shutdown);
            text(StatusCode::OK, "shutting down\n")
        }
        "/live" | "/ready" | "/metrics" | "/stats/prometheus" | "/clusters" | "/listeners"
        | "/config_dump" => method_not_allowed("GET"),
        "/drain" | "/shutdown" | "/quitquitquit" => method_not_allowed("POST"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /live /ready /metrics /clusters /listeners /config_dump /tap /debug/failures, POST /drain /shutdown\n",
        ),
    }
}

/// The answer to a request from `peer` that an admin API must not serve, or `None`.
///
/// Beyond loopback only the kubelet's probes and a Prometheus scrape are served
/// (`GET /live`, `/ready`, `/metrics`). An admin bound past loopback (injected ambassadors
/// and adapters bind 0.0.0.0 for the probes) would otherwise let anything that reaches the
/// pod drain or stop the program, watch its requests (`/tap`) or read its config; the app
/// beside it, `kubectl exec` and `kubectl port-forward` all arrive on loopback. The
/// adapter's admin server asks the same.
pub fn refusal(peer: IpAddr, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
    let probe_or_scrape = (method == Method::GET || method == Method::HEAD)
        && matches!(path, "/live" | "/ready" | "/metrics" | "/stats/prometheus");
    (!probe_or_scrape && !peer.to_canonical().is_loopback()).then(|| {
        text(
            StatusCode::FORBIDDEN,
            "beyond loopback only GET /live, /ready and /metrics are served\n",
        )
    })
}

/// Serve the admin API until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (method, uri) = (req.method(), req.uri());
                let r = refusal(peer.ip(), method, uri.path())
                    .map(|refused| refused.map(BodyExt::boxed_unsync))
                    .or_else(|| inspect::respond(&state, method, uri))
                    .unwrap_or_else(|| {
                        respond(&state, method, uri.path()).map(BodyExt::boxed_unsync)
                    });
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_only_probes_and_metrics_are_served() {
        let pod = IpAddr::from([198, 18, 0, 2]);
        for path in ["/live", "/ready", "/metrics", "/stats/prometheus"] {
            assert!(refusal(pod, &Method::GET, path).is_none(), "{path}");
        }
        for (method, path) in [
            (Method::POST, "/shutdown"),
            (Method::POST, "/drain"),
            (Method::GET, "/config_dump"),
            (Method::GET, "/tap"),
        ] {
            let r = refusal(pod, &method, path).map(|r| r.status());
            assert_eq!(r, Some(StatusCode::FORBIDDEN), "{method} {path}");
        }
        // Loopback, IPv4, IPv6 and IPv4-mapped: everything.
        for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = local.parse().unwrap();
            assert!(refusal(ip, &Method::POST, "/shutdown").is_none(), "{local}");
        }
    }
}
