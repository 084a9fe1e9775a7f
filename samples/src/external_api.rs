//! `sample external-api` and `sample api-certs`: a local HTTPS stand-in for a third-party
//! API that wants an OAuth2 bearer token, and the test CA it serves with.
//!
//! The stand-in accepts a token when it is a JWT whose `iss` is the configured token server
//! and whose `exp` has not passed. It does not verify the signature: it stands in for the
//! API to show that the ambassador fetched and injected a real token, it is not an
//! authorisation server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

use crate::service::{Reply, json, query_param};

/// Names the stand-in's certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "api.weather.test"];

/// Write `ca.pem`, `cert.pem` and `key.pem` (a CA and a server certificate it signed for
/// [`SERVER_NAMES`]) into `dir`, creating it.
pub fn write_certs(dir: &Path) -> Result<(), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let fail = |what: &str, e: rcgen::Error| format!("cannot make the {what}: {e}");
    let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sidecar suite demo CA");
    let ca = ca_params.self_signed(&ca_key).map_err(|e| fail("CA", e))?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(|e| fail("server key", e))?;
    let cert = CertificateParams::new(SERVER_NAMES.map(str::to_owned).to_vec())
        .map_err(|e| fail("server certificate", e))?
        .signed_by(&key, &issuer)
        .map_err(|e| fail("server certificate", e))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    for (name, text, mode) in [
        ("ca.pem", ca.pem(), 0o644),
        ("cert.pem", cert.pem(), 0o644),
        // The private key is readable by its owner only, as `sidecar certs` writes keys.
        ("key.pem", key.serialize_pem(), 0o600),
    ] {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(())
}

/// A rustls server config from PEM files, offering h2 and HTTP/1.1.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", cert.display()))?;
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| format!("{}: bad PEM: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS versions: {e}"))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub struct ExternalApi {
    /// The token server's issuer URL, without a trailing slash.
    issuer: String,
}

impl ExternalApi {
    pub fn new(issuer: &str) -> Arc<ExternalApi> {
        Arc::new(ExternalApi {
            issuer: issuer.trim_end_matches('/').to_owned(),
        })
    }

    /// Accept TLS connections until the listener fails.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let (tcp, peer) = listener.accept().await?;
            let (acceptor, api) = (acceptor.clone(), self.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        eprintln!("external-api: TLS handshake with {peer} failed: {e}");
                        return;
                    }
                };
                let svc = service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, std::convert::Infallible>(api.handle(peer, req)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    }

    fn handle(&self, _peer: SocketAddr, req: Request<Incoming>) -> Reply {
        let claims = match self.check_token(req.headers()) {
            Ok(claims) => claims,
            Err(why) => {
                eprintln!("external-api: refused {}: {why}", req.uri().path());
                let mut resp = json(
                    StatusCode::UNAUTHORIZED,
                    &json!({"error": "invalid_token", "error_description": why}),
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                return resp;
            }
        };
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/v1/forecast") => {
                let city = query_param(req.uri().query(), "city").unwrap_or("oslo");
                let forecast = ["sunny", "cloudy", "rain"][city.len() % 3];
                json(
                    StatusCode::OK,
                    &json!({
                        "city": city,
                        "forecast": forecast,
                        "token_seen": {"iss": claims["iss"], "exp": claims["exp"], "jti": claims["jti"]},
                    }),
                )
            }
            _ => json(
                StatusCode::NOT_FOUND,
                &json!({"error": "try GET /v1/forecast?city=NAME"}),
            ),
        }
    }

    /// The token's claims when it is acceptable, else why not (without the token itself).
    fn check_token(&self, headers: &http::HeaderMap) -> Result<serde_json::Value, String> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or("no Authorization header")?
            .to_str()
            .map_err(|_| "Authorization is not text")?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or("Authorization is not a Bearer token")?;
        let payload = token.split('.').nth(1).ok_or("the token is not a JWT")?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| "the token's payload is not base64url")?;
        let claims: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| "the token's payload is not JSON")?;
        let iss = claims["iss"].as_str().unwrap_or("").trim_end_matches('/');
        if iss != self.issuer {
            return Err(format!(
                "the token was issued by {iss:?}, not {:?}",
                self.issuer
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match claims["exp"].as_u64() {
            Some(exp) if exp > now => Ok(claims),
            Some(_) => Err("the token has expired".to_owned()),
            None => Err("the token has no exp".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.sig",
            b64(br#"{"alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        )
    }

    fn headers(auth: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn accepts_a_live_token_of_its_issuer_only() {
        let api = ExternalApi::new("http://127.0.0.1:18600/");
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let good = jwt(json!({"iss": "http://127.0.0.1:18600", "exp": exp}));
        assert!(api.check_token(&headers(&format!("Bearer {good}"))).is_ok());
        let other = jwt(json!({"iss": "http://evil", "exp": exp}));
        let err = api
            .check_token(&headers(&format!("Bearer {other}")))
            .unwrap_err();
        assert!(err.contains("issued by"), "{err}");
        let old = jwt(json!({"iss": "http://127.0.0.1:18600", "exp": 1}));
        assert_eq!(
            api.check_token(&headers(&format!("Bearer {old}")))
                .unwrap_err(),
            "the token has expired"
        );
        assert!(api.check_token(&headers("Basic abc")).is_err());
        assert!(api.check_token(&http::HeaderMap::new()).is_err());
    }

    #[test]
    fn writes_a_ca_and_a_server_certificate_that_load() {
        let dir = std::env::temp_dir().join(format!("samples-certs-{}", std::process::id()));
        write_certs(&dir).unwrap();
        assert!(
            std::fs::read_to_string(dir.join("ca.pem"))
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        tls_config(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
