//! What an upstream answers: an echo of the request, a large streamed body, nothing
//! at all (hang), or a WebSocket echo; each optionally delayed, with a status, extra headers
//! and trailers.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use hyper::body::Incoming;

use super::echo::Echoed;
use super::websocket;
use crate::body::{self, Body};

#[derive(Clone, Debug)]
enum Kind {
    Echo,
    Pattern(u64),
    Hang,
    WebSocketEcho,
}

#[derive(Clone, Debug)]
pub struct Reply {
    kind: Kind,
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    trailers: HeaderMap,
    delay: Option<Duration>,
}

impl Reply {
    fn of(kind: Kind) -> Self {
        Reply {
            kind,
            status: StatusCode::OK,
            headers: Vec::new(),
            trailers: HeaderMap::new(),
            delay: None,
        }
    }

    /// A JSON [`Echoed`] of the request, after reading its whole body.
    pub fn echo() -> Self {
        Reply::of(Kind::Echo)
    }

    /// A streamed body of `len` bytes from [`body::pattern`].
    pub fn pattern(len: u64) -> Self {
        Reply::of(Kind::Pattern(len))
    }

    /// Never answer; the request stays open until the client gives up.
    pub fn hang() -> Self {
        Reply::of(Kind::Hang)
    }

    /// Accept a WebSocket upgrade and send every message back.
    pub fn websocket_echo() -> Self {
        Reply::of(Kind::WebSocketEcho)
    }

    pub fn status(mut self, code: u16) -> Self {
        self.status = StatusCode::from_u16(code).expect("a valid status code");
        self
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    /// Send `name: value` as a trailer after the body (and announce it in `trailer:`, which
    /// HTTP/1 needs before it will send any).
    pub fn trailer(mut self, name: &'static str, value: &'static str) -> Self {
        self.trailers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        self
    }

    /// Wait this long after the request head arrives before answering.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub(super) async fn respond(
        &self,
        upstream: &str,
        req: http::Request<Incoming>,
    ) -> http::Response<Body> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let body = match &self.kind {
            Kind::Echo => match Echoed::receive(upstream, req).await {
                Ok(echoed) => body::full(serde_json::to_vec(&echoed).expect("echo serializes")),
                Err(e) => return plain(StatusCode::BAD_REQUEST, format!("request body: {e}\n")),
            },
            Kind::Pattern(len) => body::pattern(*len),
            Kind::Hang => std::future::pending().await,
            Kind::WebSocketEcho => return websocket::accept(req),
        };
        let mut resp = http::Response::new(body);
        *resp.status_mut() = self.status;
        for (n, v) in &self.headers {
            resp.headers_mut().append(n, v.clone());
        }
        if !self.trailers.is_empty() {
            let names: Vec<&str> = self.trailers.keys().map(HeaderName::as_str).collect();
            resp.headers_mut().insert(
                http::header::TRAILER,
                HeaderValue::from_str(&names.join(", ")).expect("header names are valid values"),
            );
            resp = resp.map(|b| body::then_trailers(b, self.trailers.clone()));
        }
        resp
    }
}

pub(super) fn plain(status: StatusCode, text: String) -> http::Response<Body> {
    let mut resp = http::Response::new(body::full(text));
    *resp.status_mut() = status;
    resp
}
