//! The proxy's admin API, as tests call it: one fresh connection per call, so a call never
//! depends on a connection the proxy may be closing while it drains.

use std::net::SocketAddr;

use http::Method;

use crate::client::{Client, Reply};
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug)]
pub struct Admin {
    addr: SocketAddr,
}

impl Admin {
    pub fn new(addr: SocketAddr) -> Admin {
        Admin { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path).await
    }

    pub async fn post(&self, path: &str) -> Reply {
        self.call(Method::POST, path).await
    }

    pub async fn call(&self, method: Method, path: &str) -> Reply {
        Client::http1(self.addr)
            .await
            .request(method, path)
            .send()
            .await
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
        reply.json()
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Metrics {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "GET /metrics: {reply:?}");
        Metrics::parse(reply.text())
    }

    /// The `/ready` status and body (trimmed) right now; the error says why there is none.
    pub async fn ready_state(&self) -> Result<(u16, String), String> {
        let mut client = Client::try_http1(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let reply = client
            .get("/ready")
            .try_send()
            .await
            .map_err(|e| e.to_string())?;
        Ok((reply.status.as_u16(), reply.text().trim().to_owned()))
    }

    /// `Ok` once `/ready` answers 200; the error says what it answered instead.
    pub async fn ready(&self) -> Result<(), String> {
        match self.ready_state().await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body:?}")),
        }
    }
}
