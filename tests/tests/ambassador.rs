//! The ambassador end to end: the release binary between a client on loopback and an HTTPS
//! "external API" with a test CA, with the npm oauth2-mock-server as the token server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_tests::ambassador::{Ambassador, Check, HttpsApi, Seen, TestCa, TokenServer};
use e2e_tests::client::Client;
use e2e_tests::wait::eventually;

fn auth(s: &Seen) -> String {
    s.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Nothing the process wrote, nor its admin answers, holds any of `secrets`.
async fn assert_no_secret(amb: &Ambassador, secrets: &[&str], extra: &[String]) {
    let metrics = amb.admin.get("/metrics").await.text().to_owned();
    let dump = amb.admin.get("/config_dump").await.text().to_owned();
    assert!(
        dump.contains("<redacted>") || !dump.contains("value"),
        "{dump}"
    );
    let mut everything = vec![amb.output(), metrics, dump];
    everything.extend(extra.iter().cloned());
    for text in &everything {
        for s in secrets {
            assert!(!text.contains(s), "secret {s:?} leaked into:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_header_from_a_rotated_file_over_https_h2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let want = Arc::new(Mutex::new("Bearer sk_first_5e1f".to_owned()));
    let w = want.clone();
    let check: Check = Arc::new(move |s: &Seen| auth(s) == *w.lock().unwrap());
    let api = HttpsApi::start(&ca, check).await;
    let key = dir.path().join("api-key");
    std::fs::write(&key, "sk_first_5e1f\n").unwrap();
    let route = |name: &str, matcher: &str| {
        format!(
            "  - name: {name}\n    match: {matcher}\n    upstream: https://127.0.0.1:{}/v1\n    tls: {{ca_file: {}, system_roots: false}}\n    credential: {{type: header, prefix: \"Bearer \", secret: {{file: {}}}}}\n",
            api.addr.port(),
            ca.ca_file.display(),
            key.display()
        )
    };
    let routes = route("pay", "{prefix: /pay/}") + &route("by-host", "{host: pay.local}");
    let amb = Ambassador::start(dir, &routes, &[]).await;
    let mut c = Client::http1(amb.listener).await;

    let r = c
        .get("/pay/charges?limit=3")
        .header("authorization", "client-own")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = api.last();
    assert_eq!(
        seen.path, "/v1/charges?limit=3",
        "prefix stripped, base path added"
    );
    assert_eq!(seen.version, http::Version::HTTP_2, "h2 chosen by ALPN");
    assert_eq!(
        auth(&seen),
        "Bearer sk_first_5e1f",
        "the client's own credential is replaced"
    );

    // A route by Host: the whole path goes under the base path.
    let r = c.get("/charges/7").host("pay.local").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(api.last().path, "/v1/charges/7");
    assert_eq!(
        api.last().host,
        format!("127.0.0.1:{}", api.addr.port()),
        "the API's own authority is sent, not the local one"
    );

    // Rotation: a new file content is used without a restart.
    std::fs::write(key.with_extension("tmp"), "sk_second_77aa\n").unwrap();
    std::fs::rename(key.with_extension("tmp"), &key).unwrap();
    *want.lock().unwrap() = "Bearer sk_second_77aa".into();
    eventually(
        "the rotated key to be sent",
        Duration::from_secs(10),
        async || {
            let r = c.get("/pay/x").send().await;
            if r.status == 200 {
                Ok(())
            } else {
                Err(r.status)
            }
        },
    )
    .await;

    // Watching the secret file costs nothing once the change is taken: reading the file
    // (ours included) is not a change to react to.
    let before = amb.cpu_ticks();
    let _ = std::fs::read_to_string(&key).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = amb.cpu_ticks() - before;
    assert!(
        spent < 20,
        "an idle ambassador used {spent} CPU ticks in 1 s after a read of its secret file"
    );

    // The egress allow-list: nothing else is forwarded.
    let r = c.get("/elsewhere").send().await;
    assert_eq!(
        (r.status.as_u16(), r.sidecar_error()),
        (404, Some("no_route"))
    );

    let metrics = amb.admin.get("/metrics").await.text().to_owned();
    assert!(
        metrics.contains("ambassador_credentials_injected_total{route=\"pay\"}"),
        "{metrics}"
    );
    assert_no_secret(&amb, &["sk_first_5e1f", "sk_second_77aa"], &[]).await;
}

/// The route `/crm/` to `api` with an OAuth2 client-credentials token from `tokens`, its
/// secret from `CRM_CLIENT_SECRET`; `extra` adds credential fields (indented for them).
fn crm_route(api: &HttpsApi, ca: &TestCa, tokens: &TokenServer, extra: &str) -> String {
    format!(
        "  - name: crm\n    match: {{prefix: /crm/}}\n    upstream: https://127.0.0.1:{}\n    tls: {{ca_file: {}}}\n    credential:\n      type: oauth2\n      token_url: {}\n      allow_plain_http: true\n      client_id: ambassador-test\n      client_secret: {{env: CRM_CLIENT_SECRET}}\n{extra}",
        api.addr.port(),
        ca.ca_file.display(),
        tokens.token_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_single_flight_and_refresh_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let secret = "cs_9f8e7d6c5b4a";
    let tokens = TokenServer::start(
        dir.path(),
        &[
            ("EXPECT_CLIENT_SECRET", secret),
            ("EXPIRES_IN", "2"),
            ("EXPIRES_AS_STRING", "1"),
        ],
    )
    .await;
    let check: Check = Arc::new(|s: &Seen| auth(s).starts_with("Bearer ey"));
    let api = HttpsApi::start(&ca, check).await;
    let routes = crm_route(
        &api,
        &ca,
        &tokens,
        "      scopes: [read]\n      params: {audience: https://crm.test}\n",
    );
    let amb = Ambassador::start(dir, &routes, &[("CRM_CLIENT_SECRET", secret)]).await;

    // 1000 concurrent requests on a cold start (4 HTTP/2 connections of 250 streams, under
    // the listener's 256-stream limit): one token request.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(Client::h2c(amb.listener).await);
    }
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let mut c = conns[i % 4].share().expect("h2 client");
        tasks.push(tokio::spawn(async move {
            c.get(&format!("/crm/items/{i}"))
                .send()
                .await
                .status
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(tokens.requests(), 1, "single flight");

    // 2 s tokens are refreshed ahead of expiry: requests over 3 s never see a 503.
    let mut c = Client::http1(amb.listener).await;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let r = c.get("/crm/ping").send().await;
        assert_eq!(r.status, 200, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let times = tokens.request_times();
    assert!(times.len() >= 2, "refreshed: {times:?}");
    // refresh_at 0.8 of a 2 s lifetime: the next fetch about 1.6 s after the first, before
    // the first token expired.
    let gap = times[1] - times[0];
    assert!(
        (1200..2000).contains(&gap),
        "refresh {gap} ms after the first fetch"
    );

    let metrics = amb.admin.get("/metrics").await.text().to_owned();
    assert!(
        metrics.contains("ambassador_token_fetches_total{route=\"crm\",result=\"success\"}"),
        "{metrics}"
    );
    // The access tokens are secrets too.
    let token = auth(&api.last()).trim_start_matches("Bearer ").to_owned();
    assert!(token.len() > 20);
    assert_no_secret(&amb, &[secret, &token], &[]).await;
}

/// A 401 drops the cached token, fetches a new one and retries once. The token lives an hour
/// here, so no refresh ahead of expiry can swap it between revoking it and the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_401_drops_the_token_and_retries_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let secret = "cs_1a2b3c4d5e6f";
    let tokens = TokenServer::start(
        dir.path(),
        &[("EXPECT_CLIENT_SECRET", secret), ("EXPIRES_IN", "3600")],
    )
    .await;
    let revoked = Arc::new(Mutex::new(String::new()));
    let rv = revoked.clone();
    let check: Check = Arc::new(move |s: &Seen| {
        let a = auth(s);
        a.starts_with("Bearer ey") && a != *rv.lock().unwrap()
    });
    let api = HttpsApi::start(&ca, check).await;
    let routes = crm_route(&api, &ca, &tokens, "");
    let amb = Ambassador::start(dir, &routes, &[("CRM_CLIENT_SECRET", secret)]).await;
    let mut c = Client::http1(amb.listener).await;
    let r = c.get("/crm/ping").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tokens.requests(), 1);

    *revoked.lock().unwrap() = auth(&api.last());
    let r = c.post("/crm/items").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(api.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(tokens.requests(), 2, "one new token after the 401");
    // The new token is kept: the next request fetches nothing.
    let r = c.get("/crm/ping").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(tokens.requests(), 2);

    let token = auth(&api.last()).trim_start_matches("Bearer ").to_owned();
    assert_no_secret(&amb, &[secret, &token], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_failures_give_clear_503s_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let check: Check = Arc::new(|s: &Seen| auth(s).starts_with("Bearer "));
    let api = HttpsApi::start(&ca, check).await;
    let good = TokenServer::start(dir.path(), &[("EXPECT_CLIENT_SECRET", "right-one")]).await;
    let down_port = e2e_tests::ports::loopback().port();
    let route = |name: &str, url: &str, secret: &str| {
        format!(
            "  - name: {name}\n    match: {{prefix: /{name}/}}\n    upstream: https://127.0.0.1:{}\n    tls: {{ca_file: {}}}\n    credential: {{type: oauth2, token_url: \"{url}\", allow_plain_http: true, client_id: c, client_secret: {{value: {secret}}}, client_auth: body}}\n",
            api.addr.port(),
            ca.ca_file.display()
        )
    };
    let routes = route("wrong", &good.token_url(), "wr0ng-s3cret-xyz")
        + &route(
            "later",
            &format!("http://127.0.0.1:{down_port}/token"),
            "right-one",
        );
    let amb = Ambassador::start(dir, &routes, &[]).await;
    let mut c = Client::http1(amb.listener).await;

    let r = c.get("/wrong/x").send().await;
    assert_eq!(
        (r.status.as_u16(), r.sidecar_error()),
        (503, Some("credential_unavailable"))
    );
    let body = r.text().to_owned();
    assert!(
        body.contains("\"wrong\"") && body.contains("invalid_client"),
        "{body}"
    );
    assert_eq!(api.count(), 0, "no request without a credential");

    let r = c.get("/later/x").send().await;
    assert_eq!(
        (r.status.as_u16(), r.sidecar_error()),
        (503, Some("credential_unavailable"))
    );
    let down_body = r.text().to_owned();
    assert!(
        down_body.contains("cannot reach the token endpoint"),
        "{down_body}"
    );

    // The token endpoint comes up: the backoff retry fetches a token, requests pass.
    let port = down_port.to_string();
    let _up = TokenServer::start(
        amb.dir.path(),
        &[("PORT", &port), ("EXPECT_CLIENT_SECRET", "right-one")],
    )
    .await;
    eventually(
        "the route to recover",
        Duration::from_secs(20),
        async || {
            let r = c.get("/later/x").send().await;
            if r.status == 200 {
                Ok(())
            } else {
                Err((r.status, r.text().to_owned()))
            }
        },
    )
    .await;
    assert_no_secret(&amb, &["wr0ng-s3cret-xyz", "right-one"], &[body, down_body]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_keeps_the_api_within_its_quota() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let check: Check = Arc::new(|s: &Seen| auth(s) == "Basic dXNlcjpwYXNz");
    let api = HttpsApi::start(&ca, check).await;
    let routes = format!(
        "  - name: q\n    match: {{prefix: /q/}}\n    upstream: https://127.0.0.1:{}\n    tls: {{ca_file: {}}}\n    local_rate_limit: {{requests: 5, per: 1s, max_wait: 500ms}}\n    credential: {{type: basic, username: {{value: user}}, password: {{value: pass}}}}\n",
        api.addr.port(),
        ca.ca_file.display()
    );
    let amb = Ambassador::start(dir, &routes, &[]).await;
    // A burst of 40 concurrent requests against 5/s: 5 at once, a few more after waiting
    // for their slot within max_wait, the rest refused.
    let c = Client::h2c(amb.listener).await;
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let mut c = c.share().expect("h2 client");
        tasks.push(tokio::spawn(async move { c.get("/q/x").send().await }));
    }
    let mut limited = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {}
            429 => {
                assert_eq!(r.sidecar_error(), Some("local_rate_limited"));
                assert!(r.header("retry-after").is_some());
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = 5 + (elapsed * 5.0).ceil() as usize;
    assert!(
        api.count() <= allowed,
        "{} reached the API in {elapsed:.2}s; the quota allows {allowed}",
        api.count()
    );
    assert!(
        limited >= 20 && api.count() >= 6,
        "limited {limited}, passed {}",
        api.count()
    );
    let metrics = amb.admin.get("/metrics").await.text().to_owned();
    let waits: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("ambassador_local_rate_limit_waits_total{listener=\"out\",route=\"q\"} ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no waits series in {metrics}"));
    assert!(waits >= 1.0, "requests within max_wait waited: {waits}");
}

/// AWS SigV4 checked the way AWS checks it, independently of the ambassador's signer: the
/// canonical request rebuilt from what arrived, so a header or path changed after signing
/// fails here.
fn sigv4_valid(s: &Seen, key_id: &str, secret: &str, region: &str, service: &str) -> bool {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let mac = |k: &[u8], d: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(k).unwrap();
        m.update(d);
        m.finalize().into_bytes().to_vec()
    };
    let header = |n: &str| s.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let amz_date = header("x-amz-date");
    if amz_date.len() != 16 {
        return false;
    }
    let date = &amz_date[..8];
    let (path, query) = s.path.split_once('?').unwrap_or((&s.path, ""));
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort();
    let creq = format!(
        "{}\n{path}\n{}\nhost:{}\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{}",
        s.method,
        pairs.join("&"),
        s.host,
        hex::encode(Sha256::digest(&s.body))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let k = mac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = mac(
        &mac(&mac(&k, region.as_bytes()), service.as_bytes()),
        b"aws4_request",
    );
    let want = format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders=host;x-amz-date, Signature={}",
        hex::encode(mac(&k, sts.as_bytes()))
    );
    auth(s) == want
}

fn hmac_valid(s: &Seen, secret: &str) -> bool {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let header = |n: &str| s.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let text = format!(
        "{}\n{}\n{}\n{}",
        s.method,
        s.path,
        header("x-timestamp"),
        hex::encode(Sha256::digest(&s.body))
    );
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(text.as_bytes());
    !header("x-timestamp").is_empty()
        && header("x-signature") == hex::encode(m.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_key_sigv4_and_hmac_reach_the_api_valid() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let check: Check = Arc::new(|s: &Seen| {
        if s.path.starts_with("/search") {
            s.path.ends_with("&api_key=qk%2Fsecret%20x") && !s.path.contains("mine")
        } else if s.path.starts_with("/prod/") {
            sigv4_valid(s, "AKIDTEST", "aws/secret+key", "eu-west-1", "execute-api")
        } else {
            hmac_valid(s, "hmac-key-31337")
        }
    });
    let api = HttpsApi::start(&ca, check).await;
    let base = format!("https://127.0.0.1:{}", api.addr.port());
    let tls = format!("{{ca_file: {}}}", ca.ca_file.display());
    let routes = format!(
        "  - {{name: q, match: {{prefix: /q/}}, upstream: \"{base}/search\", tls: {tls}, credential: {{type: query, param: api_key, secret: {{value: \"qk/secret x\"}}}}}}\n  - {{name: aws, match: {{prefix: /aws/}}, upstream: \"{base}/prod\", tls: {tls}, retry_policy: {{num_retries: 1, retry_on: [retriable-status-codes], retriable_status_codes: [401]}}, credential: {{type: aws_sigv4, service: execute-api, region: eu-west-1, access_key_id: {{value: AKIDTEST}}, secret_access_key: {{env: AWS_SECRET_FOR_TEST}}}}}}\n  - {{name: hooks, match: {{prefix: /hooks/}}, upstream: \"{base}/hooks\", tls: {tls}, credential: {{type: hmac, secret: {{value: hmac-key-31337}}}}}}\n"
    );
    let amb = Ambassador::start(dir, &routes, &[("AWS_SECRET_FOR_TEST", "aws/secret+key")]).await;
    let mut c = Client::http1(amb.listener).await;

    let r = c.get("/q/items?api_key=mine&x=1").send().await;
    assert_eq!(r.status, 200, "query: {:?}", api.last().path);
    assert_eq!(api.last().path, "/search/items?x=1&api_key=qk%2Fsecret%20x");

    for (method, path) in [("GET", "/aws/items?b=2&a=1"), ("POST", "/aws/items")] {
        let r = c
            .request(method.parse().unwrap(), path)
            .header("authorization", "client-own")
            .body(e2e_tests::body::full("{\"n\":1}"))
            .send()
            .await;
        assert_eq!(r.status, 200, "sigv4 {method}: {:?}", api.last().headers);
    }

    let r = c
        .post("/hooks/in?a=1")
        .body(e2e_tests::body::full("payload"))
        .send()
        .await;
    assert_eq!(r.status, 200, "hmac: {:?}", api.last().headers);
    assert_eq!(api.refused.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_no_secret(
        &amb,
        &["qk/secret x", "aws/secret+key", "hmac-key-31337"],
        &[],
    )
    .await;
}

#[test]
fn check_config_reports_every_problem_with_its_path_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listeners: [{name: out, address: \"0.0.0.0:9000\"}]\nroutes:\n  - {name: a, match: {prefix: /a/}, upstream: \"http://api.test\", credential: {type: header, secret: {env: AMBASSADOR_E2E_UNSET}}}\n  - {name: b, match: {prefix: /b/}, upstream: \"https://api.test\", local_rate_limit: {requests: 0}, retries: 3}\n",
    )
    .unwrap();
    let out = std::process::Command::new(e2e_tests::ambassador::binary())
        .arg("check-config")
        .arg(&bad)
        .env_remove("AMBASSADOR_E2E_UNSET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for want in [
        "listeners[0].address: 0.0.0.0:9000 is not a loopback address",
        "routes[0].upstream: plain http",
        "routes[1].retries: unknown field",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "listeners: [{name: out, address: \"127.0.0.1:9000\"}]\nroutes:\n  - {name: a, match: {prefix: /a/}, upstream: \"https://api.test\", credential: {type: header, secret: {env: AMBASSADOR_E2E_SET}}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(e2e_tests::ambassador::binary())
        .arg("check-config")
        .arg(&good)
        .env("AMBASSADOR_E2E_SET", "x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(e2e_tests::ambassador::binary())
        .arg("check-config")
        .arg(&good)
        .env_remove("AMBASSADOR_E2E_SET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr.contains(
            "routes[0].credential.secret: environment variable AMBASSADOR_E2E_SET is not set"
        ),
        "{stderr}"
    );
}

/// `ambassador wait-ready ADDR --timeout T [-- COMMAND]`, run to its end.
fn wait_ready(admin: &str, timeout: &str, command: &[&str]) -> std::process::Output {
    let binary = e2e_tests::ambassador::binary();
    e2e_tests::process::wait_ready_command(&binary, admin, timeout, command)
        .output()
        .expect("run ambassador wait-ready")
}

/// The postStart hook `inject --placement container` gives the ambassador: it holds the
/// app's container back with exit 1 and the reason while the ambassador does not answer, and
/// lets it start (exit 0, or the command's own status) once `/ready` says 200.
#[tokio::test]
async fn wait_ready_holds_back_until_the_ambassador_is_ready() {
    let refusing = e2e_tests::ports::refusing();
    let out = wait_ready(&refusing.addr().to_string(), "1s", &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "ambassador wait-ready: the admin API at {} was not ready within 1s",
            refusing.addr()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("[not_ready]"), "{stderr}");

    let routes = "  - {name: h, match: {prefix: /h/}, upstream: \"https://127.0.0.1:9\", credential: {type: header, header: x-api-key, secret: {value: k1}}}\n";
    let amb = Ambassador::start(tempfile::tempdir().unwrap(), routes, &[]).await;
    let admin = amb.admin.addr().to_string();
    let out = wait_ready(&admin, "5s", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = wait_ready(&admin, "5s", &["sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "the command's status: {out:?}");
}
