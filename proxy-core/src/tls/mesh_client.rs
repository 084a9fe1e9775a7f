//! Outbound mTLS to a meshed cluster: present our workload certificate, check that the
//! endpoint's certificate chains to our trust bundle and names the SPIFFE ID the cluster
//! expects. SPIFFE certificates carry no DNS names, so the identity check replaces the
//! host-name check of ordinary TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::authz::IdPattern;
use super::failure::{self, IdentityMismatch};
use super::metrics::{PeerStats, TlsMetrics};
use super::reload::{CurrentClientCert, WorkloadIdentity};
use super::spiffe::cert_facts;
use crate::config::{Cluster, ClusterMtls, UpstreamProtocol};
use crate::error::ProxyError;

/// How one meshed cluster opens its connections.
pub struct MeshConnector {
    connector: TlsConnector,
    /// The same, offering no ALPN protocol: opaque TCP through the mesh. The inbound side
    /// of an intercepted connection tells HTTP from opaque bytes by the ALPN choice.
    opaque: TlsConnector,
    pub stats: PeerStats,
}

impl std::fmt::Debug for MeshConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConnector").finish_non_exhaustive()
    }
}

impl MeshConnector {
    pub fn new(
        c: &Cluster,
        m: &ClusterMtls,
        identity: Arc<WorkloadIdentity>,
        metrics: &TlsMetrics,
    ) -> Result<MeshConnector, super::spiffe::SpiffeIdError> {
        let expected: IdPattern = m.identity.parse()?;
        let provider = super::identity::provider();
        let verifier = Arc::new(SpiffeServerVerifier {
            identity: identity.clone(),
            expected,
            algs: provider.signature_verification_algorithms,
        });
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_client_cert_resolver(Arc::new(CurrentClientCert(identity)))
            })
            .unwrap_or_else(|e| unreachable!("ring supports the default protocol versions: {e}"));
        // A tcp listener at the other end selects none of these, which is fine.
        let opaque = TlsConnector::from(Arc::new(cfg.clone()));
        cfg.alpn_protocols = match c.protocol {
            UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        Ok(MeshConnector {
            connector: TlsConnector::from(Arc::new(cfg)),
            opaque,
            stats: metrics.peer("outbound", &c.name),
        })
    }

    /// Run the client handshake over a connected socket.
    /// `opaque`: the session carries TCP bytes, not HTTP (no ALPN protocol is offered).
    pub async fn handshake<S>(
        &self,
        stream: S,
        addr: SocketAddr,
        opaque: bool,
    ) -> Result<TlsStream<S>, ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // Endpoints are addresses; no SNI goes out for an IP, and the identity check does
        // not look at the name.
        let name = ServerName::IpAddress(addr.ip().into());
        let connector = if opaque {
            &self.opaque
        } else {
            &self.connector
        };
        match connector.connect(name, stream).await {
            Ok(s) => {
                self.stats.handshakes.inc();
                Ok(s)
            }
            Err(e) => {
                let kind = failure::reason(&e);
                self.stats.failure(kind);
                let detail = failure::describe(&e);
                tracing::warn!(upstream = %addr, reason = kind, error = %detail, "outbound mTLS handshake failed");
                Err(ProxyError::UpstreamTls { addr, kind, detail })
            }
        }
    }
}

/// Open the mTLS session of a new connection to `ep`, within the cluster's connect timeout.
/// A failure counts as a connect failure of the endpoint (outlier detection sees it).
pub async fn connect(
    cluster: &crate::cluster::Cluster,
    ep: &crate::cluster::Endpoint,
    mesh: &MeshConnector,
    stream: tokio::net::TcpStream,
    opaque: bool,
) -> Result<TlsStream<tokio::net::TcpStream>, ProxyError> {
    let result = tokio::time::timeout(
        cluster.config.connect_timeout.get(),
        mesh.handshake(stream, ep.addr, opaque),
    )
    .await
    .unwrap_or_else(|_| {
        mesh.stats.failure("handshake_timeout");
        Err(ProxyError::UpstreamTls {
            addr: ep.addr,
            kind: "handshake_timeout",
            detail: "no handshake within the connect timeout".into(),
        })
    });
    if result.is_err() {
        cluster.stats.connect_failures.inc();
        ep.connect_failed();
    }
    result
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    identity: Arc<WorkloadIdentity>,
    expected: IdPattern,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let creds = self.identity.current();
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &creds.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let facts = cert_facts(end_entity).map_err(failure::other)?;
        if !self.expected.matches(&facts.id) {
            return Err(failure::other(IdentityMismatch {
                expected: self.expected.to_string(),
                actual: facts.id.to_string(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}
