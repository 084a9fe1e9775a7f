//! The mesh blocks of the config: the workload identity files (top-level `identity`), mTLS
//! on inbound listeners (`listeners[].mtls`) and on outbound clusters (`clusters[].mtls`),
//! and their checks. The identity files are read at validation, so `check-config`, start-up
//! and a reload all report a missing, expired, wrong-CA or mismatched file by name.

use serde::{Deserialize, Serialize};

use super::Problems;
use super::model::{Cluster, Config, Listener};
use super::validate::DocIndex;
use crate::tls::authz::{AllowList, IdPattern};
use crate::tls::identity::{self, IdentityFiles};

/// Where the workload's X.509-SVID, its key and the trust bundle are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// PEM certificate chain, leaf first; the leaf's URI SAN is the workload's SPIFFE ID.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key_file: String,
    /// PEM CA certificates that peers' certificates must chain to.
    pub bundle_file: String,
}

impl Identity {
    pub fn files(&self) -> IdentityFiles {
        IdentityFiles {
            cert: self.cert_file.clone().into(),
            key: self.key_file.clone().into(),
            bundle: self.bundle_file.clone().into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    /// Only mTLS connections with a client certificate from the trust bundle.
    #[default]
    Strict,
    /// mTLS, and plaintext too (told apart by the first byte): for migrations.
    Permissive,
}

/// Terminate mTLS on an inbound listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerMtls {
    #[serde(default)]
    pub mode: MtlsMode,
    /// SPIFFE IDs allowed to send requests: exact, or a prefix ending in `/*`
    /// (`spiffe://td/ns/shop/*`, `spiffe://td/*`). Empty: every peer the bundle vouches for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// Originate mTLS to a cluster's endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterMtls {
    /// The SPIFFE ID the endpoints must present: exact, or a prefix ending in `/*`.
    pub identity: String,
}

pub(super) fn check(cfg: &Config, idx: &DocIndex, p: &mut Problems) {
    if let Some(id) = &cfg.identity {
        identity_files(p, id);
    }
    let needs_identity = |p: &mut Problems, path: &str| {
        if cfg.identity.is_none() {
            p.at(
                format!("{path}.mtls"),
                "mTLS needs the workload's certificate: add a top-level identity block (cert_file, key_file, bundle_file)",
            );
        }
    };
    for (i, l) in cfg.listeners.iter().enumerate() {
        let path = format!("listeners[{}]", idx.listeners.get(i).copied().unwrap_or(i));
        if let Some(m) = &l.mtls {
            needs_identity(p, &path);
            listener(p, &path, l, m);
        }
    }
    for (i, c) in cfg.clusters.iter().enumerate() {
        let path = format!("clusters[{}]", idx.clusters.get(i).copied().unwrap_or(i));
        if let Some(m) = &c.mtls {
            needs_identity(p, &path);
            cluster(p, &path, c, m);
        }
    }
}

fn identity_files(p: &mut Problems, id: &Identity) {
    let files = id.files();
    for (field, v) in [
        ("cert_file", &id.cert_file),
        ("key_file", &id.key_file),
        ("bundle_file", &id.bundle_file),
    ] {
        if v.trim().is_empty() {
            p.at(format!("identity.{field}"), "must not be empty");
            return;
        }
    }
    if let Err(e) = identity::load(&files) {
        p.at(format!("identity.{}", e.field(&files)), e.to_string());
    }
}

fn listener(p: &mut Problems, path: &str, _l: &Listener, m: &ListenerMtls) {
    if let Err(bad) = AllowList::parse(&m.allow) {
        for (i, e) in bad {
            p.at(format!("{path}.mtls.allow[{i}]"), e.to_string());
        }
    }
}

fn cluster(p: &mut Problems, path: &str, _c: &Cluster, m: &ClusterMtls) {
    if let Err(e) = m.identity.parse::<IdPattern>() {
        p.at(format!("{path}.mtls.identity"), e.to_string());
    }
}
