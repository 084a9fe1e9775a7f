//! `sidecar injector`: the mutating admission webhook server.
//!
//! HTTPS only (the API server calls webhooks over TLS), with its own certificate and key
//! files, re-read when they change so a cert-manager rotation needs no restart.
//! `POST /inject` takes an AdmissionReview and answers with [`webhook::review`];
//! `GET /healthz` answers 200 for the Deployment's probes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::InjectOptions;
use super::webhook;

/// How often the certificate files are checked for a change.
const CERT_RECHECK: Duration = Duration::from_secs(10);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, clap::Args)]
pub struct InjectorArgs {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub listen: SocketAddr,
    /// The server certificate (PEM, leaf first); its SANs must name the webhook Service
    /// (`sidecar-injector.sidecar-system.svc`).
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    #[command(flatten)]
    pub inject: InjectOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum InjectorError {
    #[error("{file}: {reason}")]
    Certificate { file: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
}

impl InjectorError {
    pub fn reason(&self) -> &'static str {
        match self {
            InjectorError::Certificate { .. } => "bad_certificate",
            InjectorError::Listen { .. } => "listen_failed",
            InjectorError::Runtime(_) => "runtime",
        }
    }
}

fn load_tls(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, InjectorError> {
    let bad = |file: &Path, reason: String| InjectorError::Certificate {
        file: file.to_owned(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| bad(cert, format!("cannot read: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad(cert, "holds no certificate".into()));
    }
    let key_pem = std::fs::read(key).map_err(|e| bad(key, format!("cannot read: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(crate::tls::identity::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(key, format!("does not fit the certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn modified(paths: [&Path; 2]) -> Option<[SystemTime; 2]> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some([m(paths[0])?, m(paths[1])?])
}

/// Run the webhook server until SIGTERM or SIGINT.
pub fn run(args: InjectorArgs) -> Result<(), InjectorError> {
    let tls = Arc::new(ArcSwap::from_pointee(load_tls(&args.cert, &args.key)?));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| InjectorError::Runtime(e.to_string()))?;
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|e| InjectorError::Listen {
                addr: args.listen,
                reason: e.to_string(),
            })?;
        tracing::info!(address = %args.listen, "sidecar injector listening (POST /inject, GET /healthz)");
        tokio::spawn(watch_certificates(args.cert.clone(), args.key.clone(), tls.clone()));
        let opts = Arc::new(args.inject);
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let acceptor = TlsAcceptor::from(tls.load_full());
            let opts = opts.clone();
            tokio::spawn(async move {
                let tls_stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let service = hyper::service::service_fn(move |req| handle(req, opts.clone()));
                let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http1_only()
                    .serve_connection(TokioIo::new(tls_stream), service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        }
        tracing::info!("sidecar injector stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Re-read the certificate and key when either file changes; a pair that does not load
/// keeps the running one and says why.
async fn watch_certificates(cert: PathBuf, key: PathBuf, tls: Arc<ArcSwap<rustls::ServerConfig>>) {
    let mut seen = modified([&cert, &key]);
    loop {
        tokio::time::sleep(CERT_RECHECK).await;
        let now = modified([&cert, &key]);
        if now == seen {
            continue;
        }
        match load_tls(&cert, &key) {
            Ok(cfg) => {
                tls.store(Arc::new(cfg));
                seen = now;
                tracing::info!(cert = %cert.display(), "reloaded the webhook certificate");
            }
            Err(e) => tracing::warn!("keeping the running webhook certificate: {e}"),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

fn json_reply(answer: &webhook::Answer) -> Response<Full<Bytes>> {
    reply(
        answer.status,
        "application/json",
        serde_json::to_vec(&answer.review).unwrap_or_default(),
    )
}

async fn handle(
    req: Request<Incoming>,
    opts: Arc<InjectOptions>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    Ok(match (req.method(), path) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::POST, "/inject") => {
            let body = match Limited::new(req.into_body(), webhook::MAX_REVIEW_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    let answer = webhook::malformed(format!("cannot read the request body: {e}"));
                    tracing::warn!("{}", answer.summary);
                    return Ok(json_reply(&answer));
                }
            };
            let answer = webhook::review(&body, &opts);
            if answer.review.pointer("/response/allowed") == Some(&serde_json::Value::Bool(true)) {
                tracing::info!("{}", answer.summary);
            } else {
                tracing::warn!("{}", answer.summary);
            }
            json_reply(&answer)
        }
        (_, "/healthz" | "/inject") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: the webhook is at POST /inject\n",
        ),
    })
}
