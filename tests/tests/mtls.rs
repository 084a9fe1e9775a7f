//! Mutual TLS between two sidecars on loopback: client → sidecar A (plain HTTP listener,
//! route to a meshed cluster) → a relay that records the bytes → sidecar B (mTLS listener)
//! → the app. Certificates come from the real `sidecar certs` subcommand.

use std::path::Path;
use std::time::Duration;

use e2e_tests::client::{Client, RawConn};
use e2e_tests::mesh::{self, Mesh, Relay};
use e2e_tests::process::cli;
use e2e_tests::proxy_config::{cluster, to_yaml};
use e2e_tests::upstream::{self, Reply, Upstream};
use e2e_tests::wait::eventually;
use e2e_tests::{Sidecar, load};
use serde_json::{Value, json};

/// The app's name is in every echo reply: the relay must never see it.
const APP: &str = "app-confidential-7c1e";
const TD: &str = "mesh.test";

async fn app() -> Upstream {
    upstream::http1()
        .name(APP)
        .fallback(Reply::echo())
        .run()
        .await
}

/// Sidecar B: mTLS listener `in` (with `mtls` as given) routing to the app.
async fn server_side(identity_dir: &Path, mtls: Value, app: &Upstream) -> Sidecar {
    Sidecar::builder(json!({
        "identity": mesh::identity(identity_dir),
        "listeners": [{
            "name": "in",
            "mtls": mtls,
            "routes": [{ "name": "app", "cluster": "app" }],
        }],
        "clusters": [cluster("app", [app.addr()])],
    }))
    .access_log()
    .start()
    .await
}

/// Sidecar A: plain listener `out` routing to the meshed cluster `b` at `endpoint`.
async fn client_side(
    identity_dir: &Path,
    endpoint: std::net::SocketAddr,
    expect: &str,
    protocol: &str,
) -> Sidecar {
    Sidecar::start(json!({
        "identity": mesh::identity(identity_dir),
        "listeners": [{ "name": "out", "routes": [{ "name": "b", "cluster": "b" }] }],
        "clusters": [{
            "name": "b",
            "endpoints": [endpoint.to_string()],
            "protocol": protocol,
            "mtls": { "identity": expect },
        }],
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_the_mesh_encrypted_and_the_app_sees_the_callers_identity() {
    let mesh = Mesh::new(TD);
    let (a_id, b_id) = (mesh.id("shop", "cart"), mesh.id("pay", "api"));
    let app = app().await;
    let b = server_side(&mesh.issue("b", &b_id), json!({ "mode": "strict" }), &app).await;
    let relay = Relay::start(b.listener("in")).await;
    let a = client_side(&mesh.issue("a", &a_id), relay.addr(), &b_id, "http2").await;

    let mut client = Client::http1(a.listener("out")).await;
    for i in 0..3 {
        let reply = client
            .get(&format!("/orders/secret-path-{i}"))
            // A client must not be able to claim an identity.
            .header(
                "x-forwarded-client-cert",
                "By=x;URI=spiffe://mesh.test/ns/kube-system/sa/admin",
            )
            .header("x-request-id", &format!("mesh-{i}"))
            .send()
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let echoed = reply.echoed();
        assert_eq!(echoed.upstream, APP);
        assert_eq!(
            echoed.header_all("x-forwarded-client-cert"),
            [format!("By={b_id};URI={a_id}")],
            "the app sees the caller's SPIFFE ID, and only that"
        );
    }

    // The sidecars spoke TLS to each other: every connection opens with a handshake record,
    // and nothing of the requests or replies crossed in clear.
    let openings = relay.openings();
    assert!(!openings.is_empty(), "no connection crossed the relay");
    for o in &openings {
        assert_eq!(&o[..2], &[0x16, 0x03], "not a TLS handshake: {o:02x?}");
    }
    assert!(!relay.saw(APP.as_bytes()), "the reply crossed in clear");
    assert!(!relay.saw(b"secret-path"), "the request crossed in clear");
    assert!(
        !relay.saw(b"spiffe://mesh.test/ns/kube-system"),
        "the spoofed header crossed"
    );

    // ALPN chose HTTP/2 between the sidecars.
    let entry = b.access_log_entry("mesh-0").await;
    assert_eq!(entry["protocol"], "HTTP/2", "{entry}");

    let mb = b.admin().metrics().await;
    let ma = a.admin().metrics().await;
    assert!(
        mb.one(
            "sidecar_tls_handshakes_total",
            &[("direction", "inbound"), ("name", "in")]
        ) >= 1.0
    );
    assert!(
        ma.one(
            "sidecar_tls_handshakes_total",
            &[("direction", "outbound"), ("name", "b")]
        ) >= 1.0
    );
    assert_eq!(
        mb.sum(
            "sidecar_requests_total",
            &[("listener", "in"), ("code_class", "2xx")]
        ),
        3.0
    );
    assert_eq!(
        ma.sum(
            "sidecar_requests_total",
            &[("listener", "out"), ("code_class", "2xx")]
        ),
        3.0
    );
    // Certificate expiry: a 24 h certificate, reported by SPIFFE ID with its serial.
    let left = ma.one(
        "sidecar_tls_certificate_expiry_seconds",
        &[("spiffe_id", &a_id)],
    );
    assert!((86_000.0..=86_400.0).contains(&left), "expiry {left}");
    let serial = mesh::cert_in(&mesh.path("a")).serial;
    assert_eq!(
        ma.one(
            "sidecar_tls_certificate_info",
            &[("spiffe_id", &a_id), ("serial", &serial)]
        ),
        1.0
    );
    let not_after = ma.one(
        "sidecar_tls_certificate_not_after_timestamp_seconds",
        &[("spiffe_id", &a_id)],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (not_after - now - left).abs() <= 2.0,
        "not_after {not_after}, left {left}"
    );
}

/// A plaintext client (an app with no sidecar) sends a request straight to B, claiming an
/// identity it does not have.
async fn plaintext_get(addr: std::net::SocketAddr) -> String {
    let mut conn = RawConn::connect(addr).await;
    let _ = conn
        .write(
            b"GET /plain HTTP/1.1\r\nhost: app\r\n\
              X-Forwarded-Client-Cert: By=x;URI=spiffe://mesh.test/ns/kube-system/sa/admin\r\n\
              connection: close\r\n\r\n",
        )
        .await;
    let bytes = conn
        .read_to_close(Duration::from_secs(5))
        .await
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_plaintext_and_permissive_accepts_both() {
    let mesh = Mesh::new(TD);
    let (a_id, b_id) = (mesh.id("shop", "cart"), mesh.id("pay", "api"));
    let app = app().await;
    let b_dir = mesh.issue("b", &b_id);

    let strict = server_side(&b_dir, json!({ "mode": "strict" }), &app).await;
    let answer = plaintext_get(strict.listener("in")).await;
    assert!(
        !answer.starts_with("HTTP/"),
        "strict answered plaintext: {answer:?}"
    );
    assert_eq!(app.requests(), 0);
    let m = strict.admin().metrics().await;
    assert_eq!(
        m.one(
            "sidecar_tls_handshake_errors_total",
            &[
                ("direction", "inbound"),
                ("name", "in"),
                ("reason", "not_tls")
            ]
        ),
        1.0
    );

    let permissive = server_side(&b_dir, json!({ "mode": "permissive" }), &app).await;
    let answer = plaintext_get(permissive.listener("in")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(APP), "{answer}");
    assert!(
        !answer
            .to_ascii_lowercase()
            .contains("x-forwarded-client-cert"),
        "a plaintext caller has no identity: {answer}"
    );
    // The same listener still takes mTLS, with the identity passed on.
    let a = client_side(
        &mesh.issue("a", &a_id),
        permissive.listener("in"),
        &b_id,
        "http1",
    )
    .await;
    let reply = Client::http1(a.listener("out")).await.get("/").send().await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.echoed().header("x-forwarded-client-cert"),
        Some(format!("By={b_id};URI={a_id}").as_str())
    );
    let m = permissive.admin().metrics().await;
    assert_eq!(
        m.one(
            "sidecar_tls_plaintext_connections_total",
            &[("listener", "in")]
        ),
        1.0
    );
    assert_eq!(
        m.one(
            "sidecar_tls_handshakes_total",
            &[("direction", "inbound"), ("name", "in")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_identity_gets_403_and_is_counted() {
    let mesh = Mesh::new(TD);
    let (a_id, b_id) = (mesh.id("shop", "cart"), mesh.id("pay", "api"));
    let app = app().await;
    let b_dir = mesh.issue("b", &b_id);
    let a_dir = mesh.issue("a", &a_id);

    let closed = server_side(
        &b_dir,
        json!({ "allow": ["spiffe://mesh.test/ns/ops/*", "spiffe://mesh.test/ns/shop/sa/checkout"] }),
        &app,
    )
    .await;
    let a = client_side(&a_dir, closed.listener("in"), &b_id, "http1").await;
    let reply = Client::http1(a.listener("out")).await.get("/").send().await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(reply.sidecar_error(), Some("unauthorized_identity"));
    assert!(reply.text().contains(&a_id), "{}", reply.text());
    assert_eq!(app.requests(), 0);
    let m = closed.admin().metrics().await;
    assert_eq!(
        m.one("sidecar_authz_denied_total", &[("listener", "in")]),
        1.0
    );
    assert_eq!(
        m.one(
            "sidecar_local_replies_total",
            &[("listener", "in"), ("reason", "unauthorized_identity")]
        ),
        1.0
    );
    // The caller's namespace is allowed on another listener.
    let open = server_side(
        &b_dir,
        json!({ "allow": ["spiffe://mesh.test/ns/shop/*"] }),
        &app,
    )
    .await;
    let a = client_side(&a_dir, open.listener("in"), &b_id, "http1").await;
    let reply = Client::http1(a.listener("out")).await.get("/").send().await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(app.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_identity_upstream_is_refused_by_the_client_side() {
    let mesh = Mesh::new(TD);
    let app = app().await;
    let impostor = mesh.id("pay", "impostor");
    let expected = mesh.id("pay", "api");
    let b = server_side(&mesh.issue("b", &impostor), json!({}), &app).await;
    let a = client_side(
        &mesh.issue("a", &mesh.id("shop", "cart")),
        b.listener("in"),
        &expected,
        "http1",
    )
    .await;

    let reply = Client::http1(a.listener("out")).await.get("/").send().await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.sidecar_error(), Some("upstream_identity_mismatch"));
    let text = reply.text();
    assert!(
        text.contains(&format!(
            "the peer presents {impostor}, but {expected} is expected"
        )),
        "{text}"
    );
    assert_eq!(app.requests(), 0, "nothing reached the impostor's app");
    let m = a.admin().metrics().await;
    assert!(
        m.one(
            "sidecar_tls_handshake_errors_total",
            &[
                ("direction", "outbound"),
                ("name", "b"),
                ("reason", "identity_mismatch")
            ]
        ) >= 1.0
    );
    assert!(
        a.stderr().contains("outbound mTLS handshake failed"),
        "{}",
        a.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_errors_name_expired_and_wrong_ca_certificates() {
    let mesh = Mesh::new(TD);
    let b_id = mesh.id("pay", "api");
    let app = app().await;
    let b = server_side(&mesh.issue("b", &b_id), json!({}), &app).await;

    // A client certificate from another CA: A's own bundle does not know B's CA either.
    let other = Mesh::new(TD);
    let stranger = other.issue("stranger", &other.id("shop", "cart"));
    let a = client_side(&stranger, b.listener("in"), &b_id, "http1").await;
    let reply = Client::http1(a.listener("out")).await.get("/").send().await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.sidecar_error(), Some("upstream_tls_failed"));
    assert!(reply.text().contains("unknown_ca"), "{}", reply.text());
    let m = a.admin().metrics().await;
    assert!(
        m.one(
            "sidecar_tls_handshake_errors_total",
            &[("direction", "outbound"), ("reason", "unknown_ca")]
        ) >= 1.0
    );
    // The server refuses the stranger's certificate for the same reason.
    let e = mesh::tls_get(b.listener("in"), &stranger, "/")
        .await
        .expect("a handshake");
    assert!(e.response.is_err(), "{e:?}");
    let m = b.admin().metrics().await;
    assert!(
        m.one(
            "sidecar_tls_handshake_errors_total",
            &[("direction", "inbound"), ("reason", "unknown_ca")]
        ) >= 1.0
    );

    // A certificate that expires while the sidecar runs: peers refuse it, and both sides say why.
    let short = mesh.path("short");
    mesh::issue_into(&mesh.ca_dir(), &mesh.id("shop", "cart"), "6s", "0s", &short);
    let a = client_side(&short, b.listener("in"), &b_id, "http1").await;
    eventually(
        "A's certificate to expire",
        Duration::from_secs(10),
        async || {
            let m = a.admin().metrics().await;
            match m.one("sidecar_tls_certificate_expiry_seconds", &[]) {
                left if left < 0.0 => Ok(()),
                left => Err(left),
            }
        },
    )
    .await;
    let reply = Client::http1(a.listener("out")).await.get("/").send().await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    let m = b.admin().metrics().await;
    assert!(
        m.one(
            "sidecar_tls_handshake_errors_total",
            &[("direction", "inbound"), ("reason", "certificate_expired")]
        ) >= 1.0
    );
    assert!(
        b.stderr().contains("reason=certificate_expired")
            || b.stderr().contains("certificate_expired"),
        "{}",
        b.stderr()
    );
    eventually(
        "A to log that its certificate expired",
        Duration::from_secs(5),
        async || match a.stderr().contains("the workload certificate has expired") {
            true => Ok(()),
            false => Err(a.stderr()),
        },
    )
    .await;
}

/// Rotates B's certificate under load through A; `rotate` replaces the files.
async fn rotation_under_load(mesh: &Mesh, b_dir: &Path, b_id: &str, rotate: impl FnOnce()) {
    let app = app().await;
    let a_dir = mesh.issue("a", &mesh.id("shop", "cart"));
    let b = server_side(b_dir, json!({}), &app).await;
    let a = client_side(&a_dir, b.listener("in"), b_id, "http1").await;
    let old = mesh::cert_in(b_dir).serial;
    let seen = mesh::tls_get(b.listener("in"), &a_dir, "/")
        .await
        .expect("a handshake");
    assert_eq!(seen.server_cert.serial, old);
    assert!(
        seen.response
            .as_ref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        "{seen:?}"
    );

    let load = load::start(a.listener("out"), "/", 20_000, Duration::from_secs(30));
    load.run_for(100).await;
    rotate();
    let new = mesh::cert_in(b_dir).serial;
    assert_ne!(new, old, "the files were not rotated");
    eventually(
        "new handshakes to present the new certificate",
        Duration::from_secs(10),
        async || {
            let seen = mesh::tls_get(b.listener("in"), &a_dir, "/").await?;
            match seen.server_cert.serial == new
                && seen
                    .response
                    .as_ref()
                    .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                true => Ok(()),
                false => Err(format!("{seen:?}")),
            }
        },
    )
    .await;
    let m = b.admin().metrics().await;
    assert_eq!(
        m.one("sidecar_tls_certificate_info", &[("serial", &new)]),
        1.0
    );
    assert!(
        m.find("sidecar_tls_certificate_info", &[("serial", &old)])
            .is_empty()
    );
    assert!(
        m.one(
            "sidecar_tls_certificate_reloads_total",
            &[("result", "success")]
        ) >= 1.0
    );
    load.run_for(100).await;
    let report = load.stop().await;
    assert!(report.sent >= 200, "{report:?}");
    assert!(
        report.failures.is_empty(),
        "requests lost during rotation: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rewriting_the_files_loses_no_requests() {
    let mesh = Mesh::new(TD);
    let b_id = mesh.id("pay", "api");
    let b_dir = mesh.issue("b", &b_id);
    let ca = mesh.ca_dir();
    let dir = b_dir.clone();
    let id = b_id.clone();
    rotation_under_load(&mesh, &b_dir, &b_id, move || {
        mesh::issue_into(&ca, &id, "24h", "0s", &dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_symlink_swap_loses_no_requests() {
    let mesh = Mesh::new(TD);
    let b_id = mesh.id("pay", "api");
    let b_dir = mesh.issue_projected("b", &b_id);
    rotation_under_load(&mesh, &b_dir, &b_id, || {
        mesh::rotate_projected(&mesh, &b_dir, &b_id, 2)
    })
    .await;
}

/// `sidecar check-config` on a document with an `identity` block.
fn check(mesh: &Mesh, doc: Value) -> String {
    let file = mesh.path(&format!("config-{}.yaml", fastrand::u32(..)));
    std::fs::write(&file, to_yaml(&doc)).expect("write the config");
    let out = cli(&["check-config", file.to_str().unwrap()], &[]);
    assert_eq!(out.code, Some(64), "{out:?}");
    out.stderr
}

fn doc_with(identity: Value) -> Value {
    json!({
        "identity": identity,
        "listeners": [{ "name": "in", "address": "127.0.0.1:1", "mtls": {}, "routes": [{ "name": "r", "cluster": "c" }] }],
        "clusters": [{ "name": "c", "endpoints": ["127.0.0.1:2"] }],
    })
}

#[test]
fn bad_identity_files_are_named_with_the_reason_at_startup() {
    let mesh = Mesh::new(TD);
    let id = mesh.id("shop", "cart");

    let expired = mesh.path("expired");
    mesh::issue_into(&mesh.ca_dir(), &id, "1h", "2h", &expired);
    let err = check(&mesh, doc_with(mesh::identity(&expired)));
    let cert = expired.join("cert.pem");
    assert!(
        err.contains(&format!(
            "identity.cert_file: {}: the certificate expired at",
            cert.display()
        )),
        "{err}"
    );

    let wrong_ca = mesh.issue("wrong-ca", &id);
    let other = Mesh::new(TD);
    std::fs::copy(other.ca_dir().join("ca.pem"), wrong_ca.join("bundle.pem")).unwrap();
    let err = check(&mesh, doc_with(mesh::identity(&wrong_ca)));
    assert!(
        err.contains(&format!(
            "identity.cert_file: {}: the certificate was not issued by a CA in the trust bundle {} (wrong CA)",
            wrong_ca.join("cert.pem").display(),
            wrong_ca.join("bundle.pem").display()
        )),
        "{err}"
    );

    let good = mesh.issue("good", &id);
    let mut ident = mesh::identity(&good);
    ident["key_file"] = json!(good.join("missing-key.pem"));
    let err = check(&mesh, doc_with(ident));
    assert!(
        err.contains(&format!(
            "identity.key_file: {}: cannot read: No such file or directory",
            good.join("missing-key.pem").display()
        )),
        "{err}"
    );

    let mismatched = mesh.issue("mismatched", &id);
    let mut ident = mesh::identity(&mismatched);
    ident["key_file"] = json!(good.join("key.pem"));
    let err = check(&mesh, doc_with(ident));
    assert!(
        err.contains("identity.key_file:") && err.contains("does not belong to the certificate"),
        "{err}"
    );

    // The mesh blocks without an identity, and a bad allow entry and cluster identity.
    let err = check(
        &mesh,
        json!({
            "listeners": [{ "name": "in", "address": "127.0.0.1:1", "mtls": { "allow": ["mesh.test/ns/a"] }, "routes": [{ "name": "r", "cluster": "c" }] }],
            "clusters": [{ "name": "c", "endpoints": ["127.0.0.1:2"], "mtls": { "identity": "spiffe://Mesh/x" } }],
        }),
    );
    assert!(
        err.contains("listeners[0].mtls: mTLS needs the workload's certificate"),
        "{err}"
    );
    assert!(
        err.contains("listeners[0].mtls.allow[0]: \"mesh.test/ns/a\" is not a SPIFFE ID"),
        "{err}"
    );
    assert!(
        err.contains("clusters[0].mtls.identity: \"spiffe://Mesh/x\""),
        "{err}"
    );

    // The certs subcommand says what is wrong too.
    let out = cli(
        &[
            "certs",
            "issue",
            "--ca",
            mesh.path("nowhere").to_str().unwrap(),
            "--spiffe-id",
            &id,
            "--out",
            mesh.path("x").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("nowhere/ca.pem: cannot read"),
        "{}",
        out.stderr
    );
    let out = cli(
        &[
            "certs",
            "issue",
            "--ca",
            mesh.ca_dir().to_str().unwrap(),
            "--spiffe-id",
            "spiffe://other.test/ns/a/sa/b",
            "--out",
            mesh.path("x").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.stderr
            .contains("trust domain \"other.test\" is not the CA's (\"mesh.test\")"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_crosses_the_mesh_encrypted() {
    use e2e_tests::upstream::tcp::{self, EOF_REPLY};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mesh = Mesh::new(TD);
    let (a_id, b_id) = (mesh.id("shop", "cart"), mesh.id("db", "redis"));
    let echo = tcp::echo().await;
    let b = Sidecar::start(json!({
        "identity": mesh::identity(&mesh.issue("b", &b_id)),
        "listeners": [{
            "name": "in", "protocol": "tcp", "cluster": "echo",
            "mtls": { "allow": ["spiffe://mesh.test/ns/shop/*"] },
        }],
        "clusters": [cluster("echo", [echo.addr()])],
    }))
    .await;
    let relay = Relay::start(b.listener("in")).await;
    let a = Sidecar::start(json!({
        "identity": mesh::identity(&mesh.issue("a", &a_id)),
        "listeners": [{ "name": "out", "protocol": "tcp", "cluster": "b" }],
        "clusters": [{ "name": "b", "endpoints": [relay.addr().to_string()], "mtls": { "identity": b_id } }],
    }))
    .await;

    let mut conn = tokio::net::TcpStream::connect(a.listener("out"))
        .await
        .expect("connect to A");
    conn.write_all(b"opaque-bytes-in-clear?").await.unwrap();
    conn.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
        .await
        .expect("the echo within 10s")
        .expect("read the echo");
    assert_eq!(
        got,
        [b"opaque-bytes-in-clear?".as_slice(), EOF_REPLY].concat()
    );
    assert_eq!(&relay.openings()[0][..2], &[0x16, 0x03]);
    assert!(!relay.saw(b"opaque-bytes"), "the bytes crossed in clear");
    let m = b.admin().metrics().await;
    assert_eq!(
        m.one(
            "sidecar_tls_handshakes_total",
            &[("direction", "inbound"), ("name", "in")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_with_other_identity_files_takes_effect() {
    let mesh = Mesh::new(TD);
    let b_id = mesh.id("pay", "api");
    let app = app().await;
    let b = server_side(&mesh.issue("b", &b_id), json!({}), &app).await;
    let doc = |dir: &Path| {
        json!({
            "identity": mesh::identity(dir),
            "listeners": [{ "name": "out", "routes": [{ "name": "b", "cluster": "b" }] }],
            "clusters": [{
                "name": "b",
                "endpoints": [b.listener("in").to_string()],
                "mtls": { "identity": b_id },
            }],
        })
    };
    let mut a = Sidecar::start(doc(&mesh.issue("a1", &mesh.id("shop", "cart")))).await;
    let mut client = Client::http1(a.listener("out")).await;
    let xfcc = |r: &e2e_tests::client::Reply| {
        r.echoed()
            .header("x-forwarded-client-cert")
            .map(str::to_owned)
    };
    let reply = client.get("/").send().await;
    assert_eq!(
        xfcc(&reply),
        Some(format!("By={b_id};URI={}", mesh.id("shop", "cart")))
    );

    // New files under new paths: the meshed cluster is rebuilt with the new certificate.
    let v2 = mesh.id("shop", "cart-v2");
    a.rewrite_config(doc(&mesh.issue("a2", &v2)));
    let want = Some(format!("By={b_id};URI={v2}"));
    eventually(
        "A to present its new identity",
        Duration::from_secs(10),
        async || {
            let reply = client.get("/").send().await;
            if xfcc(&reply) == want {
                Ok(())
            } else {
                Err(xfcc(&reply))
            }
        },
    )
    .await;
    let m = a.admin().metrics().await;
    assert_eq!(
        m.one("sidecar_tls_certificate_info", &[("spiffe_id", &v2)]),
        1.0
    );
    assert!(
        m.find(
            "sidecar_tls_certificate_info",
            &[("spiffe_id", &mesh.id("shop", "cart"))]
        )
        .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_of_a_meshed_cluster_go_over_mtls() {
    let mesh = Mesh::new(TD);
    let b_id = mesh.id("pay", "api");
    let app = app().await;
    let b = server_side(&mesh.issue("b", &b_id), json!({ "mode": "strict" }), &app).await;
    let a = Sidecar::start(json!({
        "identity": mesh::identity(&mesh.issue("a", &mesh.id("shop", "cart"))),
        "listeners": [{ "name": "out", "routes": [{ "name": "b", "cluster": "b" }] }],
        "clusters": [{
            "name": "b",
            "endpoints": [b.listener("in").to_string()],
            "mtls": { "identity": b_id },
            "health_checks": {
                "interval": "100ms",
                "timeout": "100ms",
                "http_health_check": { "path": "/healthz" },
            },
        }],
    }))
    .await;
    eventually(
        "HTTP health checks to pass over mTLS",
        Duration::from_secs(10),
        async || {
            let m = a.admin().metrics().await;
            match m.sum(
                "sidecar_health_checks_total",
                &[("cluster", "b"), ("result", "success")],
            ) {
                n if n >= 3.0 => Ok(()),
                n => Err((
                    n,
                    m.sum(
                        "sidecar_health_checks_total",
                        &[("cluster", "b"), ("result", "failure")],
                    ),
                )),
            }
        },
    )
    .await;
    let m = a.admin().metrics().await;
    assert_eq!(
        m.sum(
            "sidecar_health_checks_total",
            &[("cluster", "b"), ("result", "failure")]
        ),
        0.0
    );
    let m = b.admin().metrics().await;
    assert!(
        m.one(
            "sidecar_tls_handshakes_total",
            &[("direction", "inbound"), ("name", "in")]
        ) >= 3.0
    );
    let reply = Client::http1(a.listener("out")).await.get("/").send().await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}
