//! An API key in a query parameter (`?api_key=...`). A parameter of the same name sent by
//! the client is replaced, never duplicated.

use bytes::Bytes;
use http::Uri;
use http::request::Parts;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proxy_core::http::inject::PrepareFuture;

use super::CredentialProvider;
use crate::secret::SecretCell;

/// RFC 3986 unreserved characters stay as they are; everything else is escaped.
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub struct QueryParam {
    pub param: String,
    pub secret: SecretCell,
}

/// `query` without pairs named `param`, then `param=value` (already encoded) appended.
pub fn with_param(query: Option<&str>, param: &str, encoded_value: &str) -> String {
    let mut out = String::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if name == param {
            continue;
        }
        out.push_str(pair);
        out.push('&');
    }
    out.push_str(param);
    out.push('=');
    out.push_str(encoded_value);
    out
}

impl CredentialProvider for QueryParam {
    fn apply<'a>(&'a self, req: &'a mut Parts, _body: Option<&'a Bytes>) -> PrepareFuture<'a> {
        let secret = self.secret.get();
        let value = utf8_percent_encode(secret.expose(), QUERY_VALUE).to_string();
        let query = with_param(req.uri.query(), &self.param, &value);
        let pq = format!("{}?{query}", req.uri.path());
        let mut parts = req.uri.clone().into_parts();
        parts.path_and_query = pq.parse().ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            req.uri = uri;
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_clients_own_parameter() {
        assert_eq!(with_param(None, "key", "s"), "key=s");
        assert_eq!(
            with_param(Some("a=1&key=mine&b=2"), "key", "s"),
            "a=1&b=2&key=s"
        );
        assert_eq!(with_param(Some("keyx=1"), "key", "s"), "keyx=1&key=s");
    }
}
