//! Header handling on the way through: hop-by-hop fields, `x-forwarded-*`, `x-request-id`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

fn is_hop_by_hop(n: &HeaderName) -> bool {
    n == header::CONNECTION
        || n == header::TRANSFER_ENCODING
        || n == header::TE
        || n == header::UPGRADE
        || n == header::PROXY_AUTHENTICATE
        || n == header::PROXY_AUTHORIZATION
        || n == KEEP_ALIVE
        || n == PROXY_CONNECTION
}

/// Remove the hop-by-hop fields of RFC 9110 §7.6.1, including any named in `Connection`.
/// `te: trailers` survives (gRPC needs it); an upgrade keeps `connection`/`upgrade`.
/// `Trailer` is end-to-end and stays: an HTTP/1 encoder only sends the trailers it announces.
///
/// Most messages carry none or one of these, so one pass over the names (cheap comparisons)
/// decides whether any hashed removal is needed at all.
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
    // Extension fields named in Connection are hop-by-hop too. The usual values
    // (`keep-alive`, `close`, `upgrade`) name none, so the allocating path is rare.
    let named_extensions = h.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes().split(|b| *b == b',').any(|t| {
            let t = t.trim_ascii();
            !(t.eq_ignore_ascii_case(b"keep-alive")
                || t.eq_ignore_ascii_case(b"close")
                || t.eq_ignore_ascii_case(b"upgrade")
                || t.is_empty())
        })
    });
    if named_extensions {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|list| list.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !is_hop_by_hop(n))
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    let keep_te = h
        .get(header::TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // At most nine names can be hop-by-hop: collect them without allocating.
    let mut present: [Option<HeaderName>; 9] = Default::default();
    let mut n = 0;
    for k in h.keys() {
        let kept = (upgrade && (k == header::CONNECTION || k == header::UPGRADE))
            || (keep_te && k == header::TE);
        if n < present.len() && is_hop_by_hop(k) && !kept {
            present[n] = Some(k.clone());
            n += 1;
        }
    }
    for name in present.into_iter().flatten() {
        h.remove(name);
    }
}

/// Is this an HTTP/1.1 upgrade request (WebSocket and friends)?
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                .unwrap_or(false)
        })
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
            let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let s = id.hyphenated().encode_lower(&mut buf);
            // A hyphenated UUID is lowercase hex and '-': always a valid header value.
            let v = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(s.as_bytes()))
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
    fn upgrade_keeps_its_headers() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
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
}
