//! OAuth2 client credentials (RFC 6749 §4.4) with the `oauth2` crate.
//!
//! One task per route owns the token endpoint: it fetches the first token when the first
//! request needs one, refreshes at `refresh_at` of the token's lifetime, and after a failure
//! retries with exponential backoff (0.5 s doubling to 30 s). Requests never call the token
//! endpoint themselves: they read the cached token with one atomic load, so 1000 concurrent
//! requests at a cold start cause exactly one token request. A token past its expiry is never
//! sent: while the endpoint fails and no valid token is left, requests get 503
//! `credential_unavailable` naming the route and the endpoint's answer. On a 401 from the
//! upstream the token is dropped and the task fetches a new one at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};
use proxy_core::config::Dur;
use proxy_core::http::inject::PrepareFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{CredentialProvider, Opened, header_name, secret_header, unavailable};
use crate::metrics::{AmbassadorMetrics, TokenStats};
use crate::secret::{REDACTED, SecretCell, SecretSource};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// `Authorization: Basic` with the client id and secret (RFC 6749's preference).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretSource,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Extra form parameters (`audience`, `resource`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// Refresh when this fraction of the token's lifetime has passed.
    #[serde(default = "default_refresh_at")]
    pub refresh_at: f64,
    /// The token's lifetime when the endpoint gives no `expires_in`.
    #[serde(default = "default_lifetime")]
    pub default_lifetime: Dur,
    /// Time allowed for one token request.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout: Dur,
    /// The header the token goes in (`Bearer <token>`).
    #[serde(default = "super::authorization")]
    pub header: String,
    /// Extra CA certificates (PEM) to trust for the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Allow an `http://` token URL (tests, a local token service).
    #[serde(default)]
    pub allow_plain_http: bool,
}

fn default_refresh_at() -> f64 {
    0.8
}
fn default_lifetime() -> Dur {
    Dur::secs(300)
}
fn default_fetch_timeout() -> Dur {
    Dur::secs(10)
}

struct Token {
    value: HeaderValue,
    expires_at: Instant,
}

struct Inner {
    route: Arc<str>,
    token_url: TokenUrl,
    client_id: ClientId,
    secret: SecretCell,
    auth: AuthType,
    scopes: Vec<Scope>,
    params: BTreeMap<String, String>,
    refresh_at: f64,
    default_lifetime: Duration,
    header: HeaderName,
    http: reqwest::Client,
    token: ArcSwapOption<Token>,
    /// Why the last fetch failed, while there is no valid token.
    failure: ArcSwapOption<String>,
    changed: watch::Sender<u64>,
    wake: Notify,
    started: AtomicBool,
    stats: TokenStats,
}

pub struct OAuth2 {
    inner: Arc<Inner>,
    wait_limit: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl OAuth2 {
    pub fn build(
        route: &str,
        path: &str,
        c: &OAuth2Config,
        metrics: &AmbassadorMetrics,
        o: &mut Opened,
    ) -> Option<OAuth2> {
        let url_ok = match c.token_url.split_once("://") {
            Some(("https", _)) => true,
            Some(("http", _)) if c.allow_plain_http => true,
            Some(("http", _)) => {
                o.problems.push((
                    format!("{path}.token_url"),
                    "plain http sends the client secret in the clear; use https or set allow_plain_http: true".into(),
                ));
                false
            }
            _ => false,
        };
        let token_url = match TokenUrl::new(c.token_url.clone()) {
            Ok(u) if url_ok => Some(u),
            Ok(_) | Err(_) => {
                if !o.problems.iter().any(|(p, _)| p.ends_with(".token_url")) {
                    o.problems.push((
                        format!("{path}.token_url"),
                        format!("invalid URL {:?}", c.token_url),
                    ));
                }
                None
            }
        };
        if !(c.refresh_at > 0.0 && c.refresh_at < 1.0) {
            o.problems.push((
                format!("{path}.refresh_at"),
                "must be between 0 and 1 (a fraction of the token's lifetime)".into(),
            ));
        }
        let header = header_name(&format!("{path}.header"), &c.header, &mut o.problems);
        let secret = o.open(&format!("{path}.client_secret"), &c.client_secret);
        let mut http = reqwest::Client::builder()
            // A redirect would resend the client's credentials somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(c.fetch_timeout.get());
        if let Some(ca) = &c.ca_file {
            match std::fs::read(ca).map(|pem| reqwest::Certificate::from_pem_bundle(&pem)) {
                Ok(Ok(certs)) => {
                    for cert in certs {
                        http = http.add_root_certificate(cert);
                    }
                }
                Ok(Err(e)) => o
                    .problems
                    .push((format!("{path}.ca_file"), format!("{ca}: {e}"))),
                Err(e) => o
                    .problems
                    .push((format!("{path}.ca_file"), format!("cannot read {ca}: {e}"))),
            }
        }
        let http = match http.build() {
            Ok(h) => h,
            Err(e) => {
                o.problems.push((
                    path.to_owned(),
                    format!("cannot build the HTTP client: {e}"),
                ));
                return None;
            }
        };
        let inner = Inner {
            route: route.into(),
            token_url: token_url?,
            client_id: ClientId::new(c.client_id.clone()),
            secret: secret?,
            auth: match c.client_auth {
                ClientAuth::Basic => AuthType::BasicAuth,
                ClientAuth::Body => AuthType::RequestBody,
            },
            scopes: c.scopes.iter().cloned().map(Scope::new).collect(),
            params: c.params.clone(),
            refresh_at: c.refresh_at,
            default_lifetime: c.default_lifetime.get(),
            header: header?,
            http,
            token: ArcSwapOption::empty(),
            failure: ArcSwapOption::empty(),
            changed: watch::Sender::new(0),
            wake: Notify::new(),
            started: AtomicBool::new(false),
            stats: metrics.token(route),
        };
        Some(OAuth2 {
            inner: Arc::new(inner),
            wait_limit: c.fetch_timeout.get() + Duration::from_secs(1),
        })
    }

    fn start(&self) {
        if !self.inner.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(refresh_loop(self.inner.clone()));
        }
    }

    /// A valid token, or why there is none; waits while the first fetch is in flight.
    async fn token(&self) -> Result<Arc<Token>, String> {
        let inner = &self.inner;
        let mut rx = inner.changed.subscribe();
        loop {
            if let Some(t) = inner.token.load_full()
                && Instant::now() < t.expires_at
            {
                return Ok(t);
            }
            if let Some(f) = inner.failure.load_full() {
                return Err((*f).clone());
            }
            if rx.changed().await.is_err() {
                return Err("the token task stopped".into());
            }
        }
    }
}

impl CredentialProvider for OAuth2 {
    fn apply<'a>(&'a self, req: &'a mut Parts, _body: Option<&'a Bytes>) -> PrepareFuture<'a> {
        // The common case, a cached valid token: no await, no lock.
        if let Some(t) = self.inner.token.load_full()
            && Instant::now() < t.expires_at
        {
            req.headers
                .insert(self.inner.header.clone(), t.value.clone());
            return Box::pin(std::future::ready(Ok(())));
        }
        self.start();
        Box::pin(async move {
            let got = tokio::time::timeout(self.wait_limit, self.token()).await;
            let token = match got {
                Ok(Ok(t)) => t,
                Ok(Err(why)) => return Err(unavailable(&self.inner.route, why)),
                Err(_) => {
                    return Err(unavailable(
                        &self.inner.route,
                        format!(
                            "no answer from the token endpoint {} in time",
                            self.inner.token_url.as_str()
                        ),
                    ));
                }
            };
            req.headers
                .insert(self.inner.header.clone(), token.value.clone());
            Ok(())
        })
    }

    fn refused(&self) -> bool {
        let inner = &self.inner;
        inner.token.store(None);
        inner.failure.store(None);
        inner.wake.notify_one();
        true
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn refresh_loop(inner: Arc<Inner>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let sleep_for = match fetch(&inner).await {
            Ok((value, lifetime)) => {
                backoff = MIN_BACKOFF;
                let now = Instant::now();
                inner.token.store(Some(Arc::new(Token {
                    value,
                    expires_at: now + lifetime,
                })));
                inner.failure.store(None);
                inner.stats.fetched.inc();
                inner.stats.issued.set(unix_now());
                inner
                    .stats
                    .fetched_at
                    .store(crate::metrics::unix_ms(), Ordering::Relaxed);
                inner
                    .stats
                    .expires
                    .set(unix_now() + lifetime.as_secs() as i64);
                tracing::info!(route = %inner.route, expires_in = ?lifetime, "token fetched");
                lifetime.mul_f64(inner.refresh_at)
            }
            Err(why) => {
                inner.stats.failed.inc();
                tracing::warn!(route = %inner.route, error = %why, retry_in = ?backoff, "token fetch failed");
                // Keep a token that is still valid; report the failure only without one.
                let valid = inner
                    .token
                    .load()
                    .as_ref()
                    .is_some_and(|t| Instant::now() < t.expires_at);
                if !valid {
                    inner.token.store(None);
                    inner.failure.store(Some(Arc::new(why)));
                }
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        inner.changed.send_modify(|n| *n += 1);
        // A token expiring before the next attempt is dropped when it expires, so requests
        // see the failure instead of waiting on a token that is gone.
        let expires = inner.token.load().as_ref().map(|t| t.expires_at);
        tokio::select! {
            _ = tokio::time::sleep(sleep_for) => {}
            _ = inner.wake.notified() => {}
            _ = async {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                inner.token.store(None);
                inner.failure.store(Some(Arc::new(format!("the token expired and the token endpoint {} has not given a new one yet", inner.token_url.as_str()))));
                inner.changed.send_modify(|n| *n += 1);
            }
        }
    }
}

/// Accept `expires_in` given as a string ("3600"), as some providers send it: rewritten as
/// a number before the `oauth2` crate reads the response.
fn numeric_expires_in(body: Vec<u8>) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    let Some(s) = v.get("expires_in").and_then(|e| e.as_str()) else {
        return body;
    };
    let Ok(n) = s.trim().parse::<u64>() else {
        return body;
    };
    v["expires_in"] = serde_json::Value::from(n);
    serde_json::to_vec(&v).unwrap_or(body)
}

/// The `oauth2` crate's HTTP client: reqwest, with string `expires_in` made numeric.
struct TokenHttp(reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for TokenHttp {
    type Error = reqwest::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let resp = self.0.execute(request.try_into()?).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?.to_vec();
            let mut out = HttpResponse::new(numeric_expires_in(body));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

/// One token request. The error is fit for a client: it names the endpoint and its answer
/// and is scrubbed of the client secret.
async fn fetch(inner: &Inner) -> Result<(HeaderValue, Duration), String> {
    // Owned, not a guard: the fetch awaits, and a guard held that long pins a debt slot.
    let secret = arc_swap::Guard::into_inner(inner.secret.get());
    let client = BasicClient::new(inner.client_id.clone())
        .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
        .set_auth_type(inner.auth.clone())
        .set_token_uri(inner.token_url.clone());
    let mut req = client
        .exchange_client_credentials()
        .add_scopes(inner.scopes.iter().cloned());
    for (k, v) in &inner.params {
        req = req.add_extra_param(k.as_str(), v.as_str());
    }
    let send = TokenHttp(inner.http.clone());
    let url = inner.token_url.as_str();
    let result = req.request_async(&send).await;
    let scrub = |m: String| {
        let s = secret.expose();
        if s.is_empty() {
            m
        } else {
            m.replace(s, REDACTED)
        }
    };
    match result {
        Ok(t) => {
            let lifetime = t.expires_in().unwrap_or(inner.default_lifetime);
            let value = secret_header(
                &inner.route,
                &format!("Bearer {}", t.access_token().secret()),
            )
            .map_err(|_| {
                format!(
                    "the token endpoint {url} returned a token that is not a valid header value"
                )
            })?;
            if lifetime.is_zero() {
                return Err(format!(
                    "the token endpoint {url} returned a token that has already expired (expires_in 0)"
                ));
            }
            Ok((value, lifetime))
        }
        Err(RequestTokenError::ServerResponse(e)) => {
            let mut m = format!("the token endpoint {url} refused: {}", e.error());
            if let Some(d) = e.error_description() {
                m.push_str(&format!(" ({d})"));
            }
            Err(scrub(m))
        }
        Err(RequestTokenError::Request(e)) => Err(scrub(format!(
            "cannot reach the token endpoint {url}: {}",
            error_chain(&e)
        ))),
        Err(RequestTokenError::Parse(e, _body)) => Err(scrub(format!(
            "the token endpoint {url} sent an answer that is not a token response: {}",
            e.inner()
        ))),
        Err(RequestTokenError::Other(m)) => Err(scrub(format!("the token endpoint {url}: {m}"))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        m.push_str(": ");
        m.push_str(&s.to_string());
        src = s.source();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_as_a_string_becomes_a_number() {
        let b = numeric_expires_in(
            br#"{"access_token":"t","token_type":"Bearer","expires_in":"3600"}"#.to_vec(),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["expires_in"], 3600);
        let same = br#"{"expires_in":60}"#.to_vec();
        assert_eq!(numeric_expires_in(same.clone()), same);
    }
}
