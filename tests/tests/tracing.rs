//! Distributed tracing end to end: trace context propagated through two sidecars in a chain,
//! spans exported to a collector the test runs (Zipkin v2 JSON and OTLP/HTTP protobuf,
//! decoded with the official schema), the caller's sampling decision and header format
//! honoured, and a dead collector that never slows a request.

use std::time::{Duration, Instant};

use e2e_tests::Sidecar;
use e2e_tests::client::Client;
use e2e_tests::collector::Collector;
use e2e_tests::proxy_config::cluster;
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::eventually;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// A sidecar whose listener `in` (of `direction`) sends everything to `target`, tracing every
/// request it starts a trace for, exporting to `collector` in `protocol`.
fn traced(
    service: &str,
    direction: &str,
    target: std::net::SocketAddr,
    collector: &Collector,
    protocol: &str,
) -> Value {
    let path = if protocol == "otlp" {
        "/v1/traces"
    } else {
        "/api/v2/spans"
    };
    json!({
        "tracing": {
            "sampling": 1.0,
            "service_name": service,
            "collector": {
                "protocol": protocol,
                "endpoint": collector.url(path),
                "batch_size": 16,
                "flush_interval": "100ms",
            },
        },
        "listeners": [{
            "name": "in",
            "traffic_direction": direction,
            "routes": [{ "name": format!("{service}-route"), "cluster": "next" }],
        }],
        "clusters": [cluster("next", [target])],
    })
}

/// Every Zipkin span the collector has received so far.
fn zipkin_spans(c: &Collector) -> Vec<Value> {
    c.exports()
        .iter()
        .flat_map(|e| {
            assert_eq!(e.path, "/api/v2/spans");
            assert_eq!(e.content_type, "application/json");
            let spans: Vec<Value> = serde_json::from_slice(&e.body).expect("Zipkin JSON");
            spans
        })
        .collect()
}

fn header<'a>(seen: &'a e2e_tests::upstream::Echoed, name: &str) -> Option<&'a str> {
    seen.header(name)
}

async fn app() -> Upstream {
    upstream::http1()
        .name("app")
        .fallback(Reply::echo())
        .run()
        .await
}

#[tokio::test]
async fn spans_link_parent_and_child_across_two_sidecars() {
    let collector = Collector::start().await;
    let app = app().await;
    // Pod B's sidecar in front of the app; pod A's sidecar in front of pod B.
    let inbound = Sidecar::start(traced(
        "payments",
        "inbound",
        app.addr(),
        &collector,
        "zipkin",
    ))
    .await;
    let outbound = Sidecar::start(traced(
        "orders",
        "outbound",
        inbound.listener("in"),
        &collector,
        "zipkin",
    ))
    .await;

    let mut client = Client::http1(outbound.listener("in")).await;
    let reply = client.get("/pay/42").send().await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let seen = reply.echoed();

    let spans = eventually("both sidecars' spans at the collector", WAIT, async || {
        let spans = zipkin_spans(&collector);
        if spans.len() >= 2 {
            Ok(spans)
        } else {
            Err(spans)
        }
    })
    .await;
    assert_eq!(spans.len(), 2, "one span per sidecar: {spans:#?}");
    let client_span = spans
        .iter()
        .find(|s| s["kind"] == "CLIENT")
        .expect("a client span");
    let server_span = spans
        .iter()
        .find(|s| s["kind"] == "SERVER")
        .expect("a server span");

    assert_eq!(client_span["localEndpoint"]["serviceName"], "orders");
    assert_eq!(server_span["localEndpoint"]["serviceName"], "payments");
    assert!(
        client_span.get("parentId").is_none(),
        "the outbound sidecar started the trace: {client_span}"
    );
    assert_eq!(client_span["traceId"], server_span["traceId"], "one trace");
    assert_eq!(
        server_span["parentId"], client_span["id"],
        "the inbound span's parent is the outbound span"
    );
    assert_eq!(server_span["tags"]["http.status_code"], "200");
    assert_eq!(server_span["tags"]["route"], "payments-route");
    assert_eq!(server_span["tags"]["upstream_cluster"], "next");
    assert_eq!(
        server_span["tags"]["upstream_address"],
        app.addr().to_string()
    );
    assert_eq!(server_span["tags"]["http.path"], "/pay/42");
    assert_eq!(server_span["name"], "GET payments-route");
    assert!(server_span["duration"].as_u64().unwrap() >= 1);

    // The app sees the inbound sidecar's span as its parent.
    let traceparent = header(&seen, "traceparent").expect("traceparent reaches the app");
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            server_span["traceId"].as_str().unwrap(),
            server_span["id"].as_str().unwrap()
        )
    );

    let spans_metric = |m: &e2e_tests::metrics::Metrics, result| {
        m.one("sidecar_trace_spans_total", &[("result", result)])
    };
    let m = inbound.admin().metrics().await;
    assert_eq!(spans_metric(&m, "exported"), 1.0);
    assert_eq!(spans_metric(&m, "dropped"), 0.0);
}

#[tokio::test]
async fn otlp_export_decodes_with_the_official_schema() {
    let collector = Collector::start().await;
    let app = app().await;
    let proxy = Sidecar::start(traced(
        "checkout",
        "inbound",
        app.addr(),
        &collector,
        "otlp",
    ))
    .await;
    let mut client = Client::http1(proxy.listener("in")).await;
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let reply = client
        .get("/buy")
        .header(
            "traceparent",
            &format!("00-{parent_trace}-00f067aa0ba902b7-01"),
        )
        .send()
        .await;
    assert_eq!(reply.status, 200);

    let export = eventually("an OTLP export", WAIT, async || {
        collector.exports().into_iter().next().ok_or("none yet")
    })
    .await;
    assert_eq!(export.path, "/v1/traces");
    assert_eq!(export.content_type, "application/x-protobuf");
    let req = ExportTraceServiceRequest::decode(export.body.as_ref()).expect("valid OTLP protobuf");
    let rs = &req.resource_spans[0];
    let service = rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|a| a.key == "service.name")
        .expect("service.name");
    assert_eq!(
        service.value.as_ref().unwrap().value,
        Some(any_value::Value::StringValue("checkout".into()))
    );
    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(
        hex(&span.trace_id),
        parent_trace,
        "the caller's trace continues"
    );
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
    let seen = reply.echoed();
    assert_eq!(
        seen.header("traceparent").unwrap(),
        format!("00-{parent_trace}-{}-01", hex(&span.span_id))
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn the_callers_decision_and_header_format_are_kept() {
    let collector = Collector::start().await;
    let app = app().await;
    let proxy = Sidecar::builder(traced("svc", "inbound", app.addr(), &collector, "zipkin"))
        .access_log()
        .start()
        .await;
    let mut client = Client::http1(proxy.listener("in")).await;

    // Not sampled by the caller: propagated as not sampled, no span, at sampling 1.0.
    let reply = client
        .get("/a")
        .header(
            "traceparent",
            "00-11111111111111111111111111111111-2222222222222222-00",
        )
        .send()
        .await;
    let tp = reply.echoed().header("traceparent").unwrap().to_owned();
    assert!(
        tp.starts_with("00-11111111111111111111111111111111-") && tp.ends_with("-00"),
        "{tp}"
    );
    assert!(
        !tp.contains("2222222222222222"),
        "the proxy's span is the new parent"
    );

    // B3 single header in, B3 single header out, 64-bit trace id kept 64-bit.
    let reply = client
        .get("/b")
        .header("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
        .send()
        .await;
    let seen = reply.echoed();
    let b3 = seen.header("b3").expect("b3 reaches the app");
    assert!(
        b3.starts_with("64fe8b2a57d3eff7-") && b3.ends_with("-1"),
        "{b3}"
    );
    assert!(
        seen.header("traceparent").is_none(),
        "format kept: {seen:?}"
    );

    // B3 multi in, B3 multi out, with the caller's span as the parent.
    let reply = client
        .get("/c")
        .header("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124")
        .header("x-b3-spanid", "a2fb4a1d1a96d312")
        .header("x-b3-sampled", "1")
        .send()
        .await;
    let seen = reply.echoed();
    assert_eq!(
        seen.header("x-b3-traceid"),
        Some("463ac35c9f6413ad48485a3953bb6124")
    );
    assert_eq!(seen.header("x-b3-parentspanid"), Some("a2fb4a1d1a96d312"));
    let b3_span = seen.header("x-b3-spanid").unwrap().to_owned();

    let spans = eventually("two sampled spans", WAIT, async || {
        let spans = zipkin_spans(&collector);
        if spans.len() >= 2 {
            Ok(spans)
        } else {
            Err(spans)
        }
    })
    .await;
    assert_eq!(
        spans.len(),
        2,
        "the unsampled request made no span: {spans:#?}"
    );
    assert!(spans.iter().any(|s| s["id"] == b3_span.as_str()));
    assert!(
        spans
            .iter()
            .all(|s| s["traceId"] != "11111111111111111111111111111111")
    );

    // The access log line carries the ids, sampled or not.
    let entry = proxy
        .access_log_entry(reply.header("x-request-id").unwrap())
        .await;
    assert_eq!(entry["trace_id"], "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(entry["span_id"], b3_span.as_str());
}

#[tokio::test]
async fn a_dead_collector_never_slows_requests() {
    let collector = Collector::stalled().await;
    let app = app().await;
    let mut doc = traced("svc", "inbound", app.addr(), &collector, "zipkin");
    doc["tracing"]["collector"]["queue_size"] = json!(8);
    doc["tracing"]["collector"]["batch_size"] = json!(4);
    doc["tracing"]["collector"]["timeout"] = json!("30s");
    let proxy = Sidecar::start(doc).await;
    let mut client = Client::http1(proxy.listener("in")).await;

    let n = 200;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let t = Instant::now();
        let reply = client.get(&format!("/r{i}")).send().await;
        assert_eq!(reply.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    // The collector holds the first export forever; the requests never wait for it.
    assert!(
        slowest < Duration::from_millis(500),
        "a request waited {slowest:?} with the collector stalled"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!collector.exports().is_empty(), "an export was attempted");
    let m = proxy.admin().metrics().await;
    let dropped = m.one("sidecar_trace_spans_total", &[("result", "dropped")]);
    let queued = m.one("sidecar_trace_spans_total", &[("result", "queued")]);
    assert_eq!(
        dropped + queued,
        n as f64,
        "every sampled span is accounted for"
    );
    assert!(
        dropped >= (n - 8 - 4) as f64,
        "a full queue drops: {dropped}"
    );
}
