//! One intercepted connection, from accept to the server or copier that carries it:
//!
//! 1. the original destination (`SO_ORIGINAL_DST`, IPv4 or IPv6) that the nat rules
//!    rewrote; the target is that address (outbound) or the app on loopback at its port
//!    (inbound);
//! 2. the protocol, from the first bytes (`detect`), unless the port is opaque;
//! 3. where it goes: a cluster that lists the target as an endpoint (HTTP through the
//!    HTTP server with the cluster's implicit route, anything else copied to the cluster);
//!    an HTTP/1 connection whose Host one of the listener's routes takes (the HTTP server
//!    with the listener's routes); else straight to the target, counted under the
//!    `passthrough` (or `inbound_passthrough`) cluster, so unknown services keep working.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::InterceptMode;
use crate::detect::{self, Detected};
use crate::http::proxy::{Downstream, ListenerCtx};
use crate::snapshot::ListenerRoutes;
use crate::telemetry::metrics::ClusterStats;
use crate::tls::server::PeerIdentity;

/// Connect timeout towards an original destination that no cluster describes (Envoy's
/// default for its original-destination cluster).
pub const PASSTHROUGH_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an intercepted connection goes, decided once per connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// HTTP to the HTTP server; `via_cluster` picks the implicit route of a cluster
    /// matched by address, `None` the listener's own routes.
    Http {
        h2: bool,
        via_cluster: Option<Arc<str>>,
    },
    /// Opaque bytes to a cluster matched by address.
    Cluster(Arc<str>),
    /// Opaque bytes straight to the target.
    Passthrough,
}

/// The original destination of a redirected connection.
pub fn original_dst(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let local = stream.local_addr()?;
    let v4 = match local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    let addr = if v4 {
        sock.original_dst_v4()?
    } else {
        sock.original_dst_v6()?
    };
    addr.as_socket().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "original destination is not an IP address",
        )
    })
}

/// Where an intercepting listener sends a connection to `dst`: the original destination
/// (outbound), or the app on the loopback address of the same family (inbound).
pub fn target(mode: InterceptMode, dst: SocketAddr) -> SocketAddr {
    match mode {
        InterceptMode::Outbound => dst,
        InterceptMode::Inbound => {
            let ip = match dst.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            SocketAddr::new(ip, dst.port())
        }
    }
}

/// The routing decision for a detected connection to `target`.
pub fn decide(routes: &ListenerRoutes, target: SocketAddr, detected: &Detected) -> Decision {
    let by_addr = routes
        .destinations
        .as_ref()
        .and_then(|d| d.cluster_for(target))
        .map(|c| c.name.clone());
    let h2 = match detected {
        Detected::Http1 { .. } => false,
        Detected::Http2 => true,
        _ => {
            return match by_addr {
                Some(c) => Decision::Cluster(c),
                None => Decision::Passthrough,
            };
        }
    };
    if by_addr.is_some() {
        return Decision::Http {
            h2,
            via_cluster: by_addr,
        };
    }
    // By the Host of the first request: only HTTP/1 shows it before the server is chosen.
    if let Detected::Http1 { host: Some(host) } = detected
        && routes.routes.iter().any(|r| r.matches_host(host))
    {
        return Decision::Http {
            h2: false,
            via_cluster: None,
        };
    }
    Decision::Passthrough
}

/// Carry one connection accepted by an intercepting listener.
pub async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    routes: Arc<ListenerRoutes>,
    ctx: Arc<ListenerCtx>,
) {
    let (Some(mode), Some(dest)) = (routes.config.intercept, routes.destinations.as_ref()) else {
        return;
    };
    let dst = match original_dst(&stream) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(listener = %ctx.name, %remote, error = %e, "no original destination; closing");
            ctx.stats.local_reply("no_original_destination");
            return;
        }
    };
    // A connection made to the listener itself was not redirected: sending it on to its
    // "original" destination would connect back here, without end.
    if stream.local_addr().is_ok_and(|l| l == dst) {
        tracing::debug!(listener = %ctx.name, %remote, "connection was not redirected; closing");
        ctx.stats.local_reply("not_intercepted");
        return;
    }
    let cfg = &routes.config;
    let target = target(mode, dst);
    let detected = if cfg.opaque_ports.contains(&dst.port()) {
        Detected::Skipped
    } else {
        detect::detect(&stream, cfg.protocol_detection_timeout.get()).await
    };
    dest.detections[detected.index()].inc();
    if detected == Detected::Closed {
        return;
    }
    let decision = decide(&routes, target, &detected);
    tracing::debug!(listener = %ctx.name, %remote, original_dst = %dst, %target,
        protocol = detected.label(), sni = ?match &detected { Detected::Tls { sni } => sni.as_deref(), _ => None },
        ?decision, "intercepted");
    let _ = stream.set_nodelay(true);
    let via = Via {
        remote,
        target,
        passthrough: &dest.passthrough,
    };
    // An inbound listener with mTLS: mesh peers arrive in TLS, terminated here; plaintext
    // clients only in permissive mode.
    if let (InterceptMode::Inbound, Some(tls)) = (mode, routes.tls.clone()) {
        if let Detected::Tls { .. } = detected {
            let timeout = cfg.request_header_timeout.get();
            let Some((session, peer)) =
                crate::tls::server::accept(stream, remote, &tls, &ctx.name, timeout).await
            else {
                return;
            };
            // The peer sidecar offered an ALPN protocol for HTTP, and none for opaque TCP.
            let inner = match session.get_ref().1.alpn_protocol() {
                Some(b"h2") => Detected::Http2,
                Some(b"http/1.1") => Detected::Http1 { host: None },
                _ => Detected::Opaque,
            };
            let decision = decide(&routes, target, &inner);
            if !matches!(decision, Decision::Http { .. })
                && !crate::tls::server::admits_connection(&tls, Some(&peer), &ctx)
            {
                return;
            }
            return carry(session, decision, Some(peer), via, &routes, ctx).await;
        }
        if !tls.permissive {
            tls.stats.failure("not_tls");
            tracing::debug!(listener = %ctx.name, %remote, "plaintext refused: the listener's mTLS is strict");
            return;
        }
        tls.stats.plaintext.inc();
        // HTTP requests meet the allow list one by one; other bytes here, once.
        if !matches!(decision, Decision::Http { .. })
            && !crate::tls::server::admits_connection(&tls, None, &ctx)
        {
            return;
        }
    }
    carry(stream, decision, None, via, &routes, ctx).await;
}

/// Where a connection came from and where it is going.
struct Via<'a> {
    remote: SocketAddr,
    target: SocketAddr,
    passthrough: &'a ClusterStats,
}

/// Carry a connection (a socket, or the mTLS session of a mesh peer) as decided.
async fn carry<S>(
    stream: S,
    decision: Decision,
    peer: Option<Arc<PeerIdentity>>,
    via: Via<'_>,
    routes: &ListenerRoutes,
    ctx: Arc<ListenerCtx>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &routes.config;
    let idle = cfg.idle_timeout.get();
    match decision {
        Decision::Http { h2, via_cluster } => {
            let mut down = Downstream::new(via.remote);
            down.via_cluster = via_cluster;
            down.peer = peer;
            crate::http::server::serve_as(stream, down, h2, cfg, ctx).await;
        }
        Decision::Cluster(name) => {
            let Some(cluster) = ctx.snapshot.load().clusters.get(&*name).cloned() else {
                return;
            };
            crate::tcp::proxy_stream(stream, cluster, idle, &ctx.stats).await;
        }
        Decision::Passthrough => {
            crate::tcp::proxy_to(
                stream,
                via.target,
                PASSTHROUGH_CONNECT_TIMEOUT,
                idle,
                &ctx.stats,
                via.passthrough,
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::snapshot::Snapshot;
    use crate::telemetry::metrics::Metrics;

    async fn listener(yaml: &str, name: &str) -> Arc<ListenerRoutes> {
        let cfg = Config::from_yaml(yaml).unwrap();
        let snap = Snapshot::build(cfg, None, &Metrics::new("t"))
            .await
            .unwrap();
        snap.listeners[name].clone()
    }

    const CONFIG: &str = r#"
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    intercept: outbound
    routes:
      - name: by-name
        match: { hosts: ["svc-b.mesh"] }
        cluster: b
  - name: inbound
    address: 127.0.0.1:15006
    intercept: inbound
clusters:
  - name: b
    endpoints: ["198.18.0.2:8080"]
  - name: app
    endpoints: ["127.0.0.1:8080"]
"#;

    fn http1(host: &str) -> Detected {
        Detected::Http1 {
            host: Some(host.into()),
        }
    }

    #[tokio::test]
    async fn outbound_decisions() {
        let l = listener(CONFIG, "outbound").await;
        let known: SocketAddr = "198.18.0.2:8080".parse().unwrap();
        let unknown: SocketAddr = "198.18.0.9:80".parse().unwrap();
        let via_b = Decision::Http {
            h2: false,
            via_cluster: Some("b".into()),
        };
        assert_eq!(decide(&l, known, &http1("whatever")), via_b);
        assert_eq!(
            decide(&l, known, &Detected::Http2),
            Decision::Http {
                h2: true,
                via_cluster: Some("b".into())
            }
        );
        assert_eq!(
            decide(&l, known, &Detected::Opaque),
            Decision::Cluster("b".into())
        );
        assert_eq!(
            decide(&l, known, &Detected::Timeout),
            Decision::Cluster("b".into())
        );
        // By Host, wherever it was dialled.
        assert_eq!(
            decide(&l, unknown, &http1("svc-b.mesh")),
            Decision::Http {
                h2: false,
                via_cluster: None
            }
        );
        // Unknown everything: straight through.
        assert_eq!(
            decide(&l, unknown, &http1("example.org")),
            Decision::Passthrough
        );
        assert_eq!(decide(&l, unknown, &Detected::Http2), Decision::Passthrough);
        assert_eq!(
            decide(
                &l,
                unknown,
                &Detected::Tls {
                    sni: Some("svc-b.mesh".into())
                }
            ),
            Decision::Passthrough
        );
        assert_eq!(
            decide(&l, unknown, &Detected::Skipped),
            Decision::Passthrough
        );
    }

    #[tokio::test]
    async fn inbound_targets_loopback_at_the_original_port() {
        let l = listener(CONFIG, "inbound").await;
        let t = target(InterceptMode::Inbound, "198.18.0.2:8080".parse().unwrap());
        assert_eq!(t, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(
            decide(&l, t, &http1("anything")),
            Decision::Http {
                h2: false,
                via_cluster: Some("app".into())
            }
        );
        let other = target(InterceptMode::Inbound, "198.18.0.2:9000".parse().unwrap());
        assert_eq!(decide(&l, other, &http1("anything")), Decision::Passthrough);
        assert_eq!(
            target(InterceptMode::Inbound, "[fd00::2]:8080".parse().unwrap()),
            "[::1]:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            target(InterceptMode::Outbound, "[fd00::2]:8080".parse().unwrap()),
            "[fd00::2]:8080".parse::<SocketAddr>().unwrap()
        );
    }
}
