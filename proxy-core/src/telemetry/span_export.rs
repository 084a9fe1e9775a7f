//! Span export, off the request path: a task takes finished spans from a bounded queue,
//! batches them (by count, or by age of the oldest), encodes the batch as Zipkin v2 JSON or as
//! an OTLP/HTTP protobuf `ExportTraceServiceRequest`, and posts it to the collector.
//!
//! A slow or dead collector costs requests nothing: while a post is outstanding, new spans
//! wait in the queue, and when the queue is full they are dropped and counted. A failed post
//! is not retried (the next batch is already waiting); its spans are counted as failed.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind, status::StatusCode,
};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::trace::{Kind, Span, SpanStats};
use crate::config::{CollectorProtocol, TraceCollector};

/// How the batches are encoded and where they go.
pub struct Exporter {
    protocol: CollectorProtocol,
    endpoint: http::Uri,
    service_name: String,
    batch_size: usize,
    flush_interval: Duration,
    timeout: Duration,
    stats: SpanStats,
}

impl Exporter {
    pub fn new(cfg: &TraceCollector, service_name: &str, stats: SpanStats) -> Exporter {
        Exporter {
            protocol: cfg.protocol,
            // Validated with the config: an absolute http:// URL.
            endpoint: cfg.endpoint.parse().unwrap_or_default(),
            service_name: service_name.to_owned(),
            batch_size: cfg.batch_size.max(1),
            flush_interval: cfg.flush_interval.get(),
            timeout: cfg.timeout.get(),
            stats,
        }
    }

    /// Run until every sender of `queue` is gone (the config that made it was replaced and its
    /// last request ended), then flush what is left.
    pub async fn run(self, mut queue: mpsc::Receiver<Span>) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let Some(first) = queue.recv().await else {
                return;
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.flush_interval;
            let mut closed = false;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some(span)) => batch.push(span),
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let n = batch.len() as u64;
            match self.post(&client, &batch).await {
                Ok(()) => {
                    self.stats.exported.inc_by(n);
                }
                Err(why) => {
                    self.stats.failed.inc_by(n);
                    tracing::warn!(endpoint = %self.endpoint, spans = n, error = %why, "span export failed");
                }
            }
            batch.clear();
            if closed {
                return;
            }
        }
    }

    async fn post(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        batch: &[Span],
    ) -> Result<(), String> {
        let (body, content_type) = match self.protocol {
            CollectorProtocol::Zipkin => {
                (zipkin_json(&self.service_name, batch), "application/json")
            }
            CollectorProtocol::Otlp => (
                otlp_protobuf(&self.service_name, batch),
                "application/x-protobuf",
            ),
        };
        let req = Request::post(self.endpoint.clone())
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, client.request(req))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        // Read the (small) answer so the connection can be reused.
        let _ = tokio::time::timeout(self.timeout, resp.into_body().collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }
}

fn micros_since_epoch(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn endpoint_json(addr: SocketAddr) -> Value {
    match addr {
        SocketAddr::V4(a) => json!({ "ipv4": a.ip().to_string(), "port": a.port() }),
        SocketAddr::V6(a) => json!({ "ipv6": a.ip().to_string(), "port": a.port() }),
    }
}

/// The span's attributes, as (key, value) text pairs shared by both encodings.
fn tags(s: &Span) -> Vec<(&'static str, String)> {
    let mut t = vec![
        ("http.method", s.method.clone()),
        ("http.path", s.path.clone()),
        ("http.host", s.authority.clone()),
        ("http.status_code", s.status.to_string()),
        ("listener", s.listener.to_string()),
        ("request_id", s.request_id.clone()),
        ("retries", s.retries.to_string()),
        ("downstream_address", s.downstream.to_string()),
    ];
    if let Some(r) = &s.route {
        t.push(("route", r.to_string()));
    }
    if let Some(c) = &s.cluster {
        t.push(("upstream_cluster", c.to_string()));
    }
    if let Some(u) = s.upstream {
        t.push(("upstream_address", u.to_string()));
    }
    if let Some(r) = s.reason {
        t.push(("error_reason", r.to_owned()));
    }
    if s.is_error() {
        t.push(("error", s.reason.unwrap_or("upstream_error").to_owned()));
    }
    t
}

/// Zipkin v2 JSON: a list of spans (`POST /api/v2/spans`).
pub fn zipkin_json(service: &str, batch: &[Span]) -> Vec<u8> {
    let spans: Vec<Value> = batch
        .iter()
        .map(|s| {
            let mut v = json!({
                "traceId": format!("{:032x}", s.trace_id),
                "id": format!("{:016x}", s.span_id),
                "name": s.name(),
                "kind": match s.kind { Kind::Server => "SERVER", Kind::Client => "CLIENT" },
                "timestamp": micros_since_epoch(s.start),
                // Zipkin rejects a zero duration; a span always took some time.
                "duration": (s.duration.as_micros() as u64).max(1),
                "localEndpoint": { "serviceName": service },
                "tags": tags(s)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Value::String(v)))
                    .collect::<serde_json::Map<_, _>>(),
            });
            if let Some(p) = s.parent_id {
                v["parentId"] = json!(format!("{p:016x}"));
            }
            let remote = match s.kind {
                Kind::Client => s.upstream,
                Kind::Server => Some(s.downstream),
            };
            if let Some(addr) = remote {
                v["remoteEndpoint"] = endpoint_json(addr);
            }
            v
        })
        .collect();
    serde_json::to_vec(&spans).unwrap_or_else(|_| b"[]".to_vec())
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// OTLP/HTTP with protobuf encoding (`POST /v1/traces`), as collectors expect by default.
pub fn otlp_protobuf(service: &str, batch: &[Span]) -> Vec<u8> {
    let spans = batch
        .iter()
        .map(|s| {
            let start = s
                .start
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let attributes = tags(s)
                .into_iter()
                .map(|(k, v)| match k {
                    "http.status_code" | "retries" => {
                        kv(k, any_value::Value::IntValue(v.parse().unwrap_or(0)))
                    }
                    _ => kv(k, any_value::Value::StringValue(v)),
                })
                .collect();
            OtlpSpan {
                trace_id: s.trace_id.to_be_bytes().to_vec(),
                span_id: s.span_id.to_be_bytes().to_vec(),
                parent_span_id: s
                    .parent_id
                    .map(|p| p.to_be_bytes().to_vec())
                    .unwrap_or_default(),
                name: s.name(),
                kind: match s.kind {
                    Kind::Server => SpanKind::Server,
                    Kind::Client => SpanKind::Client,
                } as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + s.duration.as_nanos() as u64,
                attributes,
                status: Some(Status {
                    message: s.reason.unwrap_or_default().to_owned(),
                    code: if s.is_error() {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    } as i32,
                }),
                ..Default::default()
            }
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(service.to_owned()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sidecar-suite".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(kind: Kind, reason: Option<&'static str>, status: u16) -> Span {
        Span {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            parent_id: Some(0x1111),
            kind,
            start: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_micros(1500),
            method: "GET".into(),
            path: "/orders/1".into(),
            authority: "orders".into(),
            status,
            listener: "in".into(),
            route: Some("orders".into()),
            cluster: Some("orders-v1".into()),
            upstream: Some("127.0.0.1:8080".parse().unwrap()),
            downstream: "10.0.0.7:41000".parse().unwrap(),
            retries: 1,
            reason,
            request_id: "r-1".into(),
        }
    }

    #[test]
    fn zipkin_spans_carry_ids_timing_and_tags() {
        let out: Value =
            serde_json::from_slice(&zipkin_json("svc", &[span(Kind::Client, None, 200)])).unwrap();
        let s = &out[0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["id"], "00f067aa0ba902b7");
        assert_eq!(s["parentId"], "0000000000001111");
        assert_eq!(s["kind"], "CLIENT");
        assert_eq!(s["name"], "GET orders");
        assert_eq!(s["timestamp"], 1_700_000_000_000_000u64);
        assert_eq!(s["duration"], 1500);
        assert_eq!(s["localEndpoint"]["serviceName"], "svc");
        assert_eq!(s["remoteEndpoint"]["ipv4"], "127.0.0.1");
        assert_eq!(s["tags"]["upstream_cluster"], "orders-v1");
        assert_eq!(s["tags"]["retries"], "1");
        assert!(s["tags"].get("error").is_none());
    }

    #[test]
    fn otlp_round_trips_through_the_official_schema() {
        let bytes = otlp_protobuf("svc", &[span(Kind::Server, Some("upstream_timeout"), 504)]);
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let s = &rs.scope_spans[0].spans[0];
        assert_eq!(
            s.trace_id,
            0x4bf92f3577b34da6a3ce929d0e0e4736u128
                .to_be_bytes()
                .to_vec()
        );
        assert_eq!(s.parent_span_id, 0x1111u64.to_be_bytes().to_vec());
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 1_500_000);
        assert_eq!(s.status.as_ref().unwrap().code, StatusCode::Error as i32);
        let status = s
            .attributes
            .iter()
            .find(|a| a.key == "http.status_code")
            .unwrap();
        assert_eq!(
            status.value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(504))
        );
    }
}
