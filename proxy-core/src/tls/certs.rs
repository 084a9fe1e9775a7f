//! `sidecar certs`: a small development CA for the mesh. `ca` makes a self-signed CA for a
//! trust domain; `issue` makes a workload certificate (an X.509-SVID: one SPIFFE ID in the
//! URI SAN, usable for client and server auth) and writes the three files the `identity`
//! config block reads. Files are written to a temporary name and renamed, so a sidecar
//! watching the directory never reads half a file. In production an issuer such as
//! cert-manager's csi-driver-spiffe or SPIRE does this job.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use x509_cert::der::{Decode, Tag, Tagged};

use super::identity::{self, IdentityFiles};
use super::spiffe::{SpiffeId, SpiffeIdError, cert_facts};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";
pub const BUNDLE: &str = "bundle.pem";

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("invalid trust domain {0:?}: use lowercase letters, digits, '.', '-' and '_'")]
    TrustDomain(String),
    #[error("invalid --spiffe-id: {0}")]
    SpiffeId(SpiffeIdError),
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot write: {source}", file.display())]
    Write {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: already exists; pass --force to replace the CA (every certificate it issued stops being trusted)", file.display())]
    Exists { file: PathBuf },
    #[error("{}: {reason}", file.display())]
    BadCa { file: PathBuf, reason: String },
    #[error(
        "the SPIFFE ID's trust domain {id_domain:?} is not the CA's ({ca_domain:?}): peers of one trust domain would refuse it"
    )]
    TrustDomainMismatch {
        id_domain: String,
        ca_domain: String,
    },
    #[error("the CA in {} expires at {ca_not_after}, before the requested certificate would (at {not_after}); shorten --lifetime or make a new CA", file.display())]
    OutlivesCa {
        file: PathBuf,
        ca_not_after: String,
        not_after: String,
    },
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the issued files do not load: {0}")]
    Check(#[from] identity::IdentityError),
}

fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
}

fn validity(backdate: Duration, lifetime: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    let start = now - backdate;
    (start, start + lifetime)
}

/// Write `data` to `dir/name` through a temporary file and a rename; `secret` files are
/// readable by their owner only.
fn write_atomic(dir: &Path, name: &str, data: &[u8], secret: bool) -> Result<PathBuf, CertsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let werr = |source| CertsError::Write {
        file: file.clone(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(werr)?;
    f.write_all(data).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    std::fs::rename(&tmp, &file).map_err(werr)?;
    Ok(file)
}

fn create_dir(dir: &Path) -> Result<(), CertsError> {
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        file: dir.to_owned(),
        source,
    })
}

/// What `certs ca` made.
#[derive(Debug)]
pub struct CaMade {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Make a self-signed CA for `trust_domain` in `out`.
pub fn create_ca(
    out: &Path,
    trust_domain: &str,
    lifetime: Duration,
    force: bool,
) -> Result<CaMade, CertsError> {
    if !valid_trust_domain(trust_domain) {
        return Err(CertsError::TrustDomain(trust_domain.to_owned()));
    }
    create_dir(out)?;
    let key_path = out.join(CA_KEY);
    if key_path.exists() && !force {
        return Err(CertsError::Exists { file: key_path });
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{trust_domain} mesh CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // SPIFFE: a signing certificate may carry the trust domain's own ID.
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    (params.not_before, params.not_after) = validity(Duration::from_secs(60), lifetime);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key_file = write_atomic(out, CA_KEY, key.serialize_pem().as_bytes(), true)?;
    let cert_file = write_atomic(out, CA_CERT, cert.pem().as_bytes(), false)?;
    Ok(CaMade {
        cert: cert_file,
        key: key_file,
    })
}

/// What `certs issue` made.
#[derive(Debug)]
pub struct Issued {
    pub files: IdentityFiles,
    pub serial: String,
    pub not_after: String,
}

/// Rebuild the CA's subject name exactly as its certificate encodes it: issued
/// certificates must name their issuer byte for byte.
fn ca_subject(ca_der: &[u8], file: &Path) -> Result<(DistinguishedName, i64), CertsError> {
    let bad = |reason: String| CertsError::BadCa {
        file: file.to_owned(),
        reason,
    };
    let cert = x509_cert::Certificate::from_der(ca_der)
        .map_err(|e| bad(format!("not a valid certificate: {e}")))?;
    let mut dn = DistinguishedName::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let arcs: Vec<u64> = atv.oid.arcs().map(u64::from).collect();
            let text = String::from_utf8(atv.value.value().to_vec())
                .map_err(|_| bad("the subject name is not text".into()))?;
            let value = match atv.value.tag() {
                Tag::Utf8String => DnValue::Utf8String(text),
                Tag::PrintableString => DnValue::PrintableString(
                    text.as_str()
                        .try_into()
                        .map_err(|_| bad("the subject name is not printable".into()))?,
                ),
                Tag::Ia5String => DnValue::Ia5String(
                    text.as_str()
                        .try_into()
                        .map_err(|_| bad("the subject name is not ASCII".into()))?,
                ),
                other => {
                    return Err(bad(format!(
                        "the subject name uses {other:?}; only UTF8String, PrintableString and IA5String are supported"
                    )));
                }
            };
            dn.push(DnType::from_oid(&arcs), value);
        }
    }
    let not_after = cert
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs() as i64;
    Ok((dn, not_after))
}

/// Issue a workload certificate for `spiffe_id` from the CA in `ca_dir` and write
/// `cert.pem`, `key.pem` and `bundle.pem` (the CA) to `out`. `backdate` starts the
/// validity that long ago (clock skew; or, longer than `lifetime`, an expired certificate
/// for tests).
pub fn issue(
    ca_dir: &Path,
    spiffe_id: &str,
    lifetime: Duration,
    backdate: Duration,
    out: &Path,
) -> Result<Issued, CertsError> {
    let id: SpiffeId = spiffe_id.parse().map_err(CertsError::SpiffeId)?;
    let ca_cert_path = ca_dir.join(CA_CERT);
    let ca_key_path = ca_dir.join(CA_KEY);
    let read = |f: &Path| {
        std::fs::read_to_string(f).map_err(|source| CertsError::Read {
            file: f.to_owned(),
            source,
        })
    };
    let ca_pem = read(&ca_cert_path)?;
    let ca_key_pem = read(&ca_key_path)?;
    let ca_der = {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| CertsError::BadCa {
            file: ca_cert_path.clone(),
            reason: format!("no PEM certificate: {e}"),
        })?
    };
    let ca_domain = cert_facts(&ca_der)
        .map(|f| f.id.trust_domain().to_owned())
        .map_err(|e| CertsError::BadCa {
            file: ca_cert_path.clone(),
            reason: format!("not a mesh CA ({e}); make one with `sidecar certs ca`"),
        })?;
    if ca_domain != id.trust_domain() {
        return Err(CertsError::TrustDomainMismatch {
            id_domain: id.trust_domain().to_owned(),
            ca_domain,
        });
    }
    let (ca_dn, ca_not_after) = ca_subject(&ca_der, &ca_cert_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| CertsError::BadCa {
        file: ca_key_path.clone(),
        reason: format!("not a usable private key: {e}"),
    })?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = ca_dn;
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, id.trust_domain());
    params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity(backdate, lifetime);
    if params.not_after.unix_timestamp() > ca_not_after {
        return Err(CertsError::OutlivesCa {
            file: ca_cert_path,
            ca_not_after: identity::rfc3339(ca_not_after),
            not_after: identity::rfc3339(params.not_after.unix_timestamp()),
        });
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    create_dir(out)?;
    // Key first, certificate last: a watcher that reads in between sees a mismatch it
    // rejects, then the finished set.
    let bundle = write_atomic(out, BUNDLE, ca_pem.as_bytes(), false)?;
    let key_file = write_atomic(out, KEY, key.serialize_pem().as_bytes(), true)?;
    let cert_file = write_atomic(out, CERT, cert.pem().as_bytes(), false)?;
    let files = IdentityFiles {
        cert: cert_file,
        key: key_file,
        bundle,
    };
    let facts = cert_facts(cert.der()).map_err(|e| CertsError::BadCa {
        file: ca_cert_path.clone(),
        reason: e.to_string(),
    })?;
    // An expired certificate was asked for on purpose (backdated): skip the validity check.
    if facts.not_after > OffsetDateTime::now_utc().unix_timestamp() {
        identity::load(&files)?;
    }
    Ok(Issued {
        files,
        serial: facts.serial,
        not_after: identity::rfc3339(facts.not_after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_load_and_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        create_ca(&ca, "td.example", Duration::from_secs(86400), false).unwrap();
        let again = create_ca(&ca, "td.example", Duration::from_secs(86400), false).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");

        let out = dir.path().join("a");
        let issued = issue(
            &ca,
            "spiffe://td.example/ns/a/sa/web",
            Duration::from_secs(3600),
            Duration::ZERO,
            &out,
        )
        .unwrap();
        let creds = identity::load(&issued.files).unwrap();
        assert_eq!(
            creds.facts.id.to_string(),
            "spiffe://td.example/ns/a/sa/web"
        );
        assert_eq!(creds.facts.serial, issued.serial);

        let e = issue(
            &ca,
            "spiffe://other/ns/a/sa/web",
            Duration::from_secs(60),
            Duration::ZERO,
            &out,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not the CA's"), "{e}");
        let e = issue(
            &ca,
            "spiffe://td.example/ns/a/sa/web",
            Duration::from_secs(86400 * 400),
            Duration::ZERO,
            &out,
        )
        .unwrap_err();
        assert!(e.to_string().contains("expires at"), "{e}");

        // Expired: backdated past its lifetime.
        let old = dir.path().join("old");
        issue(
            &ca,
            "spiffe://td.example/ns/a/sa/web",
            Duration::from_secs(3600),
            Duration::from_secs(7200),
            &old,
        )
        .unwrap();
        let e = identity::load(&issued_files(&old)).unwrap_err().to_string();
        assert!(e.contains("cert.pem: the certificate expired at"), "{e}");

        // Wrong CA: a bundle from another CA.
        let other_ca = dir.path().join("other-ca");
        create_ca(&other_ca, "td.example", Duration::from_secs(86400), false).unwrap();
        std::fs::copy(other_ca.join(CA_CERT), out.join(BUNDLE)).unwrap();
        let e = identity::load(&issued_files(&out)).unwrap_err().to_string();
        assert!(
            e.contains("cert.pem: the certificate was not issued by a CA in the trust bundle"),
            "{e}"
        );

        // Missing file.
        std::fs::remove_file(out.join(KEY)).unwrap();
        let e = identity::load(&issued_files(&out)).unwrap_err();
        assert!(e.to_string().contains("key.pem: cannot read"), "{e}");
        assert_eq!(e.field(&issued_files(&out)), "key_file");
    }

    fn issued_files(dir: &Path) -> IdentityFiles {
        IdentityFiles {
            cert: dir.join(CERT),
            key: dir.join(KEY),
            bundle: dir.join(BUNDLE),
        }
    }
}
