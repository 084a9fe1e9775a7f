//! HTTP basic auth (RFC 7617): `Authorization: Basic base64(username:password)`.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use proxy_core::http::inject::PrepareFuture;

use super::{CredentialProvider, secret_header};
use crate::secret::SecretCell;

pub struct Basic {
    pub username: SecretCell,
    pub password: SecretCell,
    pub route: Arc<str>,
}

impl CredentialProvider for Basic {
    fn apply<'a>(&'a self, req: &'a mut Parts, _body: Option<&'a Bytes>) -> PrepareFuture<'a> {
        let pair = format!(
            "{}:{}",
            self.username.get().expose(),
            self.password.get().expose()
        );
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        let done = secret_header(&self.route, &value).map(|v| {
            req.headers.insert(AUTHORIZATION, v);
        });
        Box::pin(std::future::ready(done))
    }
}
