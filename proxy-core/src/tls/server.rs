//! Inbound mTLS: terminate TLS on a listener, require a client certificate that chains to
//! the trust bundle and carries a SPIFFE ID, and hand the decrypted stream, with the peer's
//! identity, to the HTTP server or the TCP proxy. Permissive listeners also take plaintext,
//! told apart by the first byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::authz::AllowList;
use super::failure;
use super::metrics::{PeerStats, TlsMetrics};
use super::reload::{CurrentServerCert, WorkloadIdentity};
use super::spiffe::{SpiffeId, cert_facts};
use crate::config::{Listener, ListenerMtls, ListenerProtocol, MtlsMode};
use crate::http::proxy::ListenerCtx;
use crate::snapshot::ListenerRoutes;

/// The first byte of every TLS record that opens a connection (a handshake record).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Whether a connection's first byte starts a TLS handshake.
pub fn is_tls_handshake(first: u8) -> bool {
    first == TLS_HANDSHAKE_RECORD
}

/// The authenticated peer of one connection.
#[derive(Debug)]
pub struct PeerIdentity {
    pub id: SpiffeId,
    /// The SPIFFE ID as text, once per connection (rate limit keys use it per request).
    pub uri: String,
    /// `x-forwarded-client-cert` as Envoy writes it: `By=<us>;URI=<peer>`.
    pub xfcc: HeaderValue,
}

/// An mTLS listener's settings, built with the snapshot.
pub struct InboundTls {
    acceptor: TlsAcceptor,
    /// Plaintext clients are served too (`mode: permissive`), for migrations.
    pub permissive: bool,
    pub allow: AllowList,
    pub stats: PeerStats,
    identity: Arc<WorkloadIdentity>,
}

impl InboundTls {
    pub fn new(
        l: &Listener,
        m: &ListenerMtls,
        identity: Arc<WorkloadIdentity>,
        metrics: &TlsMetrics,
    ) -> InboundTls {
        let provider = super::identity::provider();
        let algs = provider.signature_verification_algorithms;
        // Validated with the config: a list that does not parse never gets here.
        let allow = AllowList::parse(&m.allow).unwrap_or_default();
        let verifier = Arc::new(BundleClientVerifier {
            identity: identity.clone(),
            algs,
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_client_cert_verifier(verifier)
                    .with_cert_resolver(Arc::new(CurrentServerCert(identity.clone())))
            })
            .unwrap_or_else(|e| unreachable!("ring supports the default protocol versions: {e}"));
        cfg.alpn_protocols = match l.protocol {
            ListenerProtocol::Http2 => vec![b"h2".to_vec()],
            ListenerProtocol::Http1 => vec![b"http/1.1".to_vec()],
            ListenerProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ListenerProtocol::Tcp => Vec::new(),
        };
        InboundTls {
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            permissive: m.mode == MtlsMode::Permissive,
            allow,
            stats: metrics.peer("inbound", &l.name),
            identity,
        }
    }
}

/// Checks client certificates against the trust bundle in force at the handshake, and
/// requires a SPIFFE ID in them.
#[derive(Debug)]
struct BundleClientVerifier {
    identity: Arc<WorkloadIdentity>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for BundleClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; a mesh client has one certificate to offer anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let creds = self.identity.current();
        creds
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)?;
        cert_facts(end_entity).map_err(failure::other)?;
        Ok(ClientCertVerified::assertion())
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

/// Peek at the first byte: `Some(true)` for a TLS handshake, `Some(false)` for anything
/// else, `None` if the client closed or stayed silent past `timeout`.
pub async fn sniff_tls(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(is_tls_handshake(first[0])),
        _ => None,
    }
}

/// Serve one connection accepted by an mTLS listener.
pub async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Arc<InboundTls>,
    routes: Arc<ListenerRoutes>,
    ctx: Arc<ListenerCtx>,
) {
    let cfg = &routes.config;
    let _ = stream.set_nodelay(true);
    // The handshake counts against the header timeout: a client that connects and says
    // nothing is held to it either way.
    let timeout = cfg.request_header_timeout.get();
    if tls.permissive {
        match sniff_tls(&stream, timeout).await {
            None => return,
            Some(false) => {
                tls.stats.plaintext.inc();
                return plaintext(stream, remote, &tls, &routes, ctx).await;
            }
            Some(true) => {}
        }
    }
    let Some((stream, peer)) = accept(stream, remote, &tls, &ctx.name, timeout).await else {
        return;
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2")
        || cfg.protocol == ListenerProtocol::Http2;
    match (cfg.protocol, &routes.cluster) {
        (ListenerProtocol::Tcp, Some(cluster)) => {
            if !admits_connection(&tls, Some(&peer), &ctx) {
                return;
            }
            crate::tcp::proxy_stream(stream, cluster.clone(), cfg.idle_timeout.get(), &ctx.stats)
                .await
        }
        _ => crate::http::server::serve_conn(stream, remote, Some(peer), h2, cfg, ctx).await,
    }
}

/// The mTLS handshake of an inbound connection, within `timeout`: the session and the
/// verified peer, or `None` when it failed (counted by reason, and logged).
pub async fn accept(
    stream: TcpStream,
    remote: SocketAddr,
    tls: &InboundTls,
    listener: &str,
    timeout: Duration,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Arc<PeerIdentity>,
)> {
    // Fallible: a failed handshake hands the socket back, so the failure is counted before
    // the socket closes. A client that sees the close and then reads /metrics finds it.
    let accepting = tls.acceptor.accept(stream).into_fallible();
    let stream = match tokio::time::timeout(timeout, accepting).await {
        Ok(Ok(s)) => s,
        Ok(Err((e, socket))) => {
            let reason = failure::reason(&e);
            tls.stats.failure(reason);
            drop(socket);
            // A peer that hangs up mid-handshake (a TCP probe, a port scan) says nothing
            // about certificates: counted, logged only at debug.
            if matches!(reason, "io_error" | "connection_closed") {
                tracing::debug!(%listener, %remote, reason, error = %failure::describe(&e), "inbound mTLS handshake failed");
            } else {
                tracing::warn!(%listener, %remote, reason, error = %failure::describe(&e), "inbound mTLS handshake failed");
            }
            return None;
        }
        Err(_) => {
            tls.stats.failure("handshake_timeout");
            tracing::debug!(%listener, %remote, "inbound mTLS handshake timed out");
            return None;
        }
    };
    let (_, conn) = stream.get_ref();
    let peer = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| cert_facts(c).ok());
    let Some(peer) = peer else {
        // The verifier let no certificate without a SPIFFE ID through; be safe anyway.
        tls.stats.failure("no_spiffe_id");
        return None;
    };
    tls.stats.handshakes.inc();
    let ours = tls.identity.current().facts.id.to_string();
    let xfcc = HeaderValue::from_str(&format!("By={ours};URI={}", peer.id))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    let peer = Arc::new(PeerIdentity {
        uri: peer.id.to_string(),
        id: peer.id,
        xfcc,
    });
    Some((stream, peer))
}

/// A peer (or, with `None`, a plaintext client) may open a connection that is not HTTP
/// (no request to refuse with a 403): refused and counted here when the allow list says no.
pub fn admits_connection(tls: &InboundTls, peer: Option<&PeerIdentity>, ctx: &ListenerCtx) -> bool {
    if tls.allow.admits(peer.map(|p| &p.id)) {
        return true;
    }
    tls.stats.denied.inc();
    ctx.stats.local_reply("unauthorized_identity");
    tracing::info!(listener = %ctx.name, peer = ?peer.map(|p| p.uri.as_str()), "connection refused: identity not allowed");
    false
}

async fn plaintext(
    stream: TcpStream,
    remote: SocketAddr,
    tls: &InboundTls,
    routes: &ListenerRoutes,
    ctx: Arc<ListenerCtx>,
) {
    let cfg = &routes.config;
    match (cfg.protocol, &routes.cluster) {
        (ListenerProtocol::Tcp, Some(cluster)) => {
            if !tls.allow.admits(None) {
                tls.stats.denied.inc();
                ctx.stats.local_reply("unauthorized_identity");
                return;
            }
            crate::tcp::proxy(stream, cluster.clone(), cfg.idle_timeout.get(), &ctx.stats).await
        }
        _ => crate::http::server::serve(stream, remote, cfg, ctx).await,
    }
}
