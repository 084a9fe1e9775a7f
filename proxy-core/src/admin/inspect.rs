//! The live-inspection endpoints: `GET /tap` (a stream of JSON lines) and
//! `GET /debug/failures`. Their logic lives in `telemetry::tap`; this is the HTTP side.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Response, StatusCode, Uri, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};

use super::{AdminState, json, text};
use crate::telemetry::tap::{self, Filter};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The answer for `/tap` and `/debug/failures`; `None` for every other path.
pub fn respond(state: &AdminState, method: &Method, uri: &Uri) -> Option<Response<Body>> {
    let path = uri.path();
    if !matches!(path, "/tap" | "/debug/failures") {
        return None;
    }
    if method != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return Some(r.map(BodyExt::boxed_unsync));
    }
    let filter = match Filter::parse(uri.query()) {
        Ok(f) => f,
        Err(e) => {
            return Some(
                text(StatusCode::BAD_REQUEST, format!("{e}\n")).map(BodyExt::boxed_unsync),
            );
        }
    };
    let tap = state.metrics.tap();
    if path == "/debug/failures" {
        let limit = filter
            .limit
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let (ring, total) = tap.failures();
        let doc = tap::FailuresDoc::new(&ring, total, limit);
        return Some(json(&doc).map(BodyExt::boxed_unsync));
    }
    let body = StreamBody::new(tap::stream(tap.subscribe(), filter));
    let mut r = Response::new(BodyExt::boxed_unsync(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-ndjson"),
    );
    // Each line is sent as it happens; proxies in between must not hold them back.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Some(r)
}
