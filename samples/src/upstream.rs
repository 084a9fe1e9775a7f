//! The plain-HTTP client the order service and the API caller use to reach their local
//! proxy (a sidecar's outbound listener, the ambassador). Services never speak TLS or hold
//! secrets themselves: that is the proxies' job.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::service::read_body;

/// What came back from the proxy.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON when it is JSON, else as a string, for embedding in an answer.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&self.body).into_owned().into())
    }

    /// The proxy's reason for a local reply (`x-sidecar-error`), when it made one.
    pub fn proxy_error(&self) -> Option<String> {
        crate::service::header_text(&self.headers, "x-sidecar-error")
    }
}

/// A pooled HTTP/1.1 client toward one local proxy.
#[derive(Clone)]
pub struct Proxy {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://ip:port` of the proxy's listener.
    base: String,
    timeout: Duration,
}

impl Proxy {
    pub fn new(base: &str, timeout: Duration) -> Proxy {
        Proxy {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.trim_end_matches('/').to_owned(),
            timeout,
        }
    }

    /// Send `method path` to the proxy, with `Host: host` when given (the name of the
    /// service to reach: the proxy routes by it) and the extra `headers`.
    pub async fn send(
        &self,
        method: Method,
        host: Option<&str>,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(host) = host {
            req = req.header(http::header::HOST, host);
        }
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        if !body.is_empty() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("{} did not answer within {:?}", self.base, self.timeout))?
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let (parts, body) = resp.into_parts();
        let body = read_body(body, self.timeout).await?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
