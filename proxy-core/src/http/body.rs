//! Body types on both sides of the proxy, streamed frame by frame, never buffered whole.
//!
//! `ResponseBody` also ends the request's life: when its last frame has been sent (or the
//! client goes away) it records the metrics and the access log line and, for HTTP/1, hands
//! the upstream connection back to the pool. Doing it here rather than when the headers
//! come back is what makes durations and byte counts true for streamed responses.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::proxy::Finish;

/// The request body sent upstream: the client's stream, counted when the access log wants it.
pub struct RequestBody {
    inner: Incoming,
    received: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub fn new(inner: Incoming, received: Option<Arc<AtomicU64>>) -> Self {
        RequestBody { inner, received }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let (Some(Ok(f)), Some(n)) = (&frame, &self.received)
            && let Some(d) = f.data_ref()
        {
            n.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

enum Kind {
    Upstream(Incoming),
    Local(Option<Bytes>),
}

/// The response body sent to the client.
pub struct ResponseBody {
    kind: Kind,
    /// HTTP/1 upstream connection to pool once the body has been read to its end.
    pooled: Option<http1::SendRequest<RequestBody>>,
    finish: Option<Finish>,
    sent: u64,
}

impl ResponseBody {
    pub fn upstream(
        body: Incoming,
        pooled: Option<http1::SendRequest<RequestBody>>,
        finish: Finish,
    ) -> Self {
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
        if let Some(tx) = self.pooled.take()
            && let Some(f) = &self.finish
        {
            f.return_connection(tx);
        }
        if let Some(f) = self.finish.take() {
            f.done(self.sent);
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
                let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
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
