//! `sample order`: an order service. `POST /orders` charges the order through the payment
//! service, which it calls by name (`Host: payment`) through its own sidecar's outbound
//! listener, so routing, retries and ejection of a dead payment replica happen in the proxies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::service::{Reply, json, query_param};
use crate::upstream::Proxy;

pub struct Order {
    payments: Proxy,
    payment_host: String,
    next_id: AtomicU64,
}

impl Order {
    /// `sidecar` is the outbound listener (`http://127.0.0.1:18101`), `payment_host` the name
    /// the sidecar routes to the payment service.
    pub fn new(sidecar: &str, payment_host: &str, timeout: Duration) -> Arc<Order> {
        Arc::new(Order {
            payments: Proxy::new(sidecar, timeout),
            payment_host: payment_host.to_owned(),
            next_id: AtomicU64::new(1),
        })
    }

    pub async fn handle(self: Arc<Self>, _peer: SocketAddr, req: Request<Incoming>) -> Reply {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => json(StatusCode::OK, &json!({"service": "order"})),
            (&Method::POST, "/orders") => {
                let item = query_param(req.uri().query(), "item").unwrap_or("book");
                self.place(item).await
            }
            (_, "/orders") => json(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "place an order with POST /orders?item=NAME"}),
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                &json!({"error": "try POST /orders?item=NAME"}),
            ),
        }
    }

    async fn place(&self, item: &str) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let order_id = format!("order-{}-{id}", std::process::id());
        let body = json!({"order_id": order_id, "item": item, "amount_cents": 1250});
        // The idempotency key lets the payment service recognise a retried charge, which is
        // what makes it safe for the sidecar to retry this POST.
        let headers = [("idempotency-key", order_id.clone())];
        let answer = self
            .payments
            .send(
                Method::POST,
                Some(&self.payment_host),
                "/charge",
                &headers,
                Bytes::from(body.to_string()),
            )
            .await;
        match answer {
            Ok(a) if a.status.is_success() => json(
                StatusCode::CREATED,
                &json!({"order_id": order_id, "item": item, "status": "paid", "payment": a.body_json()}),
            ),
            Ok(a) => json(
                StatusCode::BAD_GATEWAY,
                &json!({
                    "order_id": order_id,
                    "status": "payment_failed",
                    "payment_status": a.status.as_u16(),
                    "proxy_error": a.proxy_error(),
                    "payment": a.body_json(),
                }),
            ),
            Err(e) => json(
                StatusCode::BAD_GATEWAY,
                &json!({"order_id": order_id, "status": "payment_failed", "error": e}),
            ),
        }
    }
}
