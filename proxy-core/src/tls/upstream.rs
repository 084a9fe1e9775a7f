//! TLS toward upstreams: a cluster's `tls:` block becomes one rustls client config, used for
//! every connection to the cluster's endpoints. Roots are the Mozilla set (webpki-roots) plus
//! an optional CA bundle; a client certificate makes it mTLS toward the API; ALPN offers h2
//! and http/1.1, and the protocol the server picks decides how the connection is driven.

use std::io::BufReader;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Uri, Version, header};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{self, Problems, UpstreamProtocol};

/// The `tls:` block of a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Server name sent in SNI and checked against the certificate; the host of the
    /// cluster's first endpoint when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Trust the Mozilla root set (webpki-roots). Off, only `ca_file` is trusted.
    #[serde(default = "yes")]
    pub system_roots: bool,
    /// PEM bundle of extra trusted CA certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for mTLS toward the upstream (with `key_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Protocols offered by ALPN, in preference order: `h2`, `http/1.1`.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}

/// Why a `tls:` block cannot be turned into a client config.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no PEM certificate found")]
    NoCertificate(String),
    #[error("{0}: no PEM private key found")]
    NoKey(String),
    #[error("invalid server name {0:?}")]
    ServerName(String),
    #[error("no trusted roots: system_roots is false and there is no ca_file")]
    NoRoots,
    #[error("cert_file and key_file go together")]
    HalfClientCert,
    #[error("unknown ALPN protocol {0:?}: use \"h2\" or \"http/1.1\"")]
    Alpn(String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// What connections to one cluster use: a client config and the name to verify.
pub struct UpstreamConnector {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("server_name", &self.server_name)
            .finish()
    }
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let file = std::fs::File::open(path).map_err(|source| TlsConfigError::Read {
        path: path.into(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Read {
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(path.into()));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let file = std::fs::File::open(path).map_err(|source| TlsConfigError::Read {
        path: path.into(),
        source,
    })?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|source| TlsConfigError::Read {
            path: path.into(),
            source,
        })?
        .ok_or_else(|| TlsConfigError::NoKey(path.into()))
}

impl UpstreamConnector {
    /// Build from a cluster's `tls:` block; `default_host` names the server when `sni` is
    /// unset. Reads the CA and client-certificate files.
    pub fn new(
        cfg: &UpstreamTls,
        default_host: &str,
        protocol: UpstreamProtocol,
    ) -> Result<UpstreamConnector, TlsConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        if cfg.system_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Some(ca) = &cfg.ca_file {
            for cert in read_certs(ca)? {
                roots.add(cert)?;
            }
        }
        if roots.is_empty() {
            return Err(TlsConfigError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut client = match (&cfg.cert_file, &cfg.key_file) {
            (Some(cert), Some(key)) => {
                builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsConfigError::HalfClientCert),
        };
        let mut alpn = Vec::new();
        for p in &cfg.alpn {
            match p.as_str() {
                // An http2 cluster speaks nothing else: offering http/1.1 would let a
                // server pick a protocol the cluster is not set up for.
                "http/1.1" if protocol == UpstreamProtocol::Http2 => {}
                "h2" | "http/1.1" => alpn.push(p.as_bytes().to_vec()),
                other => return Err(TlsConfigError::Alpn(other.into())),
            }
        }
        client.alpn_protocols = alpn;
        let name = cfg.sni.as_deref().unwrap_or(default_host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsConfigError::ServerName(name.into()))?;
        Ok(UpstreamConnector {
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// Build for a cluster, naming the server after its first endpoint's host.
    pub fn for_cluster(c: &config::Cluster) -> Option<Result<UpstreamConnector, TlsConfigError>> {
        let tls = c.tls.as_ref()?;
        let host = c
            .endpoints
            .first()
            .and_then(|e| config::parse_host_port(&e.address).ok())
            .map(|hp| hp.host)
            .unwrap_or_default();
        Some(UpstreamConnector::new(tls, &host, c.protocol))
    }

    /// The TLS handshake over a connected socket. The second value says whether the server
    /// chose HTTP/2 by ALPN.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<(TlsStream<TcpStream>, bool)> {
        let stream = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((stream, h2))
    }
}

/// Report the problems of a cluster's `tls:` block (including unreadable files).
pub fn validate(p: &mut Problems, path: &str, c: &config::Cluster) {
    if let Some(Err(e)) = UpstreamConnector::for_cluster(c) {
        p.at(format!("{path}.tls"), e.to_string());
    }
}

/// A request prepared for an HTTP/1 connection, put in the form HTTP/2 sends: the target in
/// the URI (`https`, the Host header's authority), no Host header. For clusters whose
/// protocol ALPN decides per connection.
pub fn into_h2_form<B>(req: &mut Request<B>) {
    if req.version() == Version::HTTP_2 {
        return;
    }
    let authority = req
        .headers_mut()
        .remove(header::HOST)
        .and_then(|h: HeaderValue| Authority::try_from(h.as_bytes()).ok());
    let mut parts = req.uri().clone().into_parts();
    if parts.scheme.is_none() {
        parts.scheme = Some(Scheme::HTTPS);
    }
    if parts.authority.is_none() {
        parts.authority = authority;
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_2;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(yaml: &str) -> UpstreamTls {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_offer_h2_and_http1_with_system_roots() {
        let t = tls("{}");
        assert!(t.system_roots);
        assert_eq!(t.alpn, ["h2", "http/1.1"]);
        assert!(UpstreamConnector::new(&t, "api.example.com", UpstreamProtocol::Http1).is_ok());
    }

    #[test]
    fn bad_blocks_say_why() {
        let e = UpstreamConnector::new(&tls("{system_roots: false}"), "x", UpstreamProtocol::Http1)
            .unwrap_err();
        assert!(matches!(e, TlsConfigError::NoRoots));
        let e = UpstreamConnector::new(
            &tls("{ca_file: /nonexistent/ca.pem}"),
            "x",
            UpstreamProtocol::Http1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = UpstreamConnector::new(&tls("{cert_file: a.pem}"), "x", UpstreamProtocol::Http1)
            .unwrap_err();
        assert!(matches!(e, TlsConfigError::HalfClientCert));
        let e = UpstreamConnector::new(&tls("{alpn: [spdy]}"), "x", UpstreamProtocol::Http1)
            .unwrap_err();
        assert!(e.to_string().contains("spdy"));
    }

    #[test]
    fn h2_form_moves_host_into_the_uri() {
        let mut req = Request::builder()
            .uri("/v1/charges?x=1")
            .header("host", "api.example.com")
            .body(())
            .unwrap();
        into_h2_form(&mut req);
        assert_eq!(req.uri(), "https://api.example.com/v1/charges?x=1");
        assert!(req.headers().get("host").is_none());
        assert_eq!(req.version(), Version::HTTP_2);
    }

    #[test]
    fn config_problems_have_paths() {
        let errs = crate::config::Config::from_yaml(
            r#"
listeners:
  - name: in
    address: "127.0.0.1:1"
    routes:
      - {name: r, cluster: c, prefix_rewrite: /x, host_rewrite_literal: "bad host"}
clusters:
  - {name: c, endpoints: ["127.0.0.1:2"], tls: {ca_file: /nonexistent/ca.pem}}
"#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "clusters[0].tls: cannot read /nonexistent/ca.pem",
            "listeners[0].routes[0].prefix_rewrite: needs match.prefix",
            "listeners[0].routes[0].host_rewrite_literal: invalid host",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
    }
}
