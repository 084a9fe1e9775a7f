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

#[cfg(test)]
mod tests {
    use crate::config::{Config, InterceptMode};

    fn problems(listener: &str) -> Vec<String> {
        let yaml = format!(
            "listeners:\n  - {listener}\nclusters:\n  - {{ name: c, endpoints: [\"127.0.0.1:1\"] }}\n"
        );
        match Config::from_yaml(&yaml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn intercepting_listeners_need_no_routes_and_take_the_defaults() {
        let cfg = Config::from_yaml(
            "listeners:\n  - { name: out, address: \"0.0.0.0:15001\", intercept: outbound }\n",
        )
        .unwrap();
        let l = &cfg.listeners[0];
        assert_eq!(l.intercept, Some(InterceptMode::Outbound));
        assert_eq!(l.opaque_ports, super::DEFAULT_OPAQUE_PORTS);
        assert_eq!(
            l.protocol_detection_timeout,
            super::default_detect_timeout()
        );
    }

    #[test]
    fn problems_name_their_field() {
        assert_eq!(
            problems("{ name: l, address: \"0.0.0.0:1\", intercept: inbound, protocol: tcp }"),
            [
                "listeners[0].protocol: an intercepting listener detects each connection's protocol; leave protocol at auto"
            ]
        );
        assert_eq!(
            problems(
                "{ name: l, address: \"0.0.0.0:1\", intercept: inbound, protocol_detection_timeout: 0s, opaque_ports: [25, 0] }"
            ),
            [
                "listeners[0].protocol_detection_timeout: must be more than 0 (ports that must not wait belong in opaque_ports)",
                "listeners[0].opaque_ports[1]: port 0 is not a port"
            ]
        );
        let p = problems(
            "{ name: l, address: \"0.0.0.0:1\", opaque_ports: [25], routes: [{ name: r, cluster: c }] }",
        );
        assert_eq!(
            p,
            [
                "listeners[0].opaque_ports: only intercepting listeners (intercept: inbound|outbound) take opaque_ports"
            ]
        );
        assert!(
            problems("{ name: l, address: \"0.0.0.0:1\", intercept: sideways }")[0]
                .starts_with("listeners[0].intercept")
        );
    }
}
