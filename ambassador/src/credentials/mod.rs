//! Credential providers: one module per kind, behind one small trait. A route's provider is
//! wrapped in a `RouteCredential`, the proxy-core request hook that removes the client's own
//! credential, applies the provider on every attempt (last, so signatures cover what goes
//! out) and, on a 401, lets the provider drop a cached token for one more attempt.

pub mod basic;
pub mod header;
pub mod hmac;
pub mod oauth2;
pub mod query;
pub mod sigv4;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, StatusCode};
use prometheus_client::metrics::counter::Counter;
use proxy_core::error::ProxyError;
use proxy_core::http::inject::{PrepareFuture, RequestHook};
use serde::{Deserialize, Serialize};

use crate::metrics::AmbassadorMetrics;
use crate::secret::{SecretCell, SecretSource};

/// Puts a credential on a request.
pub trait CredentialProvider: Send + Sync {
    /// Put the credential on one attempt's request head. `body` is the whole body when it is
    /// held (signers hash it).
    fn apply<'a>(&'a self, req: &'a mut Parts, body: Option<&'a Bytes>) -> PrepareFuture<'a>;

    /// The upstream refused the credential (401): drop what is cached. `true` when a fresh
    /// credential can be had, so one more attempt is worth it.
    fn refused(&self) -> bool {
        false
    }
}

/// The `credential:` block of a route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// A header with the secret, after a prefix (`Bearer `).
    Header {
        #[serde(default = "authorization")]
        header: String,
        #[serde(default)]
        prefix: String,
        secret: SecretSource,
    },
    /// An API key in a query parameter.
    Query { param: String, secret: SecretSource },
    /// HTTP basic auth.
    Basic {
        username: SecretSource,
        password: SecretSource,
    },
    /// OAuth2 client credentials.
    Oauth2(oauth2::OAuth2Config),
    /// AWS Signature Version 4.
    AwsSigv4 {
        service: String,
        region: String,
        access_key_id: SecretSource,
        secret_access_key: SecretSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_token: Option<SecretSource>,
    },
    /// An HMAC of a canonical string, in a header.
    Hmac(hmac::HmacConfig),
}

fn authorization() -> String {
    "authorization".into()
}

impl CredentialConfig {
    /// The header that carries the credential (removed from the client's request unless the
    /// route keeps it); `None` for a query parameter.
    pub fn header(&self) -> Option<String> {
        match self {
            CredentialConfig::Header { header, .. } => Some(header.clone()),
            CredentialConfig::Query { .. } => None,
            CredentialConfig::Basic { .. } | CredentialConfig::AwsSigv4 { .. } => {
                Some(authorization())
            }
            CredentialConfig::Oauth2(o) => Some(o.header.clone()),
            CredentialConfig::Hmac(h) => Some(h.header.clone()),
        }
    }
}

/// Secrets read at start, with the problems of those that could not be, by field.
pub struct Opened {
    pub problems: Vec<(String, String)>,
}

impl Opened {
    fn open(&mut self, field: &str, src: &SecretSource) -> Option<SecretCell> {
        match SecretCell::open(src) {
            Ok(c) => Some(c),
            Err(e) => {
                self.problems.push((field.to_owned(), e));
                None
            }
        }
    }
}

fn header_name(path: &str, name: &str, problems: &mut Vec<(String, String)>) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            problems.push((path.to_owned(), format!("invalid header name {name:?}")));
            None
        }
    }
}

/// Build a route's provider, opening its secrets. Problems come back with their field path
/// under `path`.
pub fn build(
    route: &str,
    path: &str,
    cfg: &CredentialConfig,
    metrics: &AmbassadorMetrics,
) -> Result<Box<dyn CredentialProvider>, Vec<(String, String)>> {
    let mut o = Opened {
        problems: Vec::new(),
    };
    let provider: Option<Box<dyn CredentialProvider>> = match cfg {
        CredentialConfig::Header {
            header,
            prefix,
            secret,
        } => {
            let name = header_name(&format!("{path}.header"), header, &mut o.problems);
            let secret = o.open(&format!("{path}.secret"), secret);
            if HeaderValue::from_str(prefix).is_err() {
                o.problems
                    .push((format!("{path}.prefix"), "invalid header value".into()));
            }
            match (name, secret) {
                (Some(name), Some(secret)) => Some(Box::new(header::StaticHeader {
                    name,
                    prefix: prefix.clone(),
                    secret,
                    route: route.into(),
                })),
                _ => None,
            }
        }
        CredentialConfig::Query { param, secret } => {
            if param.is_empty() {
                o.problems
                    .push((format!("{path}.param"), "must not be empty".into()));
            }
            o.open(&format!("{path}.secret"), secret).map(|secret| {
                Box::new(query::QueryParam {
                    param: param.clone(),
                    secret,
                }) as Box<dyn CredentialProvider>
            })
        }
        CredentialConfig::Basic { username, password } => {
            let u = o.open(&format!("{path}.username"), username);
            let p = o.open(&format!("{path}.password"), password);
            match (u, p) {
                (Some(username), Some(password)) => Some(Box::new(basic::Basic {
                    username,
                    password,
                    route: route.into(),
                })),
                _ => None,
            }
        }
        CredentialConfig::Oauth2(c) => oauth2::OAuth2::build(route, path, c, metrics, &mut o)
            .map(|p| Box::new(p) as Box<dyn CredentialProvider>),
        CredentialConfig::AwsSigv4 {
            service,
            region,
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            for (field, v) in [("service", service), ("region", region)] {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    o.problems
                        .push((format!("{path}.{field}"), format!("invalid {field} {v:?}")));
                }
            }
            let id = o.open(&format!("{path}.access_key_id"), access_key_id);
            let key = o.open(&format!("{path}.secret_access_key"), secret_access_key);
            let token = session_token
                .as_ref()
                .map(|t| o.open(&format!("{path}.session_token"), t));
            match (id, key, token) {
                (Some(id), Some(key), None) => Some(Box::new(sigv4::SigV4 {
                    service: service.clone(),
                    region: region.clone(),
                    access_key_id: id,
                    secret_access_key: key,
                    session_token: None,
                })),
                (Some(id), Some(key), Some(Some(t))) => Some(Box::new(sigv4::SigV4 {
                    service: service.clone(),
                    region: region.clone(),
                    access_key_id: id,
                    secret_access_key: key,
                    session_token: Some(t),
                })),
                _ => None,
            }
        }
        CredentialConfig::Hmac(c) => hmac::HmacSigner::build(route, path, c, &mut o)
            .map(|p| Box::new(p) as Box<dyn CredentialProvider>),
    };
    match provider {
        Some(p) if o.problems.is_empty() => Ok(p),
        _ => Err(o.problems),
    }
}

/// The credential unavailable error for a route, for providers.
pub fn unavailable(route: &Arc<str>, detail: impl Into<String>) -> ProxyError {
    ProxyError::CredentialUnavailable {
        route: route.clone(),
        detail: detail.into(),
    }
}

/// A header value that is a secret: marked sensitive so HTTP/2's HPACK never indexes it.
pub fn secret_header(route: &Arc<str>, value: &str) -> Result<HeaderValue, ProxyError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| unavailable(route, "the secret is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The proxy-core hook of one route.
pub struct RouteCredential {
    /// The client's own credential header, removed unless the route keeps it.
    pub remove: Option<HeaderName>,
    pub provider: Box<dyn CredentialProvider>,
    pub injected: Counter,
}

impl RequestHook for RouteCredential {
    fn prepare<'a>(&'a self, req: &'a mut Parts, body: Option<&'a Bytes>) -> PrepareFuture<'a> {
        if let Some(h) = &self.remove {
            req.headers.remove(h);
        }
        let applying = self.provider.apply(req, body);
        Box::pin(async move {
            applying.await?;
            self.injected.inc();
            Ok(())
        })
    }

    fn rejected(&self, status: StatusCode) -> bool {
        status == StatusCode::UNAUTHORIZED && self.provider.refused()
    }
}

/// Hooks by (listener, route).
pub struct Hooks(pub BTreeMap<(String, String), Arc<RouteCredential>>);

impl proxy_core::http::inject::RouteHooks for Hooks {
    fn hook(&self, listener: &str, route: &str) -> Option<Arc<dyn RequestHook>> {
        self.0
            .get(&(listener.to_owned(), route.to_owned()))
            .map(|h| h.clone() as Arc<dyn RequestHook>)
    }
}
