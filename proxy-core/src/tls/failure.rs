//! Why a handshake failed, as one stable reason for metrics labels and logs.

use rustls::{AlertDescription, CertificateError, Error};

use super::spiffe::CertIdError;

/// The peer presented a valid certificate with another identity than expected.
#[derive(Debug, thiserror::Error)]
#[error("the peer presents {actual}, but {expected} is expected")]
pub struct IdentityMismatch {
    pub expected: String,
    pub actual: String,
}

/// Wrap our own verification failures so they survive rustls' error type and can be told
/// apart here.
pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
        std::sync::Arc::new(e),
    )))
}

/// The stable reason of a failed handshake (an `io::Error` from tokio-rustls).
pub fn reason(e: &std::io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "connection_closed",
            _ => "io_error",
        };
    };
    match tls {
        Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate_not_yet_valid"
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "unknown_ca",
            CertificateError::Other(o) if o.0.downcast_ref::<IdentityMismatch>().is_some() => {
                "identity_mismatch"
            }
            CertificateError::Other(o) if o.0.downcast_ref::<CertIdError>().is_some() => {
                "no_spiffe_id"
            }
            _ => "bad_certificate",
        },
        Error::NoCertificatesPresented => "no_client_certificate",
        Error::AlertReceived(AlertDescription::CertificateRequired) => "peer_requires_certificate",
        Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied,
        ) => "peer_rejected_certificate",
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => "not_tls",
        _ => "protocol_error",
    }
}

/// A readable account of a failed handshake, for logs and the `x-sidecar-error` body.
pub fn describe(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(CertificateError::Other(o))) => o.0.to_string(),
        Some(Error::AlertReceived(a)) => format!(
            "the peer rejected the handshake with alert {a:?} (does it trust our CA, and is our certificate valid?)"
        ),
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn handshake_failures_have_stable_reasons() {
        let cases = [
            (
                io(Error::InvalidCertificate(CertificateError::Expired)),
                "certificate_expired",
            ),
            (
                io(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                "unknown_ca",
            ),
            (
                io(other(IdentityMismatch {
                    expected: "spiffe://td/a".into(),
                    actual: "spiffe://td/b".into(),
                })),
                "identity_mismatch",
            ),
            (io(other(CertIdError::Missing)), "no_spiffe_id"),
            (io(Error::NoCertificatesPresented), "no_client_certificate"),
            (
                io(Error::AlertReceived(AlertDescription::UnknownCA)),
                "peer_rejected_certificate",
            ),
            (
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                "connection_closed",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(reason(&e), want, "{e}");
        }
        let e = io(other(IdentityMismatch {
            expected: "spiffe://td/a".into(),
            actual: "spiffe://td/b".into(),
        }));
        assert_eq!(
            describe(&e),
            "the peer presents spiffe://td/b, but spiffe://td/a is expected"
        );
    }
}
