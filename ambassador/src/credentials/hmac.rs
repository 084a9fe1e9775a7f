//! HMAC request signing: an HMAC-SHA256 of a canonical string built from a template, sent in
//! a header, with the timestamp it covers in another.
//!
//! Template fields: `{method}`, `{path}` (with the query), `{host}`, `{timestamp}` (Unix
//! seconds), `{body_sha256}` (hex; of the empty string when the body streams).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderName, HeaderValue, header};
use proxy_core::http::inject::PrepareFuture;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::sigv4::sha256_hex;
use super::{CredentialProvider, Opened, header_name, secret_header};
use crate::secret::{SecretCell, SecretSource};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    /// The header that carries the signature.
    #[serde(default = "default_header")]
    pub header: String,
    pub secret: SecretSource,
    /// What is signed; see the module doc for the fields.
    #[serde(default = "default_canonical")]
    pub canonical: String,
    /// The header that carries `{timestamp}`; none when empty.
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Text before the signature in the header value.
    #[serde(default)]
    pub prefix: String,
}

fn default_header() -> String {
    "x-signature".into()
}
fn default_canonical() -> String {
    "{method}\n{path}\n{timestamp}\n{body_sha256}".into()
}
fn default_timestamp_header() -> String {
    "x-timestamp".into()
}

pub struct HmacSigner {
    header: HeaderName,
    timestamp_header: Option<HeaderName>,
    secret: SecretCell,
    canonical: String,
    encoding: Encoding,
    prefix: String,
    route: Arc<str>,
}

impl HmacSigner {
    pub fn build(route: &str, path: &str, c: &HmacConfig, o: &mut Opened) -> Option<HmacSigner> {
        let header = header_name(&format!("{path}.header"), &c.header, &mut o.problems);
        let timestamp_header = if c.timestamp_header.is_empty() {
            Some(None)
        } else {
            header_name(
                &format!("{path}.timestamp_header"),
                &c.timestamp_header,
                &mut o.problems,
            )
            .map(Some)
        };
        let secret = o.open(&format!("{path}.secret"), &c.secret);
        Some(HmacSigner {
            header: header?,
            timestamp_header: timestamp_header?,
            secret: secret?,
            canonical: c.canonical.clone(),
            encoding: c.encoding,
            prefix: c.prefix.clone(),
            route: route.into(),
        })
    }

    /// The canonical string for a request at `timestamp`.
    pub fn canonical(&self, req: &Parts, body: Option<&Bytes>, timestamp: u64) -> String {
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        self.canonical
            .replace("{method}", req.method.as_str())
            .replace("{path}", path)
            .replace("{host}", host)
            .replace("{timestamp}", &timestamp.to_string())
            .replace(
                "{body_sha256}",
                &sha256_hex(body.map_or(&b""[..], |b| &b[..])),
            )
    }

    pub fn sign(
        &self,
        req: &mut Parts,
        body: Option<&Bytes>,
        timestamp: u64,
    ) -> Result<(), proxy_core::error::ProxyError> {
        let text = self.canonical(req, body, timestamp);
        let mut m = Hmac::<Sha256>::new_from_slice(self.secret.get().expose().as_bytes())
            .expect("HMAC takes any key length");
        m.update(text.as_bytes());
        let mac = m.finalize().into_bytes();
        let sig = match self.encoding {
            Encoding::Hex => hex::encode(mac),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(mac),
        };
        let value = secret_header(&self.route, &format!("{}{sig}", self.prefix))?;
        req.headers.insert(self.header.clone(), value);
        if let Some(t) = &self.timestamp_header {
            req.headers.insert(t.clone(), HeaderValue::from(timestamp));
        }
        Ok(())
    }
}

impl CredentialProvider for HmacSigner {
    fn apply<'a>(&'a self, req: &'a mut Parts, body: Option<&'a Bytes>) -> PrepareFuture<'a> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let done = self.sign(req, body, now);
        Box::pin(std::future::ready(done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_canonical_string() {
        let c: HmacConfig = serde_norway::from_str("{secret: {value: key}}").unwrap();
        let mut o = Opened {
            problems: Vec::new(),
        };
        let s = HmacSigner::build("r", "routes[0].credential", &c, &mut o).unwrap();
        let (mut parts, ()) = http::Request::post("/v1/x?a=1")
            .body(())
            .unwrap()
            .into_parts();
        let body = Bytes::from_static(b"{}");
        s.sign(&mut parts, Some(&body), 1700000000).unwrap();
        let text = format!("POST\n/v1/x?a=1\n1700000000\n{}", sha256_hex(b"{}"));
        let mut m = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        m.update(text.as_bytes());
        assert_eq!(
            parts.headers["x-signature"],
            hex::encode(m.finalize().into_bytes())
        );
        assert_eq!(parts.headers["x-timestamp"], "1700000000");
    }
}
