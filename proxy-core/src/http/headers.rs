//! Header handling on the way through: hop-by-hop fields, `x-forwarded-*`, `x-request-id`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop fields (RFC 9110 §7.6.1), and `expect` (answered by the proxy), as bits.
const CONNECTION: u16 = 1;
const TRANSFER_ENCODING: u16 = 1 << 1;
const TE: u16 = 1 << 2;
const UPGRADE: u16 = 1 << 3;
const PROXY_AUTHENTICATE: u16 = 1 << 4;
const PROXY_AUTHORIZATION: u16 = 1 << 5;
const KEEP_ALIVE_BIT: u16 = 1 << 6;
const PROXY_CONNECTION_BIT: u16 = 1 << 7;
const EXPECT: u16 = 1 << 8;

fn hop_bit(n: &HeaderName) -> u16 {
    // By length first, then the bytes (names are lowercase): one jump and at most two
    // short compares per field, where comparing with each of the nine names cost some fifty
    // instructions a field. Most fields of a message are none of these.
    let b = n.as_str().as_bytes();
    match b.len() {
        2 if b == b"te" => TE,
        6 if b == b"expect" => EXPECT,
        7 if b == b"upgrade" => UPGRADE,
        10 if b == b"connection" => CONNECTION,
        10 if b == b"keep-alive" => KEEP_ALIVE_BIT,
        16 if b == b"proxy-connection" => PROXY_CONNECTION_BIT,
        17 if b == b"transfer-encoding" => TRANSFER_ENCODING,
        18 if b == b"proxy-authenticate" => PROXY_AUTHENTICATE,
        19 if b == b"proxy-authorization" => PROXY_AUTHORIZATION,
        _ => 0,
    }
}

fn bit_name(bit: u16) -> &'static HeaderName {
    match bit {
        CONNECTION => &header::CONNECTION,
        TRANSFER_ENCODING => &header::TRANSFER_ENCODING,
        TE => &header::TE,
        UPGRADE => &header::UPGRADE,
        PROXY_AUTHENTICATE => &header::PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION => &header::PROXY_AUTHORIZATION,
        KEEP_ALIVE_BIT => &KEEP_ALIVE,
        PROXY_CONNECTION_BIT => &PROXY_CONNECTION,
        _ => &header::EXPECT,
    }
}

/// What one pass over a message's fields found of the hop-by-hop ones.
#[derive(Default)]
pub struct HopByHop {
    present: u16,
    /// `Connection` lists `upgrade`.
    connection_upgrade: bool,
    /// `Connection` names fields other than `keep-alive`, `close` and `upgrade`.
    connection_extensions: bool,
    /// The first `TE` is exactly `trailers` (gRPC needs it kept).
    te_trailers: bool,
}

impl HopByHop {
    /// One pass over the fields, no hashing: most messages carry none of these or only
    /// `Connection: keep-alive`.
    pub fn scan(h: &HeaderMap) -> HopByHop {
        let mut found = HopByHop::default();
        for (name, value) in h {
            let bit = hop_bit(name);
            if bit == CONNECTION {
                for t in value.as_bytes().split(|b| *b == b',') {
                    let t = t.trim_ascii();
                    if t.eq_ignore_ascii_case(b"upgrade") {
                        found.connection_upgrade = true;
                    } else if !(t.eq_ignore_ascii_case(b"keep-alive")
                        || t.eq_ignore_ascii_case(b"close")
                        || t.is_empty())
                    {
                        found.connection_extensions = true;
                    }
                }
            } else if bit == TE && found.present & TE == 0 {
                found.te_trailers = value.as_bytes().eq_ignore_ascii_case(b"trailers");
            }
            found.present |= bit;
        }
        found
    }

    /// Is this an HTTP/1.1 upgrade request (WebSocket and friends)?
    pub fn is_upgrade(&self) -> bool {
        self.present & UPGRADE != 0 && self.connection_upgrade
    }

    /// Remove the hop-by-hop fields of RFC 9110 §7.6.1, including any named in
    /// `Connection`, and `Expect` when `expect` (the proxy answers it itself).
    /// `te: trailers` survives (gRPC needs it); an upgrade keeps `connection`/`upgrade`.
    /// `Trailer` is end-to-end and stays: an HTTP/1 encoder only sends the trailers it
    /// announces.
    pub fn strip(&self, h: &mut HeaderMap, upgrade: bool, expect: bool) {
        let mut remove = self.present;
        if !expect {
            remove &= !EXPECT;
        }
        if upgrade {
            remove &= !(CONNECTION | UPGRADE);
        }
        if self.te_trailers {
            remove &= !TE;
        }
        if self.connection_extensions {
            // Extension fields named in Connection are hop-by-hop too: the rare,
            // allocating path.
            let named: Vec<HeaderName> = h
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|list| list.split(','))
                .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
                .filter(|n| hop_bit(n) == 0)
                .collect();
            for n in named {
                h.remove(n);
            }
        }
        while remove != 0 {
            let bit = remove & remove.wrapping_neg();
            remove &= !bit;
            h.remove(bit_name(bit));
        }
    }
}

/// Remove the hop-by-hop fields of a message (see [`HopByHop::strip`]).
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    HopByHop::scan(h).strip(h, upgrade, false);
}

/// Append the client address to `x-forwarded-for`; set `x-forwarded-proto` when absent.
/// Uses the entry API: one hash per header instead of a lookup and then an insert.
pub fn forwarded(h: &mut HeaderMap, client: Option<&HeaderValue>, proto: &'static str) {
    use http::header::Entry;
    if let Some(client) = client {
        match h.entry(&X_FORWARDED_FOR) {
            Entry::Occupied(mut e) => {
                let prev = e.get();
                let mut joined = Vec::with_capacity(prev.len() + 2 + client.len());
                joined.extend_from_slice(prev.as_bytes());
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(client.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&joined) {
                    e.insert(v);
                }
            }
            Entry::Vacant(e) => {
                e.insert(client.clone());
            }
        }
    }
    h.entry(&X_FORWARDED_PROTO)
        .or_insert_with(|| HeaderValue::from_static(proto));
}

/// The request's id: the one it came with, or a new UUID v4.
pub fn request_id(h: &mut HeaderMap) -> HeaderValue {
    use http::header::Entry;
    match h.entry(&X_REQUEST_ID) {
        Entry::Occupied(e) if !e.get().is_empty() => e.get().clone(),
        entry => {
            let buf = uuid_v4(fastrand::u128(..));
            // Shared from the start: the id is cloned into the request and the response,
            // and a copied `Bytes` would allocate again on its first clone.
            // A hyphenated UUID is lowercase hex and '-': always a valid header value.
            let v = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
                .expect("a UUID is a valid header value");
            match entry {
                Entry::Occupied(mut e) => {
                    e.insert(v.clone());
                }
                Entry::Vacant(e) => {
                    e.insert(v.clone());
                }
            }
            v
        }
    }
}

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
        i += 1;
    }
    t
};

/// `random` as a version 4 (random) UUID in its hyphenated text form (RFC 9562 §5.4: the
/// version nibble is 4, the variant bits are `10`).
///
/// A table of digit pairs, two bytes written per byte of the id: the `uuid` crate's
/// encoder, one nibble and one byte at a time and then copied into the hyphenated layout,
/// cost 251 instructions on every request without an id (callgrind, plain route), this
/// about a third of that.
fn uuid_v4(random: u128) -> [u8; 36] {
    let mut b = random.to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    // Where each byte's two digits go: 8-4-4-4-12 digits between the hyphens.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (byte, at) in b.iter().zip(AT) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("x-app", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-app"], "kept");
        let mut h = map(&[("te", "trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn each_hop_by_hop_name_has_its_bit_and_no_other_name_has_one() {
        for bit in (0..9).map(|i| 1u16 << i) {
            assert_eq!(hop_bit(bit_name(bit)), bit, "{}", bit_name(bit));
        }
        // Standard and custom names, some of the same lengths as hop-by-hop ones.
        for other in [
            "host",
            "accept",
            "server",
            "user-agent",
            "set-cookie",
            "content-type",
            "content-length",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-connection-id-x",
            "proxy-authenticatx",
            "tx",
        ] {
            let n = HeaderName::from_bytes(other.as_bytes()).unwrap();
            assert_eq!(hop_bit(&n), 0, "{other}");
        }
    }

    #[test]
    fn upgrade_keeps_its_headers() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(HopByHop::scan(&h).is_upgrade());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
    }

    #[test]
    fn forwarded_appends() {
        let ip = HeaderValue::from_static("127.0.0.1");
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        forwarded(&mut h, Some(&ip), "http");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        let mut h = HeaderMap::new();
        forwarded(&mut h, Some(&ip), "https");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn request_id_generated_or_kept() {
        let mut h = HeaderMap::new();
        let id = request_id(&mut h);
        assert_eq!(id.len(), 36);
        assert_eq!(h["x-request-id"], id);
        let mut h = map(&[("x-request-id", "abc")]);
        assert_eq!(request_id(&mut h), "abc");
    }

    #[test]
    fn request_ids_are_v4_uuids_in_hyphenated_lowercase() {
        let id = uuid_v4(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        // The little-endian bytes of the number, with the version and variant bits set.
        assert_eq!(&id, b"10325476-98ba-4cfe-afcd-ab8967452301");
        for random in [0, u128::MAX, 0x5555_5555_5555_5555_5555_5555_5555_5555] {
            let id = uuid_v4(random);
            let text = std::str::from_utf8(&id).unwrap();
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{text}"
            );
            assert!(
                groups
                    .iter()
                    .all(|g| g.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))),
                "{text}"
            );
            assert_eq!(&text[14..15], "4", "version: {text}");
            assert!(
                matches!(&text[19..20], "8" | "9" | "a" | "b"),
                "variant: {text}"
            );
        }
    }
}
