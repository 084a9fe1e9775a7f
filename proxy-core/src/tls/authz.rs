//! Authorization by peer identity: which SPIFFE IDs may send requests to an inbound listener,
//! and which identity an upstream of a meshed cluster must present.
//!
//! A pattern is an exact SPIFFE ID (`spiffe://td/ns/shop/sa/cart`) or a prefix ending in
//! `/*` that matches every ID under it, segment by segment: `spiffe://td/ns/shop/*` is the
//! namespace `shop`, `spiffe://td/*` the whole trust domain.

use std::fmt;
use std::str::FromStr;

use http::HeaderMap;
use http::header::HeaderName;

use super::spiffe::{SpiffeId, SpiffeIdError};
use crate::error::ProxyError;
use crate::http::proxy::Downstream;
use crate::snapshot::ListenerRoutes;

/// The header that tells the app who called it (Envoy's name and format).
pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// One entry of an allow list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdPattern {
    Exact(SpiffeId),
    /// Every ID in `trust_domain` whose path is `path` or lies under it.
    Under {
        trust_domain: String,
        path: String,
    },
}

impl FromStr for IdPattern {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<IdPattern, SpiffeIdError> {
        match s.strip_suffix("/*") {
            Some(prefix) => {
                // The prefix must itself be a valid ID (trust domain, then whole segments).
                let id: SpiffeId = prefix.parse()?;
                Ok(IdPattern::Under {
                    trust_domain: id.trust_domain().to_owned(),
                    path: id.path().to_owned(),
                })
            }
            None => s.parse().map(IdPattern::Exact),
        }
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdPattern::Exact(id) => write!(f, "{id}"),
            IdPattern::Under { trust_domain, path } if path.is_empty() => {
                write!(f, "spiffe://{trust_domain}/*")
            }
            IdPattern::Under { trust_domain, path } => {
                write!(f, "spiffe://{trust_domain}/{path}/*")
            }
        }
    }
}

impl IdPattern {
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            IdPattern::Exact(want) => want == id,
            IdPattern::Under { trust_domain, path } => {
                // `spiffe://td/ns/a/*` is the IDs under the namespace, not the prefix itself.
                id.is_under(trust_domain, path) && id.path() != path
            }
        }
    }
}

/// An allow list. Empty means every peer the trust bundle vouches for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<IdPattern>);

impl AllowList {
    /// Parse config strings; every bad entry is reported with its index.
    pub fn parse(entries: &[String]) -> Result<AllowList, Vec<(usize, SpiffeIdError)>> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e.parse() {
                Ok(p) => ok.push(p),
                Err(err) => bad.push((i, err)),
            }
        }
        if bad.is_empty() {
            Ok(AllowList(ok))
        } else {
            Err(bad)
        }
    }

    /// Whether a request from `peer` (`None`: plaintext, no identity) may pass. With a
    /// non-empty list a plaintext request never passes: an allow list names identities, and
    /// a plaintext client has none.
    pub fn admits(&self, peer: Option<&SpiffeId>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        peer.is_some_and(|id| self.0.iter().any(|p| p.matches(id)))
    }
}

/// The identity stage of a request: drop any client-supplied `x-forwarded-client-cert` (a
/// client must not be able to claim an identity; `client_cert`: the caller saw one among
/// the fields), refuse peers the listener does not allow, and pass the verified identity
/// on to the app.
pub fn admit(
    routes: &ListenerRoutes,
    down: &Downstream,
    headers: &mut HeaderMap,
    client_cert: bool,
) -> Result<(), ProxyError> {
    if client_cert {
        headers.remove(&XFCC);
    }
    let Some(tls) = &routes.tls else {
        return Ok(());
    };
    let peer = down.peer.as_deref();
    if !tls.allow.admits(peer.map(|p| &p.id)) {
        tls.stats.denied.inc();
        return Err(ProxyError::UnauthorizedIdentity(match peer {
            Some(p) => format!("peer {} is not in this listener's allow list", p.id),
            None => {
                "this listener allows listed mTLS identities only, and the connection is plaintext"
                    .into()
            }
        }));
    }
    if let Some(p) = peer {
        headers.insert(XFCC.clone(), p.xfcc.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn exact_namespace_and_trust_domain_patterns() {
        let list = AllowList::parse(&[
            "spiffe://td/ns/shop/sa/cart".into(),
            "spiffe://td/ns/ops/*".into(),
            "spiffe://partner.example/*".into(),
        ])
        .unwrap();
        assert!(list.admits(Some(&id("spiffe://td/ns/shop/sa/cart"))));
        assert!(!list.admits(Some(&id("spiffe://td/ns/shop/sa/checkout"))));
        assert!(list.admits(Some(&id("spiffe://td/ns/ops/sa/anything"))));
        assert!(!list.admits(Some(&id("spiffe://td/ns/opsx/sa/a"))));
        assert!(!list.admits(Some(&id("spiffe://td/ns/ops"))));
        assert!(list.admits(Some(&id("spiffe://partner.example/ns/a/sa/b"))));
        assert!(!list.admits(Some(&id("spiffe://other/ns/shop/sa/cart"))));
        assert!(!list.admits(None), "plaintext has no identity to allow");
    }

    #[test]
    fn empty_list_admits_every_verified_peer_and_plaintext() {
        let list = AllowList::default();
        assert!(list.admits(Some(&id("spiffe://td/ns/a/sa/b"))));
        assert!(list.admits(None));
    }

    #[test]
    fn bad_entries_are_reported_by_index() {
        let err = AllowList::parse(&[
            "spiffe://td/ns/a/sa/b".into(),
            "td/ns/a".into(),
            "spiffe://td/ns//*".into(),
        ])
        .unwrap_err();
        let idx: Vec<usize> = err.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [1, 2]);
    }

    #[test]
    fn patterns_print_as_written() {
        for s in [
            "spiffe://td/ns/a/sa/b",
            "spiffe://td/ns/a/*",
            "spiffe://td/*",
        ] {
            assert_eq!(s.parse::<IdPattern>().unwrap().to_string(), s);
        }
    }
}
