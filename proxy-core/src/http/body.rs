//! Body types on both sides of the proxy, streamed frame by frame. The one exception: a
//! route with a retry policy holds a small request body (up to its buffer limit) for replay.
//!
//! `ResponseBody` also ends the request's life: when its last frame has been sent (or the
//! client goes away) it records the metrics and the access log line and, for HTTP/1, hands
//! the upstream connection back to the pool. Doing it here rather than when the headers
//! come back is what makes durations and byte counts true for streamed responses.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::client::{self, H1Conn};
use super::proxy::Finish;

/// The request body sent upstream: the client's stream (counted when the access log wants
/// it), or, for a route that retries, the client's body buffered so each attempt can send it.
pub struct RequestBody {
    source: Source,
    received: Option<Arc<AtomicU64>>,
    /// Alive while the body is: see [`RequestBody::watch`].
    alive: Option<Arc<()>>,
}

/// The rare sources keep their bulk behind a box: a request (and this body in it) is moved
/// some fifteen times on its way out, by our futures and hyper's channel, and the common
/// `Stream` case should not pay for the room of the others (136 bytes inline, 56 so).
enum Source {
    Stream(Incoming),
    /// A whole body held for replay; each attempt sends a cheap clone of it.
    Replay {
        data: Option<Bytes>,
        trailers: Option<Box<HeaderMap>>,
    },
    /// A body found over the buffer limit: what was read while finding out, then the rest.
    Prefix(Box<Prefix>),
}

struct Prefix {
    head: Option<Bytes>,
    rest: Incoming,
}

/// A request body read for replay, or found too large to hold.
pub enum Buffered {
    Whole {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Over the limit: sent once, streamed, never retried.
    TooLarge(RequestBody),
}

impl Buffered {
    /// A body for one attempt.
    pub fn replay(&self) -> Option<RequestBody> {
        match self {
            Buffered::Whole { data, trailers } => Some(RequestBody {
                source: Source::Replay {
                    data: (!data.is_empty()).then(|| data.clone()),
                    trailers: trailers.clone().map(Box::new),
                },
                received: None,
                alive: None,
            }),
            Buffered::TooLarge(_) => None,
        }
    }

    /// The body to send once: the whole one, or what was read of a large one and the rest.
    pub fn into_body(self) -> RequestBody {
        match self {
            Buffered::Whole { data, trailers } => RequestBody {
                source: Source::Replay {
                    data: (!data.is_empty()).then_some(data),
                    trailers: trailers.map(Box::new),
                },
                received: None,
                alive: None,
            },
            Buffered::TooLarge(b) => b,
        }
    }
}

impl RequestBody {
    pub fn new(inner: Incoming, received: Option<Arc<AtomicU64>>) -> Self {
        RequestBody {
            source: Source::Stream(inner),
            received,
            alive: None,
        }
    }

    /// A handle that says whether the body is still being sent: hyper drops a request body
    /// once it has written its end (or given up on it). `None` for a body with nothing to
    /// send.
    pub fn watch(&mut self) -> Option<Weak<()>> {
        if self.is_end_stream() {
            return None;
        }
        Some(Arc::downgrade(self.alive.get_or_insert_default()))
    }

    /// Read the client's body for replay, up to `limit` bytes. A body announced (by
    /// `content-length`) or found larger is handed back to stream as it is.
    pub async fn buffer(
        mut inner: Incoming,
        limit: usize,
        received: Option<Arc<AtomicU64>>,
    ) -> Result<Buffered, hyper::Error> {
        if inner.size_hint().lower() > limit as u64 {
            return Ok(Buffered::TooLarge(RequestBody::new(inner, received)));
        }
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0;
        let mut trailers = None;
        while !inner.is_end_stream() {
            let Some(frame) = inner.frame().await else {
                break;
            };
            let frame = match frame?.into_data() {
                Ok(d) => {
                    len += d.len();
                    chunks.push(d);
                    if len > limit {
                        let head = concat(chunks);
                        if let Some(n) = &received {
                            n.fetch_add(head.len() as u64, Ordering::Relaxed);
                        }
                        return Ok(Buffered::TooLarge(RequestBody {
                            source: Source::Prefix(Box::new(Prefix {
                                head: Some(head),
                                rest: inner,
                            })),
                            received,
                            alive: None,
                        }));
                    }
                    continue;
                }
                Err(f) => f,
            };
            if let Ok(t) = frame.into_trailers() {
                trailers = Some(t);
            }
        }
        let data = concat(chunks);
        if let Some(n) = &received {
            n.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(Buffered::Whole { data, trailers })
    }
}

fn concat(mut chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => chunks.concat().into(),
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let inner = match &mut this.source {
            Source::Stream(inner) => inner,
            Source::Replay { data, trailers } => {
                let frame = match data.take() {
                    Some(d) => Some(Frame::data(d)),
                    None => trailers.take().map(|t| Frame::trailers(*t)),
                };
                return Poll::Ready(frame.map(Ok));
            }
            Source::Prefix(p) => match p.head.take() {
                Some(d) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                None => &mut p.rest,
            },
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let (Some(Ok(f)), Some(n)) = (&frame, &this.received)
            && let Some(d) = f.data_ref()
        {
            n.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Stream(inner) => inner.is_end_stream(),
            Source::Replay { data, trailers } => data.is_none() && trailers.is_none(),
            Source::Prefix(p) => p.head.is_none() && p.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Stream(inner) => inner.size_hint(),
            // Trailers need chunked framing on HTTP/1: leave the length open then.
            Source::Replay {
                data,
                trailers: None,
            } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Source::Replay { .. } => SizeHint::default(),
            Source::Prefix(p) => {
                let head = p.head.as_ref().map_or(0, |d| d.len() as u64);
                let rest = p.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + head);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + head);
                }
                hint
            }
        }
    }
}

enum Kind {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

/// The response body sent to the client.
pub struct ResponseBody {
    kind: Kind,
    /// HTTP/1 upstream connection: driven while the body is read, pooled at its end.
    pooled: Option<Box<H1Conn>>,
    finish: Option<Finish>,
    sent: u64,
}

impl ResponseBody {
    pub fn upstream(body: Incoming, pooled: Option<Box<H1Conn>>, finish: Finish) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            pooled,
            finish: Some(finish),
            sent: 0,
        }
    }

    pub fn local(body: Bytes, finish: Option<Finish>) -> Self {
        ResponseBody {
            kind: Kind::Local((!body.is_empty()).then_some(body)),
            pooled: None,
            finish,
            sent: 0,
        }
    }

    /// The body ended normally: pool the connection, record the request.
    fn complete(&mut self) {
        if self.pooled.is_none() && self.finish.is_none() {
            return;
        }
        // One clock read for the request's end, its duration and the pool's idle timer.
        let now = Instant::now();
        if let Some(conn) = self.pooled.take()
            && let Some(f) = &self.finish
        {
            f.return_connection(conn, now);
        }
        if let Some(f) = self.finish.take() {
            f.done(self.sent, now);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // An HTTP/1 connection whose response was not read to the end cannot be reused:
        // dropping its sender closes it.
        let ended = match &self.kind {
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::Local(d) => d.is_none(),
        };
        if !ended {
            self.pooled = None;
        }
        self.complete();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Local(data) => {
                let frame = data.take().map(|d| {
                    this.sent += d.len() as u64;
                    Ok(Frame::data(d))
                });
                if frame.is_none() {
                    this.complete();
                }
                Poll::Ready(frame)
            }
            Kind::Upstream(body) => {
                let frame = ready!(client::poll_frame(this.pooled.as_deref_mut(), body, cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            this.sent += d.len() as u64;
                        }
                        if body.is_end_stream() {
                            this.complete();
                        }
                    }
                    None => this.complete(),
                    Some(Err(_)) => {
                        this.pooled = None;
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::Local(d) => d.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(b) => b.size_hint(),
            Kind::Local(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(data: &'static [u8]) -> RequestBody {
        Buffered::Whole {
            data: Bytes::from_static(data),
            trailers: None,
        }
        .into_body()
    }

    #[test]
    fn a_watched_body_is_seen_gone_once_dropped() {
        let mut body = whole(b"payload");
        let watch = body.watch().expect("a body with data to send is watched");
        assert_eq!(watch.strong_count(), 1, "alive while the body is");
        drop(body);
        assert_eq!(watch.strong_count(), 0, "gone with the body");
    }

    #[test]
    fn a_body_with_nothing_to_send_is_not_watched() {
        assert!(whole(b"").watch().is_none());
    }
}
