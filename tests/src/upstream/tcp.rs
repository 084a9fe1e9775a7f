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
    /// Answer every request as soon as its head is in, then read its body; close a
    /// connection idle for this long (an upstream's keep-alive timeout).
    EarlyAnswer { idle: Duration },
    /// Stream an answer of this many bytes as soon as a request head is in, while reading
    /// the request body at the same time.
    AnswerWhileReading(usize),
}

/// A running raw TCP peer; stops and closes its connections when dropped.
pub struct TcpUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    counts: Arc<Counts>,
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

    /// Connections this peer has closed after its idle timeout (`early_answer` only).
    pub fn closed_idle(&self) -> u64 {
        self.counts.closed_idle.load(Ordering::Relaxed)
    }

    /// Requests whose body this peer has read to its end (`early_answer` and
    /// `answer_while_reading`).
    pub fn bodies_read(&self) -> u64 {
        self.counts.bodies_read.load(Ordering::Relaxed)
    }
}

/// What `early_answer` counts.
#[derive(Default)]
struct Counts {
    closed_idle: AtomicU64,
    bodies_read: AtomicU64,
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

/// An HTTP/1.1 keep-alive server that answers `200 ok` to each request as soon as its head
/// is in, before the request body (which it then reads, by its `content-length`), and closes
/// a connection after `idle` without a request, as servers do with idle keep-alive
/// connections.
pub async fn early_answer(idle: Duration) -> TcpUpstream {
    serve(Behaviour::EarlyAnswer { idle }).await
}

/// An HTTP/1.1 server that starts streaming a `len`-byte answer as soon as a request head
/// is in, and reads the request body (by its `content-length`) at the same time, as a server
/// that answers while it reads does. One request per connection.
pub async fn answer_while_reading(len: usize) -> TcpUpstream {
    serve(Behaviour::AnswerWhileReading(len)).await
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
        counts: Arc::default(),
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
    let counts: Arc<Counts> = Arc::default();
    let counting = counts.clone();
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
            let counting = counting.clone();
            tasks.spawn(async move {
                let _ = match behaviour {
                    Behaviour::Echo => echo_conn(stream).await,
                    Behaviour::CloseAfterHead => read_head(stream).await.map(drop),
                    Behaviour::Answer(bytes) => answer_conn(stream, bytes).await,
                    Behaviour::EarlyAnswer { idle } => {
                        early_answer_conn(stream, idle, &counting).await
                    }
                    Behaviour::AnswerWhileReading(len) => {
                        answer_while_reading_conn(stream, len, &counting).await
                    }
                };
            });
            while tasks.try_join_next().is_some() {}
        }
    });
    TcpUpstream {
        addr,
        connections,
        counts,
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

async fn early_answer_conn(
    mut stream: TcpStream,
    idle: Duration,
    counts: &Counts,
) -> std::io::Result<()> {
    let mut buffered = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // The next request's head, or the idle timeout.
        let head_end = match next_head(&mut stream, &mut buffered, &mut buf, Some(idle)).await? {
            Head::At(end) => end,
            Head::Idle if buffered.is_empty() => {
                drop(stream);
                counts.closed_idle.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Head::Idle | Head::Closed => return Ok(()),
        };
        let length = content_length(&buffered[..head_end]);
        buffered.drain(..head_end);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await?;
        while buffered.len() < length {
            match stream.read(&mut buf).await? {
                0 => return Ok(()),
                n => buffered.extend_from_slice(&buf[..n]),
            }
        }
        buffered.drain(..length);
        counts.bodies_read.fetch_add(1, Ordering::Relaxed);
    }
}

async fn answer_while_reading_conn(
    mut stream: TcpStream,
    len: usize,
    counts: &Counts,
) -> std::io::Result<()> {
    let mut buffered = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let Head::At(head_end) = next_head(&mut stream, &mut buffered, &mut buf, None).await? else {
        return Ok(());
    };
    let length = content_length(&buffered[..head_end]);
    let mut body_read = buffered.len() - head_end;
    let (mut reader, mut writer) = stream.into_split();
    let answer = tokio::spawn(async move {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'y'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            left -= n;
        }
        // Keep the write half open until the proxy closes the connection.
        Ok::<_, std::io::Error>(writer)
    });
    while body_read < length {
        match reader.read(&mut buf).await? {
            0 => return Ok(()),
            n => body_read += n,
        }
    }
    counts.bodies_read.fetch_add(1, Ordering::Relaxed);
    let _writer = answer.await??;
    while reader.read(&mut buf).await? > 0 {}
    Ok(())
}

/// How the wait for a request head ended.
enum Head {
    /// `buffered` holds a head ending at this index.
    At(usize),
    /// Nothing more came within the idle time.
    Idle,
    /// The peer closed.
    Closed,
}

/// Reads into `buffered` (through `buf`) until it holds a request head, giving up after
/// `idle` without bytes when one is given.
async fn next_head(
    stream: &mut TcpStream,
    buffered: &mut Vec<u8>,
    buf: &mut [u8],
    idle: Option<Duration>,
) -> std::io::Result<Head> {
    loop {
        if let Some(i) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Head::At(i + 4));
        }
        let n = match idle {
            Some(idle) => match tokio::time::timeout(idle, stream.read(buf)).await {
                Ok(n) => n?,
                Err(_) => return Ok(Head::Idle),
            },
            None => stream.read(buf).await?,
        };
        if n == 0 {
            return Ok(Head::Closed);
        }
        buffered.extend_from_slice(&buf[..n]);
    }
}

/// The `content-length` of a request head, 0 if it has none.
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0))
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
