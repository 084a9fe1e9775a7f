//! `sample payment`: one replica of the payment service. `POST /charge` records a charge and
//! answers which replica took it; a repeated `idempotency-key` gets the first answer again
//! (marked `replayed`), so a retry by the proxy never charges twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::service::{Reply, header_text, json, read_body};

/// Charges remembered for idempotency; the oldest half is forgotten past this, which bounds
/// memory while keeping every key a retry could still carry.
const REMEMBERED: usize = 10_000;

/// What the sidecar in front told the replica about a charge request.
#[derive(Default)]
struct Seen {
    /// `x-sidecar-attempt-count`: 2 or more on a retry.
    attempt: Option<String>,
    /// `x-forwarded-client-cert`: the caller's verified SPIFFE ID (mTLS between sidecars).
    caller: Option<String>,
}

pub struct Payment {
    replica: String,
    next_id: AtomicU64,
    charges: Mutex<HashMap<String, (u64, serde_json::Value)>>,
}

impl Payment {
    pub fn new(replica: &str) -> Arc<Payment> {
        Arc::new(Payment {
            replica: replica.to_owned(),
            next_id: AtomicU64::new(1),
            charges: Mutex::new(HashMap::new()),
        })
    }

    pub async fn handle(self: Arc<Self>, _peer: SocketAddr, req: Request<Incoming>) -> Reply {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => json(
                StatusCode::OK,
                &json!({"service": "payment", "replica": self.replica}),
            ),
            (&Method::POST, "/charge") => {
                let key = header_text(req.headers(), "idempotency-key");
                let seen = Seen {
                    attempt: header_text(req.headers(), "x-sidecar-attempt-count"),
                    caller: header_text(req.headers(), "x-forwarded-client-cert"),
                };
                match read_body(req.into_body(), Duration::from_secs(5)).await {
                    Ok(body) => self.charge(key, seen, &body),
                    Err(e) => json(StatusCode::BAD_REQUEST, &json!({"error": e})),
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                &json!({"error": "payment answers POST /charge"}),
            ),
        }
    }

    fn charge(&self, key: Option<String>, seen: Seen, body: &[u8]) -> Reply {
        let order: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "the body must be a JSON object"}),
                );
            }
        };
        let Some(key) = key else {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "an idempotency-key header is required"}),
            );
        };
        let mut charges = self.charges.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, first)) = charges.get(&key) {
            let mut again = first.clone();
            again["replayed"] = true.into();
            return json(StatusCode::OK, &again);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = json!({
            "charge_id": format!("{}-{id}", self.replica),
            "replica": self.replica,
            "order_id": order.get("order_id"),
            "amount_cents": order.get("amount_cents"),
            "attempt": seen.attempt,
            "caller": seen.caller,
        });
        if charges.len() >= REMEMBERED {
            let cutoff = id.saturating_sub(REMEMBERED as u64 / 2);
            charges.retain(|_, (n, _)| *n > cutoff);
        }
        charges.insert(key, (id, answer.clone()));
        json(StatusCode::OK, &answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Reply) -> serde_json::Value {
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn a_repeated_key_is_charged_once() {
        let p = Payment::new("payment-a");
        let order = br#"{"order_id":"o-1","amount_cents":100}"#;
        let first = body(p.charge(Some("o-1".into()), Seen::default(), order)).await;
        let again = body(p.charge(Some("o-1".into()), Seen::default(), order)).await;
        assert_eq!(first["charge_id"], "payment-a-1");
        assert_eq!(again["charge_id"], "payment-a-1");
        assert_eq!(again["replayed"], true);
        let other = body(p.charge(Some("o-2".into()), Seen::default(), order)).await;
        assert_eq!(other["charge_id"], "payment-a-2");
    }

    #[tokio::test]
    async fn bad_charges_are_refused_with_the_reason() {
        let p = Payment::new("payment-a");
        let r = p.charge(Some("k".into()), Seen::default(), b"not json");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let r = p.charge(None, Seen::default(), b"{}");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(
            body(r).await["error"]
                .as_str()
                .unwrap()
                .contains("idempotency-key")
        );
    }
}
