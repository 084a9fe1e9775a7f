//! A socket that reports each read to a callback: how the TCP proxy learns that bytes
//! moved (idle timeout, byte counters) and how an HTTP connection's supervisor learns that
//! a request head has started, without either polling the socket itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// `inner`, with `on_read(n)` called after every read that returned `n > 0` bytes.
pub struct ObservedStream<F, S = TcpStream> {
    inner: S,
    on_read: F,
}

impl<F: FnMut(usize) + Unpin, S> ObservedStream<F, S> {
    pub fn new(inner: S, on_read: F) -> Self {
        ObservedStream { inner, on_read }
    }
}

impl<F: FnMut(usize) + Unpin, S: AsyncRead + Unpin> AsyncRead for ObservedStream<F, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            (self.on_read)(n);
        }
        r
    }
}

impl<F: FnMut(usize) + Unpin, S: AsyncWrite + Unpin> AsyncWrite for ObservedStream<F, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
