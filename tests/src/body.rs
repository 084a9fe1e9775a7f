//! Request and response bodies for tests: small fixed ones, and large deterministic streams that
//! are generated and checked chunk by chunk, so a 64 MiB transfer never sits in the test's memory
//! and corruption, truncation or reordering shows up as a different length or hash.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::{self, StreamExt as _};
use http::HeaderMap;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody, combinators::BoxBody};
use xxhash_rust::xxh3::Xxh3;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every harness client and server sends.
pub type Body = BoxBody<Bytes, BoxError>;

const CHUNK: usize = 64 * 1024;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `data` followed by a trailers frame.
pub fn with_trailers(data: impl Into<Bytes>, trailers: HeaderMap) -> Body {
    then_trailers(full(data), trailers)
}

/// `body`'s frames followed by a trailers frame. The result has no known length, which is what
/// makes an HTTP/1 sender choose chunked encoding, the only framing that can carry trailers.
pub fn then_trailers(body: Body, trailers: HeaderMap) -> Body {
    let frames = BodyStream::new(body).chain(stream::once(async { Ok(Frame::trailers(trailers)) }));
    BodyExt::boxed(StreamBody::new(frames))
}

/// A streamed body of `len` bytes in 64 KiB chunks. Every chunk starts with its index, so a
/// chunk dropped, repeated or swapped changes the hash.
pub fn pattern(len: u64) -> Body {
    let chunks = stream::unfold(0u64, move |sent| async move {
        (sent < len).then(|| {
            let chunk = pattern_chunk(sent, len);
            let next = sent + chunk.len() as u64;
            (Ok(Frame::data(chunk)), next)
        })
    });
    BodyExt::boxed(StreamBody::new(chunks))
}

/// The length and hash a receiver of `pattern(len)` must see.
pub fn pattern_digest(len: u64) -> Digest {
    let mut d = Digester::default();
    let mut at = 0;
    while at < len {
        let chunk = pattern_chunk(at, len);
        at += chunk.len() as u64;
        d.update(&chunk);
    }
    d.finish()
}

fn pattern_chunk(offset: u64, len: u64) -> Bytes {
    static BASE: OnceLock<Bytes> = OnceLock::new();
    let base = BASE.get_or_init(|| (0..CHUNK).map(|i| (i * 7 + i / 251) as u8).collect());
    let n = usize::try_from((len - offset).min(CHUNK as u64)).expect("a chunk fits in memory");
    let mut chunk = BytesMut::with_capacity(n);
    chunk.extend_from_slice(&base[..n]);
    let index = (offset / CHUNK as u64).to_le_bytes();
    let stamp = index.len().min(n);
    chunk[..stamp].copy_from_slice(&index[..stamp]);
    chunk.freeze()
}

/// Length and xxh3 hash of a body, computed as it streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    pub len: u64,
    pub hash: u64,
}

#[derive(Default)]
pub struct Digester {
    len: u64,
    hasher: Xxh3,
}

impl Digester {
    pub fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        self.hasher.update(data);
    }

    pub fn finish(&self) -> Digest {
        Digest {
            len: self.len,
            hash: self.hasher.digest(),
        }
    }
}

/// Digest of `data` as one buffer.
pub fn digest(data: &[u8]) -> Digest {
    let mut d = Digester::default();
    d.update(data);
    d.finish()
}

/// Reads a body to its end without keeping it, returning its digest and trailers.
pub async fn consume<B>(body: B) -> Result<(Digest, Option<HeaderMap>), B::Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut body = body;
    let mut d = Digester::default();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            d.update(data);
        } else if let Ok(t) = frame.into_trailers() {
            trailers.get_or_insert_with(HeaderMap::new).extend(t);
        }
    }
    Ok((d.finish(), trailers))
}

/// Collects a body into memory, with its trailers; for small bodies only.
pub async fn collect<B>(body: B) -> Result<(Bytes, Option<HeaderMap>), B::Error>
where
    B: http_body::Body<Data = Bytes>,
{
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

/// Bytes `n` long, for a body that must be more than a buffer but fits in memory.
pub fn filler(n: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(n);
    b.put_bytes(b'x', n);
    b.freeze()
}
