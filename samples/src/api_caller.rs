//! `sample api-caller`: a service that needs a third-party API (a weather forecast) which
//! wants an OAuth2 token. It holds no secret and speaks plain HTTP to the ambassador on
//! loopback; the ambassador fetches the token, adds it and calls the API over TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::service::{Reply, json, query_param};
use crate::upstream::Proxy;

pub struct ApiCaller {
    ambassador: Proxy,
    /// The ambassador route's local prefix, like `/weather`.
    prefix: String,
}

impl ApiCaller {
    pub fn new(ambassador: &str, prefix: &str, timeout: Duration) -> Arc<ApiCaller> {
        Arc::new(ApiCaller {
            ambassador: Proxy::new(ambassador, timeout),
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    pub async fn handle(self: Arc<Self>, _peer: SocketAddr, req: Request<Incoming>) -> Reply {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => json(StatusCode::OK, &json!({"service": "api-caller"})),
            (&Method::GET, "/forecast") => {
                let city = query_param(req.uri().query(), "city").unwrap_or("oslo");
                self.forecast(city).await
            }
            _ => json(
                StatusCode::NOT_FOUND,
                &json!({"error": "try GET /forecast?city=NAME"}),
            ),
        }
    }

    async fn forecast(&self, city: &str) -> Reply {
        let city: String = city
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let path = format!("{}/v1/forecast?city={city}", self.prefix);
        match self
            .ambassador
            .send(Method::GET, None, &path, &[], Bytes::new())
            .await
        {
            Ok(a) if a.status.is_success() => json(
                StatusCode::OK,
                &json!({"city": city, "via": "ambassador", "api": a.body_json()}),
            ),
            Ok(a) => json(
                StatusCode::BAD_GATEWAY,
                &json!({
                    "city": city,
                    "api_status": a.status.as_u16(),
                    "proxy_error": a.proxy_error(),
                    "api": a.body_json(),
                }),
            ),
            Err(e) => json(StatusCode::BAD_GATEWAY, &json!({"city": city, "error": e})),
        }
    }
}
