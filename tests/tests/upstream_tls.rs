//! The sidecar toward an HTTPS upstream: `clusters[].tls` with a test CA, ALPN choosing the
//! protocol, route rewrites on the way, and a failed handshake explained on the reply.

use std::sync::Arc;

use e2e_tests::Sidecar;
use e2e_tests::ambassador::{Check, HttpsApi, Seen, TestCa};
use e2e_tests::client::Client;
use serde_json::json;

fn doc(api: &HttpsApi, tls: serde_json::Value) -> serde_json::Value {
    json!({
        "listeners": [{
            "name": "in",
            "routes": [{
                "name": "api",
                "match": {"prefix": "/local/"},
                "prefix_rewrite": "/v2/",
                "host_rewrite_literal": "api.test",
                "cluster": "secure",
            }],
        }],
        "clusters": [{
            "name": "secure",
            "endpoints": [api.addr.to_string()],
            "tls": tls,
        }],
    })
}

fn anyone() -> Check {
    Arc::new(|_: &Seen| true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_to_an_https_upstream_with_h2_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let api = HttpsApi::start(&ca, anyone()).await;
    let sidecar =
        Sidecar::start(doc(&api, json!({"ca_file": ca.ca_file, "sni": "api.test"}))).await;
    let mut c = Client::http1(sidecar.listener("in")).await;
    for _ in 0..3 {
        let r = c.get("/local/items?x=1").send().await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let seen = api.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.path, "/v2/items?x=1");
    let clusters = sidecar.admin().json("/clusters").await;
    assert!(clusters.to_string().contains("secure"), "{clusters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_when_alpn_offers_only_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let api = HttpsApi::start(&ca, anyone()).await;
    let sidecar = Sidecar::start(doc(
        &api,
        json!({"ca_file": ca.ca_file, "system_roots": false, "alpn": ["http/1.1"]}),
    ))
    .await;
    let mut c = Client::http1(sidecar.listener("in")).await;
    let r = c.get("/local/a").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = api.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["host"], "api.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_502_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let api = HttpsApi::start(&ca, anyone()).await;
    // The Mozilla roots only: the test CA is not trusted.
    let sidecar = Sidecar::start(doc(&api, json!({}))).await;
    let mut c = Client::http1(sidecar.listener("in")).await;
    let r = c.get("/local/a").send().await;
    assert_eq!(
        (r.status.as_u16(), r.sidecar_error()),
        (502, Some("upstream_tls_failed"))
    );
    assert!(r.text().contains("certificate"), "{}", r.text());
    assert_eq!(api.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_for_an_api_that_demands_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::new(dir.path());
    ca.require_client_cert();
    let api = HttpsApi::start(&ca, anyone()).await;
    let with = json!({
        "ca_file": ca.ca_file,
        "cert_file": ca.client_cert_file,
        "key_file": ca.client_key_file,
    });
    let sidecar = Sidecar::start(doc(&api, with)).await;
    let mut c = Client::http1(sidecar.listener("in")).await;
    let r = c.get("/local/a").send().await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Without the certificate the API refuses the handshake. With TLS 1.3 the client's side
    // of the handshake has finished when the server's refusal arrives, so the proxy sees it
    // as a handshake failure or as the connection reset on the first request.
    let without = Sidecar::start(doc(&api, json!({"ca_file": ca.ca_file}))).await;
    let mut c = Client::http1(without.listener("in")).await;
    let r = c.get("/local/a").send().await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        matches!(
            r.sidecar_error(),
            Some("upstream_tls_failed" | "upstream_reset")
        ),
        "{}",
        r.text()
    );
    assert_eq!(api.count(), 1);
}
