//! The admin server: `/ready` (200 once the inputs run), `/metrics` (Prometheus text) and,
//! when tailing files, `POST /shutdown` (alias `POST /quitquitquit`): stop as SIGTERM does,
//! after the lines read so far are written and checkpointed. Beyond loopback it serves
//! what proxy-core's admin does there: the probes and `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use proxy_core::admin::{method_not_allowed, metrics_text, text};

use crate::metrics::Stats;

fn respond(
    stats: &Stats,
    stop: Option<&AtomicBool>,
    method: &http::Method,
    path: &str,
) -> Response<Full<Bytes>> {
    match (path, stop) {
        ("/shutdown" | "/quitquitquit", Some(stop)) if method == http::Method::POST => {
            stop.store(true, Ordering::Release);
            text(StatusCode::OK, "stopping\n")
        }
        ("/shutdown" | "/quitquitquit", Some(_)) => method_not_allowed("POST"),
        ("/metrics", _) => metrics_text(stats.encode()),
        ("/ready", _) if stats.is_ready() => text(StatusCode::OK, "ready\n"),
        ("/ready", _) => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Binds `address` now (so a bad address fails start-up) and serves on a thread of its own.
/// `stop`, when tailing, is what `POST /shutdown` sets.
pub fn start(
    address: SocketAddr,
    stats: Arc<Stats>,
    stop: Option<Arc<AtomicBool>>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("adapter-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let Ok((socket, peer)) = listener.accept().await else {
                        continue;
                    };
                    let stats = Arc::clone(&stats);
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (method, path) = (req.method(), req.uri().path());
                            let response = proxy_core::admin::refusal(peer.ip(), method, path)
                                .unwrap_or_else(|| respond(&stats, stop.as_deref(), method, path));
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_is_a_post_and_only_when_tailing() {
        let stats = Stats::new(true);
        let stop = AtomicBool::new(false);
        let get = respond(&stats, Some(&stop), &http::Method::GET, "/shutdown");
        assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get.headers()[http::header::ALLOW], "POST");
        assert!(!stop.load(Ordering::Acquire));

        for path in ["/shutdown", "/quitquitquit"] {
            stop.store(false, Ordering::Release);
            let post = respond(&stats, Some(&stop), &http::Method::POST, path);
            assert_eq!(post.status(), StatusCode::OK, "{path}");
            assert!(stop.load(Ordering::Acquire), "{path}");
        }

        // From beyond the pod: refused before it reaches `respond`; the probes are not.
        let remote = std::net::IpAddr::from([198, 18, 0, 2]);
        let refused = proxy_core::admin::refusal(remote, &http::Method::POST, "/shutdown");
        assert_eq!(refused.map(|r| r.status()), Some(StatusCode::FORBIDDEN));
        assert!(proxy_core::admin::refusal(remote, &http::Method::GET, "/ready").is_none());

        // Running a command, the adapter ends with it: there is nothing to shut down.
        let run = respond(&stats, None, &http::Method::POST, "/shutdown");
        assert_eq!(run.status(), StatusCode::NOT_FOUND);
        let ready = respond(&stats, Some(&stop), &http::Method::GET, "/ready");
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
