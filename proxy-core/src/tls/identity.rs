//! The workload's credentials, read from the three files a SPIFFE issuer keeps up to date
//! (cert-manager's csi-driver-spiffe writes `tls.crt`, `tls.key`, `ca.crt`; SPIRE's helper
//! `svid.pem`, `svid_key.pem`, `svid_bundle.pem`; `sidecar certs issue` writes `cert.pem`,
//! `key.pem`, `bundle.pem`).
//!
//! Loading checks everything a handshake would trip over later, so a bad file is reported
//! at start-up, naming the file and the reason: unreadable, not PEM, no SPIFFE ID, key not
//! matching the certificate, expired or not yet valid, not issued by the bundle's CAs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use super::spiffe::{CertFacts, CertIdError, cert_facts};

/// Where the credentials live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

/// Why the credentials cannot be used. Each names the file at fault; none carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM {what} found", file.display())]
    NoPem { file: PathBuf, what: &'static str },
    #[error("{}: {reason}", file.display())]
    BadPem { file: PathBuf, reason: String },
    #[error("{}: {source}", file.display())]
    NoSpiffeId { file: PathBuf, source: CertIdError },
    #[error("{}: the private key is not usable: {reason}", file.display())]
    BadKey { file: PathBuf, reason: String },
    #[error("{}: the private key does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{}: the certificate expired at {not_after} (now {now})", file.display())]
    Expired {
        file: PathBuf,
        not_after: String,
        now: String,
    },
    #[error("{}: the certificate is not valid yet (from {not_before})", file.display())]
    NotYetValid { file: PathBuf, not_before: String },
    #[error("{}: the certificate was not issued by a CA in the trust bundle {} (wrong CA)", cert.display(), bundle.display())]
    WrongCa { cert: PathBuf, bundle: PathBuf },
    #[error("{}: the certificate does not chain to the trust bundle: {reason}", file.display())]
    Invalid { file: PathBuf, reason: String },
}

impl IdentityError {
    /// Which of the three files the problem is in: `cert_file`, `key_file` or `bundle_file`.
    pub fn field(&self, files: &IdentityFiles) -> &'static str {
        let file = match self {
            IdentityError::Read { file, .. }
            | IdentityError::NoPem { file, .. }
            | IdentityError::BadPem { file, .. }
            | IdentityError::NoSpiffeId { file, .. }
            | IdentityError::BadKey { file, .. }
            | IdentityError::Expired { file, .. }
            | IdentityError::NotYetValid { file, .. }
            | IdentityError::Invalid { file, .. } => file,
            IdentityError::KeyMismatch { key, .. } => key,
            IdentityError::WrongCa { cert, .. } => cert,
        };
        if *file == files.key {
            "key_file"
        } else if *file == files.bundle {
            "bundle_file"
        } else {
            "cert_file"
        }
    }
}

/// One loaded, checked set of credentials. Replaced whole when the files change.
pub struct Credentials {
    pub facts: CertFacts,
    /// The chain and key our handshakes present.
    pub certified: Arc<CertifiedKey>,
    pub roots: Arc<RootCertStore>,
    /// Checks client certificates against `roots` (chain, validity, client-auth usage).
    pub client_verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

/// The crypto provider of every mesh connection.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(file: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(file).map_err(|source| IdentityError::Read {
        file: file.to_owned(),
        source,
    })
}

fn certs(file: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| IdentityError::BadPem {
            file: file.to_owned(),
            reason: format!("not a valid PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::NoPem {
            file: file.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Read and check the three files.
pub fn load(files: &IdentityFiles) -> Result<Credentials, IdentityError> {
    let provider = provider();
    let chain = certs(&files.cert, &read(&files.cert)?)?;
    let facts = cert_facts(&chain[0]).map_err(|source| IdentityError::NoSpiffeId {
        file: files.cert.clone(),
        source,
    })?;

    let key_pem = read(&files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(IdentityError::NoPem {
                file: files.key.clone(),
                what: "private key",
            });
        }
        Err(e) => {
            return Err(IdentityError::BadPem {
                file: files.key.clone(),
                reason: format!("not a valid PEM private key: {e}"),
            });
        }
    };
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| IdentityError::BadKey {
                file: files.key.clone(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain.clone(), signing_key);
    if certified.keys_match().is_err() {
        return Err(IdentityError::KeyMismatch {
            key: files.key.clone(),
            cert: files.cert.clone(),
        });
    }

    let bundle = certs(&files.bundle, &read(&files.bundle)?)?;
    let mut roots = RootCertStore::empty();
    for (i, ca) in bundle.into_iter().enumerate() {
        roots.add(ca).map_err(|e| IdentityError::BadPem {
            file: files.bundle.clone(),
            reason: format!("certificate #{} is not a usable CA: {e}", i + 1),
        })?;
    }
    let roots = Arc::new(roots);
    check_chain(files, &chain, &roots, &provider, &facts)?;

    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| IdentityError::BadPem {
                file: files.bundle.clone(),
                reason: format!("cannot verify clients with this bundle: {e}"),
            })?;
    Ok(Credentials {
        facts,
        certified: Arc::new(certified),
        roots,
        client_verifier,
    })
}

/// Our own certificate must chain to our own bundle and be valid now: peers check the same.
fn check_chain(
    files: &IdentityFiles,
    chain: &[CertificateDer<'static>],
    roots: &RootCertStore,
    provider: &CryptoProvider,
    facts: &CertFacts,
) -> Result<(), IdentityError> {
    let now = UnixTime::now();
    let parsed = rustls::server::ParsedCertificate::try_from(&chain[0]).map_err(|e| {
        IdentityError::BadPem {
            file: files.cert.clone(),
            reason: e.to_string(),
        }
    })?;
    let result = rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        &chain[1..],
        now,
        provider.signature_verification_algorithms.all,
    );
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(describe_cert_error(e, files, facts, now)),
    }
}

fn describe_cert_error(
    e: rustls::Error,
    files: &IdentityFiles,
    facts: &CertFacts,
    now: UnixTime,
) -> IdentityError {
    use rustls::CertificateError as C;
    let now_s = rfc3339(now.as_secs() as i64);
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            IdentityError::Expired {
                file: files.cert.clone(),
                not_after: rfc3339(facts.not_after),
                now: now_s,
            }
        }
        rustls::Error::InvalidCertificate(C::NotValidYetContext { not_before, .. }) => {
            IdentityError::NotYetValid {
                file: files.cert.clone(),
                not_before: rfc3339(not_before.as_secs() as i64),
            }
        }
        rustls::Error::InvalidCertificate(C::NotValidYet) => IdentityError::NotYetValid {
            file: files.cert.clone(),
            not_before: "a later time".into(),
        },
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            IdentityError::WrongCa {
                cert: files.cert.clone(),
                bundle: files.bundle.clone(),
            }
        }
        other => IdentityError::Invalid {
            file: files.cert.clone(),
            reason: other.to_string(),
        },
    }
}
