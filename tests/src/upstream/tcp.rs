//! Raw TCP peers: an echo for `protocol: tcp` listeners, and HTTP servers that misbehave in the
//! ways the proxy must turn into local replies (closing before answering, answering garbage,
//! never accepting).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

use super::AbortOnDrop;

/// What the echo server writes after its peer half-closes, before closing its own side: a
/// client that receives it knows its FIN went all the way through the proxy while the way back
/// stayed open.
pub const EOF_REPLY: &[u8] = b"<eof seen>";

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Copy bytes back; on EOF, send `EOF_REPLY` and close.
    Echo,
    /// Read a request head, then close without answering.
    CloseAfterHead,
    /// Read a request head, answer these bytes, keep the connection open.
    Answer(&'static [u8]),
}

/// A running raw TCP peer; stops and closes its connections when dropped.
pub struct TcpUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    _accept: AbortOnDrop,
    // Connections parked in the accept queue of a peer that never accepts.
    _parked: Vec<TcpStream>,
}

impl TcpUpstream {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Echoes bytes back, honouring half-close (see [`EOF_REPLY`]).
pub async fn echo() -> TcpUpstream {
    serve(Behaviour::Echo).await
}

/// Reads a request head, then closes: a reset before response headers.
pub async fn close_after_request_head() -> TcpUpstream {
    serve(Behaviour::CloseAfterHead).await
}

/// Reads a request head, then answers `bytes`, which is not meant to be HTTP.
pub async fn answer(bytes: &'static [u8]) -> TcpUpstream {
    serve(Behaviour::Answer(bytes)).await
}

/// A listener whose accept queue is full and never drained: the kernel drops further SYNs, so a
/// connect neither succeeds nor is refused until it times out. This is how a connect timeout is
/// made without leaving loopback.
pub async fn never_accepting() -> TcpUpstream {
    let socket = TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .expect("bind an ephemeral loopback port");
    let listener = socket.listen(1).expect("listen");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let mut parked = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => parked.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue of {addr}: {e}"),
            Err(_) => break,
        }
        assert!(
            parked.len() < 64,
            "the accept queue of {addr} never filled: the kernel does not drop SYNs here"
        );
    }
    TcpUpstream {
        addr,
        connections: Arc::new(AtomicU64::new(0)),
        // The listener must outlive the test's use of the address; the task owns it.
        _accept: AbortOnDrop(tokio::spawn(async move {
            let _listener = listener;
            std::future::pending::<()>().await;
        })),
        _parked: parked,
    }
}

async fn serve(behaviour: Behaviour) -> TcpUpstream {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind an ephemeral loopback port");
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let connections = Arc::new(AtomicU64::new(0));
    let counted = connections.clone();
    let accept = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of file descriptors, most likely: wait rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            counted.fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                let _ = match behaviour {
                    Behaviour::Echo => echo_conn(stream).await,
                    Behaviour::CloseAfterHead => read_head(stream).await.map(drop),
                    Behaviour::Answer(bytes) => answer_conn(stream, bytes).await,
                };
            });
            while tasks.try_join_next().is_some() {}
        }
    });
    TcpUpstream {
        addr,
        connections,
        _accept: AbortOnDrop(accept),
        _parked: Vec::new(),
    }
}

async fn echo_conn(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.write_all(EOF_REPLY).await?;
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn answer_conn(stream: TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut stream = read_head(stream).await?;
    stream.write_all(bytes).await?;
    // Stay open until the proxy gives up, so the only fault it can see is the bytes.
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

async fn read_head(mut stream: TcpStream) -> std::io::Result<TcpStream> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(stream)
}
