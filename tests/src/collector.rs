//! A trace collector stand-in: an HTTP server that keeps every export request it receives
//! (path, content type, body) and answers 202, or, when stalled, takes the request and never
//! answers — the dead collector a proxy must not wait on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One export request as the collector saw it.
#[derive(Clone, Debug)]
pub struct Export {
    pub path: String,
    pub content_type: String,
    pub body: Bytes,
}

pub struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<Export>>>,
    task: JoinHandle<()>,
}

impl Collector {
    /// A collector that accepts every export.
    pub async fn start() -> Collector {
        Collector::run(false).await
    }

    /// A collector that reads each export request and never answers it.
    pub async fn stalled() -> Collector {
        Collector::run(true).await
    }

    async fn run(stall: bool) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a collector");
        let addr = listener.local_addr().expect("collector address");
        let exports: Arc<Mutex<Vec<Export>>> = Arc::default();
        let kept = exports.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get(http::header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            kept.lock().unwrap().push(Export {
                                path,
                                content_type,
                                body,
                            });
                            if stall {
                                std::future::pending::<()>().await;
                            }
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = http::StatusCode::ACCEPTED;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector {
            addr,
            exports,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every export request received so far.
    pub fn exports(&self) -> Vec<Export> {
        self.exports.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
