//! Clients that talk to the proxy the way applications do (HTTP/1.1, h2c with prior knowledge),
//! plus a raw TCP connection for what no well-behaved client sends.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr) {
//! use e2e_tests::client::Client;
//! let mut client = Client::http1(addr).await;
//! let reply = client.get("/api/x").header("x-user", "7").send().await;
//! assert_eq!(reply.status, 200);
//! # }
//! ```
//!
//! Every wait has a deadline, so a proxy that hangs fails the test with a message instead of
//! stalling the suite.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::{self, Body};
use crate::upstream::{Echoed, NAME_HEADER};

/// Longest a single request may take before the test fails; no test needs more.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

/// One client connection to `addr`, reused for every request (HTTP/1 keep-alive, or HTTP/2
/// streams multiplexed on it).
pub struct Client {
    addr: SocketAddr,
    sender: Sender,
}

impl Client {
    /// Connects with HTTP/1.1; panics if the connection cannot be made.
    pub async fn http1(addr: SocketAddr) -> Client {
        Client::try_http1(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Connects with HTTP/2 prior knowledge (h2c); panics if the connection cannot be made.
    pub async fn h2c(addr: SocketAddr) -> Client {
        Client::try_h2c(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_http1(addr: SocketAddr) -> Result<Client, ClientError> {
        let io = connect(addr).await?;
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|source| ClientError::Handshake { addr, source })?;
        tokio::spawn(conn.with_upgrades());
        Ok(Client {
            addr,
            sender: Sender::Http1(sender),
        })
    }

    pub async fn try_h2c(addr: SocketAddr) -> Result<Client, ClientError> {
        let io = connect(addr).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .adaptive_window(true)
            .handshake(io)
            .await
            .map_err(|source| ClientError::Handshake { addr, source })?;
        tokio::spawn(conn);
        Ok(Client {
            addr,
            sender: Sender::Http2(sender),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Another handle on the same HTTP/2 connection, for concurrent streams; `None` on
    /// HTTP/1, where a connection carries one request at a time.
    pub fn share(&self) -> Option<Client> {
        match &self.sender {
            Sender::Http1(_) => None,
            Sender::Http2(s) => Some(Client {
                addr: self.addr,
                sender: Sender::Http2(s.clone()),
            }),
        }
    }

    pub fn get(&mut self, path: &str) -> RequestBuilder<'_> {
        self.request(Method::GET, path)
    }

    pub fn post(&mut self, path: &str) -> RequestBuilder<'_> {
        self.request(Method::POST, path)
    }

    pub fn request(&mut self, method: Method, path: &str) -> RequestBuilder<'_> {
        RequestBuilder {
            host: self.addr.to_string(),
            client: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Sends a prepared request as is (the caller sets `host` or the URI authority).
    pub async fn send(
        &mut self,
        req: Request<Body>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let sent = async {
            match &mut self.sender {
                Sender::Http1(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
                Sender::Http2(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
            }
        };
        tokio::time::timeout(REQUEST_DEADLINE, sent)
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_DEADLINE))?
            .map_err(ClientError::Http)
    }

    fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::Http2(_))
    }
}

async fn connect(addr: SocketAddr) -> Result<TokioIo<TcpStream>, ClientError> {
    let stream = tokio::time::timeout(REQUEST_DEADLINE, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Connect {
            addr,
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| ClientError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    Ok(TokioIo::new(stream))
}

pub struct RequestBuilder<'c> {
    client: &'c mut Client,
    method: Method,
    path: String,
    host: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Body>,
}

impl<'c> RequestBuilder<'c> {
    /// The authority the request is for: `host` on HTTP/1, `:authority` on HTTP/2.
    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
            HeaderValue::from_str(value).expect("a valid header value"),
        ));
        self
    }

    pub fn body(mut self, body: Body) -> Self {
        self.body = Some(body);
        self
    }

    fn into_parts(self) -> (&'c mut Client, Request<Body>) {
        let http2 = self.client.is_http2();
        let uri = if http2 {
            format!("http://{}{}", self.host, self.path)
        } else {
            self.path.clone()
        };
        let mut req = Request::builder()
            .method(self.method)
            .uri(uri)
            .version(if http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            })
            .body(self.body.unwrap_or_else(body::empty))
            .expect("a valid request");
        if !http2 {
            req.headers_mut().insert(
                http::header::HOST,
                HeaderValue::from_str(&self.host).expect("a valid host"),
            );
        }
        for (n, v) in self.headers {
            req.headers_mut().append(n, v);
        }
        (self.client, req)
    }

    /// Sends the request and reads the whole response; panics on a transport error or timeout.
    pub async fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.path);
        self.try_send()
            .await
            .unwrap_or_else(|e| panic!("request {what}: {e}"))
    }

    /// Sends the request and reads the whole response.
    pub async fn try_send(self) -> Result<Reply, ClientError> {
        let resp = self.send_streaming().await?;
        let (parts, incoming) = resp.into_parts();
        let (body, trailers) = tokio::time::timeout(REQUEST_DEADLINE, body::collect(incoming))
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_DEADLINE))??;
        Ok(Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
            trailers,
        })
    }

    /// Sends the request and returns as soon as the response head arrives.
    pub async fn send_streaming(self) -> Result<http::Response<Incoming>, ClientError> {
        let (client, req) = self.into_parts();
        client.send(req).await
    }
}

/// A response read to its end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }

    /// Which replica answered (`x-upstream`).
    pub fn upstream(&self) -> &str {
        self.header(NAME_HEADER).unwrap_or_else(|| {
            panic!(
                "no {NAME_HEADER} header: the reply did not come from a harness upstream: {self:?}"
            )
        })
    }

    /// The reason of a local reply (`x-sidecar-error`).
    pub fn sidecar_error(&self) -> Option<&str> {
        self.header("x-sidecar-error")
    }

    /// The request as an echo upstream saw it; panics if this is not an echo.
    pub fn echoed(&self) -> Echoed {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an echo ({e}): status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A TCP connection for hand-written bytes: malformed requests, slow clients, `Expect`
/// handshakes, opaque TCP.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read past the last response head.
    buffered: Vec<u8>,
}

/// A response head read off a raw connection.
#[derive(Debug)]
pub struct RawHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl RawHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buffered: Vec::new(),
        }
    }

    /// Writes `bytes`; an error means the peer closed, which some tests expect.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Closes the write side (TCP half-close); reading stays open.
    pub async fn shutdown_write(&mut self) -> std::io::Result<()> {
        self.stream.shutdown().await
    }

    /// Connects to `addr`, sends `request` (a whole request, as bytes) and reads the
    /// response head, within 5 s: for requests no well-behaved client would send.
    pub async fn head_of(addr: SocketAddr, request: &[u8]) -> RawHead {
        let mut conn = RawConn::connect(addr).await;
        conn.write(request).await.expect("send the request");
        conn.read_head(Duration::from_secs(5))
            .await
            .expect("a response head")
    }

    /// Reads one response head (status line and headers), within `within`.
    pub async fn read_head(&mut self, within: Duration) -> std::io::Result<RawHead> {
        let read = async {
            loop {
                if let Some(end) = find(&self.buffered, b"\r\n\r\n") {
                    let head: Vec<u8> = self.buffered.drain(..end + 4).collect();
                    return parse_head(&head);
                }
                let mut buf = [0u8; 4096];
                let n = self.stream.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "closed before a whole response head; got {:?}",
                            String::from_utf8_lossy(&self.buffered)
                        ),
                    ));
                }
                self.buffered.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(within, read)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response head"))?
    }

    /// Reads exactly `n` bytes (a body after its head, or echoed bytes), within `within`.
    pub async fn read_exact(&mut self, n: usize, within: Duration) -> std::io::Result<Vec<u8>> {
        let read = async {
            while self.buffered.len() < n {
                let mut buf = vec![0u8; (n - self.buffered.len()).min(64 * 1024)];
                let got = self.stream.read(&mut buf).await?;
                if got == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.buffered.extend_from_slice(&buf[..got]);
            }
            Ok(self.buffered.drain(..n).collect())
        };
        tokio::time::timeout(within, read).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("fewer than {n} bytes"),
            )
        })?
    }

    /// Reads until the peer closes, within `within`; returns what arrived. A reset counts as
    /// closed.
    pub async fn read_to_close(&mut self, within: Duration) -> std::io::Result<Vec<u8>> {
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return Ok(std::mem::take(&mut self.buffered)),
                    Ok(n) => self.buffered.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(within, read).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("still open after {within:?}"),
            )
        })?
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> std::io::Result<RawHead> {
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what}: {:?}", String::from_utf8_lossy(head)),
        )
    };
    let text = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(RawHead { status, headers })
}
