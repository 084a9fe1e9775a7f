//! Protocol detection: what a client speaks, told from its first bytes without consuming
//! them (`peek`), so the chosen server or copier reads the connection from its start.
//!
//! Intercepted connections carry anything, so they are classified fully: a TLS ClientHello
//! (with its SNI), an HTTP/2 prior-knowledge preface, an HTTP/1 request head (with its
//! Host), or else opaque bytes. A client that says nothing for the detection timeout is
//! taken to be waiting for its server to speak first (MySQL, SMTP): its connection goes on
//! as opaque TCP instead of hanging. `auto` HTTP listeners only need to tell HTTP/2 from
//! HTTP/1 and use the same peeking loop with a four-byte question.

use std::time::Duration;

use tokio::net::TcpStream;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much of a connection's start detection may look at: a ClientHello or a request
/// head larger than this is classified on what fits (TLS and HTTP are told by their first
/// bytes; only the SNI or Host may then be missing).
pub const PEEK_LIMIT: usize = 16 * 1024;

/// What an intercepted connection turned out to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detected {
    /// A TLS ClientHello: application TLS to pass through, or mesh TLS to terminate.
    Tls {
        /// The server name the client asked for, when it sent one.
        sni: Option<String>,
    },
    /// An HTTP/1.x request head.
    Http1 {
        /// The Host header (without port) of the first request, when the head fit.
        host: Option<String>,
    },
    /// The HTTP/2 prior-knowledge preface (h2c).
    Http2,
    /// Bytes of none of the above.
    Opaque,
    /// Nothing arrived within the detection timeout: a server-speaks-first protocol, or a
    /// slow client. Treated as opaque.
    Timeout,
    /// The destination port is configured to skip detection: opaque without waiting.
    Skipped,
    /// The client closed (or failed) before saying enough.
    Closed,
}

impl Detected {
    /// Every `protocol` label, in `index` order.
    pub const LABELS: [&'static str; 7] = [
        "tls", "http1", "http2", "opaque", "timeout", "skipped", "closed",
    ];

    /// Position in `LABELS`, for per-protocol counters kept in an array.
    pub fn index(&self) -> usize {
        match self {
            Detected::Tls { .. } => 0,
            Detected::Http1 { .. } => 1,
            Detected::Http2 => 2,
            Detected::Opaque => 3,
            Detected::Timeout => 4,
            Detected::Skipped => 5,
            Detected::Closed => 6,
        }
    }

    /// The `protocol` label of the detection metric and log lines.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// The connection is to be copied as bytes (nothing HTTP-aware applies to it).
    pub fn is_opaque(&self) -> bool {
        matches!(
            self,
            Detected::Tls { .. } | Detected::Opaque | Detected::Timeout | Detected::Skipped
        )
    }
}

/// One look at the bytes so far.
pub enum Verdict<T> {
    Done(T),
    /// Not enough bytes to tell yet.
    More,
}

/// Peek at the connection until `classify` decides, the client closes, `limit` bytes are
/// in, or `timeout` passes. `Err(true)` when closed, `Err(false)` on timeout.
pub async fn peek_until<T>(
    stream: &TcpStream,
    timeout: Duration,
    limit: usize,
    mut classify: impl FnMut(&[u8], bool) -> Verdict<T>,
) -> Result<T, bool> {
    let mut buf = vec![0u8; limit];
    let mut seen = 0;
    let read = async {
        loop {
            if stream.readable().await.is_err() {
                return Err(true);
            }
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return Err(true),
                Ok(n) => {
                    let full = n == buf.len();
                    if let Verdict::Done(t) = classify(&buf[..n], full) {
                        return Ok(t);
                    }
                    // `peek` leaves the bytes queued, so the socket stays readable: wait
                    // briefly for more instead of spinning on the same bytes.
                    if n == seen {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    seen = n;
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(false))
}

/// Does the connection open with the HTTP/2 preface? `None` if it closed or stayed silent
/// past `timeout` before saying enough to tell.
pub async fn sniff_h2(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    peek_until(stream, timeout, 4, |b, _| {
        // "PRI " is reserved for the preface: four bytes decide.
        if b.len() >= 4 || !H2_PREFACE.starts_with(b) {
            Verdict::Done(b.len() >= 4 && b[..4] == H2_PREFACE[..4])
        } else {
            Verdict::More
        }
    })
    .await
    .ok()
}

/// Classify an intercepted connection from its first bytes.
pub async fn detect(stream: &TcpStream, timeout: Duration) -> Detected {
    match peek_until(stream, timeout, PEEK_LIMIT, classify).await {
        Ok(d) => d,
        Err(true) => Detected::Closed,
        Err(false) => Detected::Timeout,
    }
}

/// One look at the first bytes; `full` when no more will be looked at.
pub fn classify(b: &[u8], full: bool) -> Verdict<Detected> {
    if b.is_empty() {
        return Verdict::More;
    }
    // TLS handshake record (0x16), major version 3.
    if b[0] == 0x16 {
        if b.len() < 2 {
            return Verdict::More;
        }
        if b[1] != 0x03 {
            return Verdict::Done(Detected::Opaque);
        }
        return match client_hello_sni(b) {
            Hello::Sni(sni) => Verdict::Done(Detected::Tls { sni }),
            Hello::Partial if !full => Verdict::More,
            Hello::Partial | Hello::Malformed => Verdict::Done(Detected::Tls { sni: None }),
        };
    }
    if H2_PREFACE.starts_with(&b[..b.len().min(H2_PREFACE.len())]) {
        return if b.len() >= H2_PREFACE.len() {
            Verdict::Done(Detected::Http2)
        } else {
            Verdict::More
        };
    }
    match http1_start(b) {
        Some(true) => {}
        Some(false) => return Verdict::Done(Detected::Opaque),
        None => return Verdict::More,
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(b) {
        Ok(httparse::Status::Complete(_)) => Verdict::Done(Detected::Http1 {
            host: req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(host_without_port),
        }),
        Ok(httparse::Status::Partial) if !full => Verdict::More,
        // Too many headers, a head beyond the peek limit, or a malformed one: still HTTP/1
        // by its request line; the HTTP server answers what is wrong with it.
        _ => Verdict::Done(Detected::Http1 { host: None }),
    }
}

/// Does the start look like an HTTP/1 request line (`METHOD SP`)? `None`: too short to tell.
fn http1_start(b: &[u8]) -> Option<bool> {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    let mut undecided = false;
    for m in METHODS {
        let n = b.len().min(m.len());
        if b[..n] == m[..n] {
            if n == m.len() {
                return Some(true);
            }
            undecided = true;
        }
    }
    if undecided { None } else { Some(false) }
}

fn host_without_port(h: &str) -> String {
    let h = h.trim();
    let host = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.rsplit_once(':').map_or(h, |(host, _)| host)
    };
    host.to_ascii_lowercase()
}

enum Hello {
    /// A whole ClientHello, with its server name if it had one.
    Sni(Option<String>),
    /// Not all of it has arrived.
    Partial,
    /// Not a well-formed ClientHello.
    Malformed,
}

/// The SNI of a ClientHello in the first TLS record (RFC 8446 §4.1.2, RFC 6066 §3).
fn client_hello_sni(b: &[u8]) -> Hello {
    let Some(len) = b
        .get(3..5)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
    else {
        return Hello::Partial;
    };
    let Some(record) = b.get(5..5 + len) else {
        return Hello::Partial;
    };
    match parse_client_hello(record) {
        Some(sni) => Hello::Sni(sni),
        None => Hello::Malformed,
    }
}

/// A bounds-checked reader over a byte slice: every read past the end is `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

fn parse_client_hello(record: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(record);
    // Handshake type 1: ClientHello.
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    let mut h = Reader(r.take(len)?);
    h.take(2 + 32)?; // legacy_version, random
    let n = h.u8()?;
    h.take(n)?; // legacy_session_id
    let n = h.u16()?;
    h.take(n)?; // cipher_suites
    let n = h.u8()?;
    h.take(n)?; // legacy_compression_methods
    if h.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let n = h.u16()?;
    let mut exts = Reader(h.take(n)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let n = exts.u16()?;
        let data = exts.take(n)?;
        if kind != 0 {
            continue;
        }
        let mut sn = Reader(data);
        let n = sn.u16()?;
        let mut list = Reader(sn.take(n)?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let n = list.u16()?;
            let name = list.take(n)?;
            if name_type == 0 {
                return std::str::from_utf8(name)
                    .ok()
                    .map(|s| Some(s.to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(b: &[u8]) -> Detected {
        match classify(b, false) {
            Verdict::Done(d) => d,
            Verdict::More => panic!("undecided on {b:?}"),
        }
    }

    fn more(b: &[u8]) -> bool {
        matches!(classify(b, false), Verdict::More)
    }

    /// A ClientHello as a TLS record, with an SNI extension for `name` when given.
    fn client_hello(name: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        // An unrelated extension first (supported_versions), as real clients send several.
        ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]);
        if let Some(name) = name {
            let n = name.len() as u16;
            ext.extend_from_slice(&[0x00, 0x00]);
            ext.extend_from_slice(&(n + 5).to_be_bytes());
            ext.extend_from_slice(&(n + 3).to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&n.to_be_bytes());
            ext.extend_from_slice(name.as_bytes());
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_client_hello_with_and_without_sni() {
        let hello = client_hello(Some("API.Example.com"));
        assert_eq!(
            done(&hello),
            Detected::Tls {
                sni: Some("api.example.com".into())
            }
        );
        assert_eq!(done(&client_hello(None)), Detected::Tls { sni: None });
        // Every prefix of the record waits for the rest.
        for n in 1..hello.len() {
            assert!(more(&hello[..n]), "prefix of {n} bytes");
        }
        // A record that never completes within the peek limit is still TLS.
        assert!(matches!(
            classify(&hello[..20], true),
            Verdict::Done(Detected::Tls { sni: None })
        ));
    }

    #[test]
    fn malformed_hello_is_tls_without_sni_and_never_panics() {
        let mut hello = client_hello(Some("a.b"));
        let last = hello.len() - 1;
        hello[6] = 0xff; // handshake length beyond the record
        assert_eq!(done(&hello), Detected::Tls { sni: None });
        hello[6] = 0;
        hello[last] = 0;
        let _ = classify(&hello, true);
        // Arbitrary garbage after a handshake byte.
        for seed in 0..200u8 {
            let mut b = vec![0x16, 0x03, 0x01, 0x00, 0x10];
            b.extend((0..16).map(|i| seed.wrapping_mul(31).wrapping_add(i)));
            let _ = classify(&b, true);
        }
    }

    #[test]
    fn h2_preface() {
        assert_eq!(done(H2_PREFACE), Detected::Http2);
        assert!(more(&H2_PREFACE[..10]));
        // "PRI" that is not the preface is not HTTP/2.
        assert_eq!(done(b"PRIVMSG #a :hi\r\n"), Detected::Opaque);
    }

    #[test]
    fn http1_with_host() {
        assert_eq!(
            done(b"GET /x HTTP/1.1\r\nHost: Svc-B.default:8080\r\nAccept: */*\r\n\r\n"),
            Detected::Http1 {
                host: Some("svc-b.default".into())
            }
        );
        assert_eq!(
            done(b"POST / HTTP/1.1\r\nhost: [fd00::1]:80\r\n\r\n"),
            Detected::Http1 {
                host: Some("fd00::1".into())
            }
        );
        assert_eq!(
            done(b"GET / HTTP/1.0\r\n\r\n"),
            Detected::Http1 { host: None }
        );
        // A head still arriving waits; one past the limit is HTTP/1 without a Host.
        assert!(more(b"GET / HTTP/1.1\r\nHost: a"));
        assert!(more(b"DEL"));
        assert!(matches!(
            classify(b"GET / HTTP/1.1\r\nHost: a", true),
            Verdict::Done(Detected::Http1 { host: None })
        ));
    }

    #[test]
    fn anything_else_is_opaque() {
        // Redis RESP, a PostgreSQL startup message, random bytes.
        assert_eq!(done(b"*1\r\n$4\r\nPING\r\n"), Detected::Opaque);
        assert_eq!(done(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), Detected::Opaque);
        assert_eq!(done(b"GETX"), Detected::Opaque);
        assert_eq!(done(&[0x16, 0x01]), Detected::Opaque);
    }

    #[test]
    fn labels_and_opacity() {
        assert!(Detected::Timeout.is_opaque());
        assert!(Detected::Skipped.is_opaque());
        assert!(Detected::Tls { sni: None }.is_opaque());
        assert!(!Detected::Http2.is_opaque());
        assert_eq!(Detected::Http1 { host: None }.label(), "http1");
    }

    #[tokio::test]
    async fn silent_client_times_out_and_closed_client_is_closed() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        let t = std::time::Instant::now();
        assert_eq!(
            detect(&s, Duration::from_millis(100)).await,
            Detected::Timeout
        );
        assert!(t.elapsed() < Duration::from_secs(2));

        drop(TcpStream::connect(addr).await.unwrap());
        let (s, _) = l.accept().await.unwrap();
        assert_eq!(detect(&s, Duration::from_secs(5)).await, Detected::Closed);
    }

    #[tokio::test]
    async fn detection_leaves_the_bytes_for_the_reader() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        // The head arrives in two pieces: detection waits for the Host line.
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.write_all(b"Host: b.svc\r\n\r\n").await.unwrap();
            c
        });
        assert_eq!(
            detect(&s, Duration::from_secs(5)).await,
            Detected::Http1 {
                host: Some("b.svc".into())
            }
        );
        let _c = writer.await.unwrap();
        let want = b"GET / HTTP/1.1\r\nHost: b.svc\r\n\r\n";
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, want);
    }
}
