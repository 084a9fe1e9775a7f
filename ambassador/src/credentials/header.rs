//! A static header: an API key in any header, after an optional prefix (`Bearer `).

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderName;
use http::request::Parts;
use proxy_core::http::inject::PrepareFuture;

use super::{CredentialProvider, secret_header};
use crate::secret::SecretCell;

pub struct StaticHeader {
    pub name: HeaderName,
    pub prefix: String,
    pub secret: SecretCell,
    pub route: Arc<str>,
}

impl StaticHeader {
    fn set(&self, req: &mut Parts) -> Result<(), proxy_core::error::ProxyError> {
        let secret = self.secret.get();
        let mut value = String::with_capacity(self.prefix.len() + secret.expose().len());
        value.push_str(&self.prefix);
        value.push_str(secret.expose());
        req.headers
            .insert(self.name.clone(), secret_header(&self.route, &value)?);
        Ok(())
    }
}

impl CredentialProvider for StaticHeader {
    fn apply<'a>(&'a self, req: &'a mut Parts, _body: Option<&'a Bytes>) -> PrepareFuture<'a> {
        let done = self.set(req);
        Box::pin(std::future::ready(done))
    }
}
