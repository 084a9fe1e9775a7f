//! What the mesh reports in `/metrics`: the workload certificate (identity, serial, expiry),
//! its reloads, handshakes and their failures by reason, plaintext connections accepted by
//! permissive listeners, and requests denied by identity.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::spiffe::CertFacts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    spiffe_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertInfoLabels {
    spiffe_id: String,
    serial: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    /// `inbound` (a listener) or `outbound` (a cluster).
    direction: &'static str,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    direction: &'static str,
    name: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

/// The mesh's metric families. Cheap to clone (shared handles).
#[derive(Clone, Debug, Default)]
pub struct TlsMetrics {
    not_after: Family<CertLabels, Gauge>,
    expiry: Family<CertLabels, Gauge>,
    info: Family<CertInfoLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    handshakes: Family<PeerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    plaintext: Family<ListenerLabels, Counter>,
    denied: Family<ListenerLabels, Counter>,
    /// Which workload identity the certificate gauges describe: after a config reload
    /// switches to other files, the previous identity lives on while old connections hold
    /// it, and must not write its series back.
    owner: Arc<AtomicU64>,
}

/// Handshake counters of one listener or cluster, resolved when the snapshot is built.
#[derive(Clone, Debug)]
pub struct PeerStats {
    direction: &'static str,
    name: String,
    pub handshakes: Counter,
    failures: Family<FailureLabels, Counter>,
    /// Inbound only: plaintext connections a permissive listener took.
    pub plaintext: Counter,
    /// Inbound only: requests refused with `unauthorized_identity`.
    pub denied: Counter,
}

impl PeerStats {
    /// A failed handshake: the rare path, a label lookup is fine.
    pub fn failure(&self, reason: &'static str) {
        self.failures
            .get_or_create(&FailureLabels {
                direction: self.direction,
                name: self.name.clone(),
                reason,
            })
            .inc();
    }
}

impl TlsMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register_with_unit(
            "tls_certificate_not_after_timestamp",
            "When the workload certificate expires (Unix time)",
            Unit::Seconds,
            self.not_after.clone(),
        );
        r.register_with_unit(
            "tls_certificate_expiry",
            "Time left until the workload certificate expires (negative once expired)",
            Unit::Seconds,
            self.expiry.clone(),
        );
        r.register(
            "tls_certificate_info",
            "1 for the workload certificate in use, by SPIFFE ID and serial",
            self.info.clone(),
        );
        r.register(
            "tls_certificate_reloads",
            "Reloads of the workload certificate files, by result",
            self.reloads.clone(),
        );
        r.register(
            "tls_handshakes",
            "Completed mTLS handshakes, by direction (inbound listener, outbound cluster)",
            self.handshakes.clone(),
        );
        r.register(
            "tls_handshake_errors",
            "Failed mTLS handshakes, by direction, listener or cluster, and reason",
            self.failures.clone(),
        );
        r.register(
            "tls_plaintext_connections",
            "Plaintext connections accepted by a permissive mTLS listener",
            self.plaintext.clone(),
        );
        r.register(
            "authz_denied",
            "Requests refused with 403 unauthorized_identity, by listener",
            self.denied.clone(),
        );
        for result in ["success", "failure"] {
            let _ = self.reloads.get_or_create(&ResultLabels { result }).get();
        }
    }

    /// The certificate now in use by identity `owner`, which becomes the one the gauges
    /// describe; the previous certificate's series go away.
    pub fn certificate(&self, owner: u64, facts: &CertFacts, now_unix: i64) {
        self.owner.store(owner, Ordering::Relaxed);
        let spiffe_id = facts.id.to_string();
        self.info.clear();
        self.not_after.clear();
        self.expiry.clear();
        self.info
            .get_or_create(&CertInfoLabels {
                spiffe_id: spiffe_id.clone(),
                serial: facts.serial.clone(),
            })
            .set(1);
        self.not_after
            .get_or_create(&CertLabels {
                spiffe_id: spiffe_id.clone(),
            })
            .set(facts.not_after);
        self.tick(owner, facts, now_unix);
    }

    /// Whether identity `owner` is the one the certificate gauges describe.
    pub fn owns(&self, owner: u64) -> bool {
        self.owner.load(Ordering::Relaxed) == owner
    }

    /// Refresh the time-left gauge, if `owner` is the identity in use.
    pub fn tick(&self, owner: u64, facts: &CertFacts, now_unix: i64) {
        if !self.owns(owner) {
            return;
        }
        self.expiry
            .get_or_create(&CertLabels {
                spiffe_id: facts.id.to_string(),
            })
            .set(facts.not_after - now_unix);
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn peer(&self, direction: &'static str, name: &str) -> PeerStats {
        let labels = PeerLabels {
            direction,
            name: name.to_owned(),
        };
        let listener = ListenerLabels {
            listener: name.to_owned(),
        };
        PeerStats {
            direction,
            name: name.to_owned(),
            handshakes: self.handshakes.get_or_create(&labels).clone(),
            failures: self.failures.clone(),
            plaintext: if direction == "inbound" {
                self.plaintext.get_or_create(&listener).clone()
            } else {
                Counter::default()
            },
            denied: if direction == "inbound" {
                self.denied.get_or_create(&listener).clone()
            } else {
                Counter::default()
            },
        }
    }
}
