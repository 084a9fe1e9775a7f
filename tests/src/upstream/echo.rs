//! The echo reply: what the upstream saw, as JSON, so a test can assert on what the proxy
//! forwarded (headers added and removed, path rewritten or not, body intact).

use http::HeaderMap;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::body::{self, Digest};

/// What an echo upstream received.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Echoed {
    /// Name of the replica that answered.
    pub upstream: String,
    pub method: String,
    /// Path and query as received.
    pub uri: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// In received order; repeated names appear once per value.
    pub headers: Vec<(String, String)>,
    pub body: Digest,
    pub trailers: Vec<(String, String)>,
}

impl Echoed {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the request body to its end (hashing, not keeping it) and describes the request.
    pub(super) async fn receive(
        upstream: &str,
        req: http::Request<Incoming>,
    ) -> Result<Echoed, hyper::Error> {
        let (parts, incoming) = req.into_parts();
        let (digest, trailers) = body::consume(incoming).await?;
        Ok(Echoed {
            upstream: upstream.to_owned(),
            method: parts.method.to_string(),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.to_string(), ToString::to_string),
            version: format!("{:?}", parts.version),
            headers: pairs(&parts.headers),
            body: digest,
            trailers: trailers.as_ref().map(pairs).unwrap_or_default(),
        })
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
