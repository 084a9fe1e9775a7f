//! Why a request failed, as the client, the access log and the metrics see it.
//!
//! Every failure the proxy answers itself carries a stable reason (`upstream_connect_failed`,
//! `no_route`, ...) in the `x-sidecar-error` header, the body and the access log: the answer to
//! "was it the app or the proxy?" is on the response itself, never a bare 503.

use http::StatusCode;

/// The header that names the reason of every local reply.
pub const ERROR_HEADER: &str = "x-sidecar-error";

/// A failure on the way to, or back from, an upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matched {0}")]
    NoRoute(String),
    #[error("cluster {0:?} has no endpoint to send to")]
    NoHealthyUpstream(String),
    #[error("connect to {addr} failed: {source}")]
    ConnectFailed {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {0} timed out")]
    ConnectTimeout(std::net::SocketAddr),
    #[error("no response headers within the route timeout of {0:?}")]
    Timeout(std::time::Duration),
    #[error("no response headers within the per-try timeout of {0:?}")]
    PerTryTimeout(std::time::Duration),
    #[error("upstream closed the connection before responding: {0}")]
    Reset(String),
    #[error("upstream refused the stream without processing it: {0}")]
    RefusedStream(String),
    #[error("the circuit breaker of cluster {cluster:?} is open; retry after {retry_after:?}")]
    CircuitOpen {
        cluster: std::sync::Arc<str>,
        retry_after: std::time::Duration,
    },
    #[error("cluster {cluster:?} is at its {resource} limit of {limit}")]
    Overflow {
        cluster: std::sync::Arc<str>,
        resource: &'static str,
        limit: u32,
    },
    #[error("upstream sent a malformed response: {0}")]
    Protocol(String),
    #[error("request headers are {size} bytes; the limit is {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("request has {count} header fields; the limit is {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("aborted by the route's fault injection with status {}", .0.as_u16())]
    FaultAbort(StatusCode),
    #[error("over the rate limit {rule:?}; retry after {}s", crate::ratelimit::whole_seconds(quota.reset))]
    RateLimited {
        rule: std::sync::Arc<str>,
        quota: crate::ratelimit::Quota,
        global: bool,
    },
    #[error(
        "the rate limit {0:?} cannot be checked: its Redis does not answer, and it fails closed"
    )]
    RateLimitUnavailable(std::sync::Arc<str>),
    #[error("{0}")]
    UnauthorizedIdentity(String),
    #[error("route {route:?} is over its local rate limit; retry after {retry_after:?}")]
    LocalRateLimited {
        route: std::sync::Arc<str>,
        retry_after: std::time::Duration,
    },
    /// A route's credential could not be had (a token endpoint failing, a secret file
    /// missing). `detail` must never hold a secret: it reaches the client.
    #[error("route {route:?} has no credential to send: {detail}")]
    CredentialUnavailable {
        route: std::sync::Arc<str>,
        detail: String,
    },
    /// TLS toward an upstream failed: a `tls:` cluster's handshake, or a meshed cluster's
    /// mTLS handshake or peer identity check.
    #[error("TLS handshake with {addr} failed ({kind}): {detail}")]
    UpstreamTls {
        addr: std::net::SocketAddr,
        /// The stable handshake failure reason (`identity_mismatch`, `unknown_ca`, ...).
        kind: &'static str,
        detail: String,
    },
}

impl ProxyError {
    /// The stable reason, for the header, the access log and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::NoRoute(_) => "no_route",
            ProxyError::NoHealthyUpstream(_) => "no_healthy_upstream",
            ProxyError::ConnectFailed { .. } => "upstream_connect_failed",
            ProxyError::ConnectTimeout(_) => "upstream_connect_timeout",
            ProxyError::Timeout(_) => "upstream_timeout",
            ProxyError::PerTryTimeout(_) => "upstream_per_try_timeout",
            ProxyError::Reset(_) => "upstream_reset",
            ProxyError::RefusedStream(_) => "upstream_refused_stream",
            ProxyError::Overflow { .. } => "overflow",
            ProxyError::CircuitOpen { .. } => "circuit_open",
            ProxyError::Protocol(_) => "upstream_protocol_error",
            ProxyError::HeadersTooLarge { .. } => "request_headers_too_large",
            ProxyError::TooManyHeaders { .. } => "too_many_headers",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::FaultAbort(_) => "fault_abort",
            ProxyError::RateLimited { global: false, .. } => "local_rate_limited",
            ProxyError::RateLimited { global: true, .. } => "rate_limited",
            ProxyError::RateLimitUnavailable(_) => "rate_limit_unavailable",
            ProxyError::UnauthorizedIdentity(_) => "unauthorized_identity",
            ProxyError::UpstreamTls {
                kind: "identity_mismatch",
                ..
            } => "upstream_identity_mismatch",
            ProxyError::UpstreamTls { .. } => "upstream_tls_failed",
            ProxyError::LocalRateLimited { .. } => "local_rate_limited",
            ProxyError::CredentialUnavailable { .. } => "credential_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyUpstream(_)
            | ProxyError::RefusedStream(_)
            | ProxyError::Overflow { .. }
            | ProxyError::CircuitOpen { .. }
            | ProxyError::CredentialUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::LocalRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::ConnectFailed { .. }
            | ProxyError::Reset(_)
            | ProxyError::Protocol(_)
            | ProxyError::UpstreamTls { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout(_)
            | ProxyError::Timeout(_)
            | ProxyError::PerTryTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::HeadersTooLarge { .. } | ProxyError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::FaultAbort(status) => *status,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::RateLimitUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UnauthorizedIdentity(_) => StatusCode::FORBIDDEN,
        }
    }

    /// How an upstream attempt failed, as retry policies see it; `None` for failures that
    /// are not the upstream's (no route, a bad request, an overflow) and for malformed
    /// responses, which a retry would most likely get again.
    pub fn upstream_failure(&self) -> Option<UpstreamFailure> {
        match self {
            // A failed handshake is a failed connect: the upstream never saw the request.
            ProxyError::ConnectFailed { .. }
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamTls { .. } => Some(UpstreamFailure::ConnectFailure),
            ProxyError::Reset(_) => Some(UpstreamFailure::Reset),
            ProxyError::RefusedStream(_) => Some(UpstreamFailure::RefusedStream),
            ProxyError::PerTryTimeout(_) => Some(UpstreamFailure::PerTryTimeout),
            _ => None,
        }
    }

    /// Sort a hyper client error from sending a request into reset, refused stream or
    /// protocol error.
    pub fn from_upstream(e: &hyper::Error) -> ProxyError {
        if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            ProxyError::Protocol(e.to_string())
        } else if refused_stream(e) {
            ProxyError::RefusedStream(e.to_string())
        } else {
            let mut msg = e.to_string();
            if let Some(src) = std::error::Error::source(e) {
                msg.push_str(": ");
                msg.push_str(&src.to_string());
            }
            ProxyError::Reset(msg)
        }
    }
}

/// The ways an attempt can fail at the upstream, each mapped to `retry_on` conditions by the
/// retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be made: the upstream never saw the request.
    ConnectFailure,
    /// The connection closed or reset before response headers.
    Reset,
    /// HTTP/2 `REFUSED_STREAM`: the upstream says it did not process the request.
    RefusedStream,
    /// No response headers within the per-try timeout.
    PerTryTimeout,
}

fn refused_stream(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_statuses() {
        let e = ProxyError::NoRoute("GET /x".into());
        assert_eq!((e.reason(), e.status().as_u16()), ("no_route", 404));
        let e = ProxyError::Timeout(std::time::Duration::from_secs(1));
        assert_eq!((e.reason(), e.status().as_u16()), ("upstream_timeout", 504));
        let e = ProxyError::TooManyHeaders {
            count: 200,
            limit: 100,
        };
        assert_eq!((e.reason(), e.status().as_u16()), ("too_many_headers", 431));
        let e = ProxyError::UnauthorizedIdentity("no".into());
        assert_eq!(
            (e.reason(), e.status().as_u16()),
            ("unauthorized_identity", 403)
        );
        let e = ProxyError::UpstreamTls {
            addr: ([127, 0, 0, 1], 1).into(),
            kind: "identity_mismatch",
            detail: String::new(),
        };
        assert_eq!(
            (e.reason(), e.status().as_u16()),
            ("upstream_identity_mismatch", 502)
        );
    }
}
