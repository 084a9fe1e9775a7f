//! SPIFFE IDs: the workload identity carried in a certificate's URI SAN
//! (`spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`), parsed by the rules of
//! the SPIFFE ID standard, and read out of a DER certificate.

use std::fmt;
use std::str::FromStr;

use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// The standard's upper bound on the length of an ID, in bytes.
const MAX_LEN: usize = 2048;

/// A parsed SPIFFE ID. The path is kept without its leading slash; it may be empty (the ID
/// of the trust domain itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("{0:?} is not a SPIFFE ID: it must start with \"spiffe://\"")]
    Scheme(String),
    #[error("{0:?} has an empty trust domain")]
    EmptyTrustDomain(String),
    #[error(
        "{0:?}: the trust domain may only hold lowercase letters, digits, '.', '-' and '_' (no port or user info)"
    )]
    TrustDomain(String),
    #[error(
        "{0:?}: each path segment must be non-empty, not '.' or '..', and hold only letters, digits, '.', '-' and '_'"
    )]
    Path(String),
    #[error("{0:?} is longer than {MAX_LEN} bytes")]
    TooLong(String),
}

impl SpiffeId {
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path after the trust domain, without the leading slash.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The namespace of a Kubernetes-style ID (`ns/<namespace>/...`).
    pub fn namespace(&self) -> Option<&str> {
        let mut segs = self.path.split('/');
        (segs.next() == Some("ns")).then(|| segs.next()).flatten()
    }

    /// The service account of a Kubernetes-style ID (`ns/<namespace>/sa/<account>`).
    pub fn service_account(&self) -> Option<&str> {
        let segs: Vec<&str> = self.path.split('/').collect();
        match segs.as_slice() {
            ["ns", _, "sa", sa] => Some(sa),
            _ => None,
        }
    }

    /// Whether this ID lies at or under `prefix_path` (segment-aligned) in `trust_domain`.
    pub fn is_under(&self, trust_domain: &str, prefix_path: &str) -> bool {
        self.trust_domain == trust_domain
            && (prefix_path.is_empty()
                || self.path == prefix_path
                || self
                    .path
                    .strip_prefix(prefix_path)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

fn valid_trust_domain(td: &str) -> bool {
    td.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
}

/// Validate a path (without its leading slash) segment by segment.
pub(super) fn valid_path(path: &str) -> bool {
    path.is_empty()
        || path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.len() > MAX_LEN {
            return Err(SpiffeIdError::TooLong(s.chars().take(64).collect()));
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| SpiffeIdError::Scheme(s.to_owned()))?;
        let (td, path) = match rest.split_once('/') {
            Some((td, path)) => (td, path),
            None => (rest, ""),
        };
        if td.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain(s.to_owned()));
        }
        if !valid_trust_domain(td) {
            return Err(SpiffeIdError::TrustDomain(s.to_owned()));
        }
        // `spiffe://td/` (a trailing slash and nothing else) is not a valid ID either.
        if rest.contains('/') && (path.is_empty() || !valid_path(path)) {
            return Err(SpiffeIdError::Path(s.to_owned()));
        }
        Ok(SpiffeId {
            trust_domain: td.to_owned(),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "spiffe://{}", self.trust_domain)
        } else {
            write!(f, "spiffe://{}/{}", self.trust_domain, self.path)
        }
    }
}

/// Why a certificate carries no usable SPIFFE ID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertIdError {
    #[error("the certificate is not valid DER X.509: {0}")]
    Malformed(String),
    #[error("the certificate has no URI SAN with a SPIFFE ID")]
    Missing,
    #[error("the certificate has {0} SPIFFE IDs in its URI SANs; an X.509-SVID has exactly one")]
    Several(usize),
    #[error("the certificate's URI SAN is not a valid SPIFFE ID: {0}")]
    Invalid(SpiffeIdError),
}

/// What a certificate says about itself that the proxy reports: its SPIFFE ID, serial and
/// validity end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    pub id: SpiffeId,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

/// Read the SPIFFE ID, serial and `notAfter` of a DER certificate.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, CertIdError> {
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| CertIdError::Malformed(e.to_string()))?;
    let tbs = &cert.tbs_certificate;
    let mut ids = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
            continue;
        }
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
            .map_err(|e| CertIdError::Malformed(format!("subjectAltName: {e}")))?;
        for name in san.0 {
            if let GeneralName::UniformResourceIdentifier(uri) = name
                && uri.as_str().starts_with("spiffe://")
            {
                ids.push(uri.as_str().to_owned());
            }
        }
    }
    let id = match ids.len() {
        0 => return Err(CertIdError::Missing),
        1 => ids[0].parse().map_err(CertIdError::Invalid)?,
        n => return Err(CertIdError::Several(n)),
    };
    let serial = tbs
        .serial_number
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let not_after = tbs.validity.not_after.to_unix_duration().as_secs() as i64;
    Ok(CertFacts {
        id,
        serial,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_ids() {
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/cart".parse().unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.path(), "ns/shop/sa/cart");
        assert_eq!(id.namespace(), Some("shop"));
        assert_eq!(id.service_account(), Some("cart"));
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/cart");
        let td: SpiffeId = "spiffe://example.org".parse().unwrap();
        assert_eq!((td.path(), td.namespace()), ("", None));
        let other: SpiffeId = "spiffe://example.org/db/primary".parse().unwrap();
        assert_eq!((other.namespace(), other.service_account()), (None, None));
    }

    #[test]
    fn rejects_what_the_standard_forbids() {
        let bad = [
            ("https://td/ns/a/sa/b", "must start with"),
            ("spiffe:///ns/a", "empty trust domain"),
            ("spiffe://TD/ns/a", "lowercase"),
            ("spiffe://td:443/ns/a", "lowercase"),
            ("spiffe://user@td/ns/a", "lowercase"),
            ("spiffe://td/", "path segment"),
            ("spiffe://td/ns//sa/b", "path segment"),
            ("spiffe://td/ns/a/", "path segment"),
            ("spiffe://td/ns/../sa/b", "path segment"),
            ("spiffe://td/ns/a?x=1", "path segment"),
            ("spiffe://td/ns/a#f", "path segment"),
            ("spiffe://td/ns/a b", "path segment"),
        ];
        for (s, want) in bad {
            let e = s.parse::<SpiffeId>().unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_LEN));
        assert!(matches!(
            long.parse::<SpiffeId>(),
            Err(SpiffeIdError::TooLong(_))
        ));
    }

    #[test]
    fn under_is_segment_aligned() {
        let id: SpiffeId = "spiffe://td/ns/shop/sa/cart".parse().unwrap();
        assert!(id.is_under("td", ""));
        assert!(id.is_under("td", "ns/shop"));
        assert!(id.is_under("td", "ns/shop/sa/cart"));
        assert!(!id.is_under("td", "ns/sho"));
        assert!(!id.is_under("other", "ns/shop"));
    }

    #[test]
    fn reads_the_id_from_a_certificate() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://td/ns/a/sa/b".try_into().unwrap(),
        )];
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let facts = cert_facts(cert.der()).unwrap();
        assert_eq!(facts.id.to_string(), "spiffe://td/ns/a/sa/b");
        assert_eq!(facts.serial, "0ABC");
        assert_eq!(
            facts.not_after,
            params.not_after.unix_timestamp(),
            "notAfter read back"
        );

        params.subject_alt_names = vec![rcgen::SanType::DnsName("a.example".try_into().unwrap())];
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(cert_facts(cert.der()), Err(CertIdError::Missing));
        assert!(matches!(
            cert_facts(b"not der"),
            Err(CertIdError::Malformed(_))
        ));
    }
}
