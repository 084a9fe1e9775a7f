//! Listener settings for transparent interception: which side of the pod a listener
//! intercepts, how long protocol detection may wait, and which ports skip it.

use serde::{Deserialize, Serialize};

use super::Problems;
use super::model::{Listener, ListenerProtocol};
use super::units::Dur;

/// Which traffic an intercepting listener receives from the `sidecar iptables` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterceptMode {
    /// Connections arriving at the pod: delivered to the app at `127.0.0.1:<original port>`.
    Inbound,
    /// Connections the app opens: to a configured cluster when the destination is one,
    /// else straight through to the original destination.
    Outbound,
}

/// Linkerd's default opaque ports: server-speaks-first protocols (SMTP 25 and 587, MySQL
/// 3306, Galera 4444) and protocols whose connections are better not parsed as HTTP
/// (PostgreSQL 5432, Redis 6379, Elasticsearch transport 9300, memcached 11211).
pub const DEFAULT_OPAQUE_PORTS: [u16; 8] = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

pub fn default_detect_timeout() -> Dur {
    Dur::secs(1)
}

pub fn default_opaque_ports() -> Vec<u16> {
    DEFAULT_OPAQUE_PORTS.to_vec()
}

pub(super) fn is_default_detect_timeout(d: &Dur) -> bool {
    *d == default_detect_timeout()
}

pub(super) fn is_default_opaque_ports(p: &[u16]) -> bool {
    p == DEFAULT_OPAQUE_PORTS
}

/// Checks for intercepting listeners. Returns false when the listener is not one to check
/// further as an HTTP listener (its protocol is wrong for interception).
pub(super) fn check_listener(p: &mut Problems, path: &str, l: &Listener) -> bool {
    let Some(_) = l.intercept else {
        if !is_default_detect_timeout(&l.protocol_detection_timeout) {
            p.at(
                format!("{path}.protocol_detection_timeout"),
                "only intercepting listeners (intercept: inbound|outbound) detect protocols",
            );
        }
        if !is_default_opaque_ports(&l.opaque_ports) {
            p.at(
                format!("{path}.opaque_ports"),
                "only intercepting listeners (intercept: inbound|outbound) take opaque_ports",
            );
        }
        return true;
    };
    if l.protocol != ListenerProtocol::Auto {
        p.at(
            format!("{path}.protocol"),
            "an intercepting listener detects each connection's protocol; leave protocol at auto",
        );
        return false;
    }
    if l.protocol_detection_timeout.get().is_zero() {
        p.at(
            format!("{path}.protocol_detection_timeout"),
            "must be more than 0 (ports that must not wait belong in opaque_ports)",
        );
    }
    if let Some(i) = l.opaque_ports.iter().position(|p| *p == 0) {
        p.at(format!("{path}.opaque_ports[{i}]"), "port 0 is not a port");
    }
    true
}
