//! Transparent interception, end to end: pods as network namespaces, the nat rules installed
//! by `sidecar iptables`, sidecars running as their own UID, and apps that know nothing of
//! them. Run for iptables-nft and iptables-legacy alike.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::metrics::Metrics;
use e2e_tests::netns::{self, Netns, Network, NsProcess, PROXY_UID, Pod, must, shared_dir};
use e2e_tests::process::binary;
use serde_json::Value;

const ADMIN: u16 = 15000;

/// The apps of the pods: an HTTP server that answers with what it received, and a
/// server-speaks-first TCP server (greets, then echoes) with its client.
const APP_PY: &str = r#"
import json, socket, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

mode = sys.argv[1]
if mode == "http":
    name, port = sys.argv[2], int(sys.argv[3])
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = json.dumps({"app": name, "path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    ThreadingHTTPServer(("0.0.0.0", port), H).serve_forever()
elif mode == "greet":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[2])))
    s.listen(16)
    def serve(c):
        c.sendall(b"220 greetings\r\n")
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(b"echo:" + d)
        c.close()
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
elif mode == "greet-client":
    t0 = time.monotonic()
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10)
    c.settimeout(10)
    g = c.recv(4096)
    t1 = time.monotonic()
    c.sendall(b"hello\r\n")
    e = c.recv(4096)
    print(json.dumps({"greeting": g.decode(), "echo": e.decode(),
                      "greeting_ms": int((t1 - t0) * 1000)}))
"#;

/// Detection waits this long for a silent client: long enough that a skipped port is told
/// apart from a timed-out one by the time its greeting takes.
const DETECT_MS: u64 = 1500;

fn sidecar_config(clusters: &str) -> String {
    sidecar_config_with_routes(clusters, "")
}

/// `routes` go on the outbound listener (YAML lines indented for it).
fn sidecar_config_with_routes(clusters: &str, routes: &str) -> String {
    format!(
        r#"admin:
  address: 127.0.0.1:{ADMIN}
listeners:
  - name: outbound
    address: 0.0.0.0:15001
    intercept: outbound
    protocol_detection_timeout: {DETECT_MS}ms
{routes}  - name: inbound
    address: 0.0.0.0:15006
    intercept: inbound
    protocol_detection_timeout: {DETECT_MS}ms
clusters:
{clusters}"#
    )
}

fn sidecar_bin() -> String {
    binary().to_string_lossy().into_owned()
}

fn require(tool: &str) {
    must(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
}

/// Install the rules in `pod` and start its sidecar as `PROXY_UID`.
async fn start_sidecar(
    pod: &Pod,
    dir: &Path,
    name: &str,
    flavour: &str,
    config: &str,
) -> NsProcess {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).unwrap();
    let bin = sidecar_bin();
    pod.ns.run(
        &bin,
        &[
            "iptables",
            "--iptables",
            flavour,
            "--proxy-uid",
            &PROXY_UID.to_string(),
        ],
    );
    let mut p = NsProcess::spawn(
        &pod.ns,
        dir,
        name,
        Some(PROXY_UID),
        &bin,
        &["--config", &path.to_string_lossy()],
    );
    netns::wait_http_ok(
        pod,
        &format!("http://127.0.0.1:{ADMIN}/ready"),
        Duration::from_secs(15),
    )
    .await;
    p.assert_running();
    p
}

fn curl_json(pod: &Pod, url: &str) -> Value {
    let out = pod
        .ns
        .run("curl", &["-sS", "--fail", "--max-time", "10", url]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{url}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `python3 SCRIPT ARGS...` in `pod`'s namespace, its output under `dir` as `what`.
fn app(pod: &Pod, dir: &Path, script: &str, what: &str, args: &[&str]) -> NsProcess {
    let argv: Vec<&str> = std::iter::once(script)
        .chain(args.iter().copied())
        .collect();
    NsProcess::spawn(&pod.ns, dir, what, None, "python3", &argv)
}

fn greet(pod: &Pod, script: &Path, host: &str, port: u16) -> Value {
    let out = pod.ns.run(
        "python3",
        &[
            &script.to_string_lossy(),
            "greet-client",
            host,
            &port.to_string(),
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn detections(m: &Metrics, listener: &str, protocol: &str) -> f64 {
    m.sum(
        "sidecar_protocol_detections_total",
        &[("listener", listener), ("protocol", protocol)],
    )
}

fn connections(m: &Metrics, cluster: &str) -> f64 {
    m.sum(
        "sidecar_upstream_connections_total",
        &[("cluster", cluster)],
    )
}

/// Pod A calls pod B by address and port: plain HTTP, Redis, server-speaks-first on a
/// skipped port and on a detected one, and a server in pod C that no config knows.
async fn two_pods(flavour: &str) {
    for tool in [
        "python3",
        "curl",
        "redis-server",
        "redis-cli",
        "setpriv",
        "ss",
    ] {
        require(tool);
    }
    require(&format!("iptables-{flavour}"));
    let net = Network::new(&["a", "b", "c"]);
    let (a, b, c) = (net.pod(0), net.pod(1), net.pod(2));
    let dir = shared_dir();
    let script = dir.path().join("app.py");
    std::fs::write(&script, APP_PY).unwrap();
    let py = script.to_string_lossy().into_owned();

    let _app_b = app(b, dir.path(), &py, "app-b", &["http", "app-b", "8080"]);
    let _app_c = app(c, dir.path(), &py, "app-c", &["http", "app-c", "9090"]);
    let _smtp_b = app(b, dir.path(), &py, "greet-25", &["greet", "25"]);
    let _slow_b = app(b, dir.path(), &py, "greet-2526", &["greet", "2526"]);
    let _redis_b = NsProcess::spawn(
        &b.ns,
        dir.path(),
        "redis-b",
        None,
        "redis-server",
        &[
            "--port",
            "7379",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    for port in [8080, 25, 2526, 7379] {
        netns::wait_listening(b, port, Duration::from_secs(10)).await;
    }
    netns::wait_listening(c, 9090, Duration::from_secs(10)).await;

    let b_addr = &b.addr;
    let _sidecar_a = start_sidecar(
        a,
        dir.path(),
        "sidecar-a",
        flavour,
        &sidecar_config_with_routes(
            &format!(
                "  - name: svc-b\n    endpoints: [\"{b_addr}:8080\"]\n  - name: redis-b\n    endpoints: [\"{b_addr}:7379\"]\n"
            ),
            "    routes:\n      - name: by-name\n        match: { hosts: [\"svc-b.mesh\"] }\n        cluster: svc-b\n",
        ),
    )
    .await;
    let _sidecar_b = start_sidecar(
        b,
        dir.path(),
        "sidecar-b",
        flavour,
        &sidecar_config("  - name: app\n    endpoints: [\"127.0.0.1:8080\"]\n"),
    )
    .await;

    // Plain HTTP by address: through A's outbound (cluster svc-b) and B's inbound (app).
    for i in 0..5 {
        let r = curl_json(a, &format!("http://{b_addr}:8080/hello/{i}"));
        assert_eq!(r["app"], "app-b");
        assert_eq!(r["path"], format!("/hello/{i}"));
        // Only a proxy that parsed the request adds these; the app never set them.
        assert!(r["headers"]["x-request-id"].is_string(), "{r}");
        // One entry per sidecar: A's saw the app, B's saw A's sidecar (same pod address).
        let xff = format!("{0}, {0}", a.addr);
        assert_eq!(r["headers"]["x-forwarded-for"], xff.as_str(), "{r}");
    }
    let ma = netns::metrics(a, ADMIN);
    let mb = netns::metrics(b, ADMIN);
    let requests = |m: &Metrics, listener: &str, route: &str| {
        m.sum(
            "sidecar_requests_total",
            &[("listener", listener), ("route", route), ("cluster", route)],
        )
    };
    assert_eq!(requests(&ma, "outbound", "svc-b"), 5.0, "{}", ma.text);
    assert_eq!(requests(&mb, "inbound", "app"), 5.0, "{}", mb.text);
    assert_eq!(detections(&ma, "outbound", "http1"), 5.0);
    // A's sidecar keeps its connection to B alive: B detects once per connection.
    let b_http = detections(&mb, "inbound", "http1");
    assert!((1.0..=5.0).contains(&b_http), "{}", mb.text);

    // By service name: the app dials some address (here pod C's), but the Host names a
    // service a route knows, so the request goes to that service's cluster (pod B).
    let out = a.ns.run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--max-time",
            "10",
            "-H",
            "Host: svc-b.mesh",
            &format!("http://{}:9090/by-name", c.addr),
        ],
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["app"], "app-b", "{r}");
    let ma = netns::metrics(a, ADMIN);
    assert_eq!(
        ma.sum(
            "sidecar_requests_total",
            &[
                ("listener", "outbound"),
                ("route", "by-name"),
                ("cluster", "svc-b")
            ]
        ),
        1.0,
        "{}",
        ma.text
    );
    assert_eq!(detections(&ma, "outbound", "http1"), 6.0);

    // Opaque TCP across pods: Redis, detected as neither TLS nor HTTP.
    let set = a.ns.run(
        "redis-cli",
        &["-h", b_addr, "-p", "7379", "SET", "mesh", "works"],
    );
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
    let get =
        a.ns.run("redis-cli", &["-h", b_addr, "-p", "7379", "GET", "mesh"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "works");
    let ma = netns::metrics(a, ADMIN);
    let mb = netns::metrics(b, ADMIN);
    assert_eq!(connections(&ma, "redis-b"), 2.0, "{}", ma.text);
    assert_eq!(detections(&ma, "outbound", "opaque"), 2.0);
    assert_eq!(connections(&mb, "inbound_passthrough"), 2.0, "{}", mb.text);
    assert_eq!(detections(&mb, "inbound", "opaque"), 2.0);

    // An unknown destination (pod C has no sidecar and no config names it) passes through
    // as it was: the app sees no header a proxy would add.
    let r = curl_json(a, &format!("http://{}:9090/anyone", c.addr));
    assert_eq!(r["app"], "app-c");
    assert!(r["headers"].get("x-request-id").is_none(), "{r}");
    let ma = netns::metrics(a, ADMIN);
    assert_eq!(connections(&ma, "passthrough"), 1.0, "{}", ma.text);

    // Server speaks first on a skipped port (25): the greeting comes at once.
    let g = greet(a, &script, b_addr, 25);
    assert_eq!(g["greeting"], "220 greetings\r\n");
    assert_eq!(g["echo"], "echo:hello\r\n");
    let fast = g["greeting_ms"].as_u64().unwrap();
    assert!(
        fast < DETECT_MS,
        "a skipped port waited {fast} ms for its greeting"
    );
    // ... and on a port that is detected: it does not hang, it waits out the detection
    // timeout (once per sidecar) and goes on as opaque TCP.
    let g = greet(a, &script, b_addr, 2526);
    assert_eq!(g["greeting"], "220 greetings\r\n");
    assert_eq!(g["echo"], "echo:hello\r\n");
    let slow = g["greeting_ms"].as_u64().unwrap();
    assert!(
        (DETECT_MS..DETECT_MS * 4).contains(&slow),
        "greeting after {slow} ms; expected after the detection timeout"
    );
    let ma = netns::metrics(a, ADMIN);
    let mb = netns::metrics(b, ADMIN);
    assert_eq!(detections(&ma, "outbound", "skipped"), 1.0);
    assert_eq!(detections(&mb, "inbound", "skipped"), 1.0);
    assert_eq!(detections(&ma, "outbound", "timeout"), 1.0);
    assert_eq!(detections(&mb, "inbound", "timeout"), 1.0);
    // Both went straight through, to B's address and then to B's app on loopback.
    assert_eq!(connections(&ma, "passthrough"), 3.0, "{}", ma.text);
    assert_eq!(connections(&mb, "inbound_passthrough"), 4.0, "{}", mb.text);
}

#[tokio::test]
async fn two_pods_through_both_sidecars_nft() {
    two_pods("nft").await;
}

#[tokio::test]
async fn two_pods_through_both_sidecars_legacy() {
    two_pods("legacy").await;
}

/// The lines of ours in `iptables-save -t nat`.
fn saved(ns: &Netns, flavour: &str) -> Vec<String> {
    let out = ns.run(&format!("iptables-{flavour}-save"), &["-t", "nat"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("SIDECAR_"))
        .map(str::to_owned)
        .collect()
}

fn rules_install_twice_and_clean_up(flavour: &str) {
    netns::require_root_and_ip();
    require(&format!("iptables-{flavour}"));
    let ns = Netns::new("rules");
    let bin = sidecar_bin();
    let flags = [
        "iptables",
        "--iptables",
        flavour,
        "--proxy-uid",
        "2102",
        "--inbound-exclude-ports",
        "22,4191",
        "--outbound-exclude-ports",
        "5432",
        "--outbound-exclude-cidrs",
        "198.19.0.0/16,169.254.169.254",
        "--inbound-exclude-cidrs",
        "198.18.9.0/24",
    ];
    let dry = ns.run(&bin, &[&flags[..], &["--dry-run"]].concat());
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    let expected: Vec<String> = dry
        .lines()
        .filter(|l| l.contains("SIDECAR_"))
        .map(str::to_owned)
        .collect();
    assert!(dry.contains(&format!("with iptables-{flavour}")), "{dry}");
    assert!(expected.contains(&"-A SIDECAR_OUTPUT -m owner --uid-owner 2102 -j RETURN".to_owned()));
    assert!(expected.contains(&"-A SIDECAR_OUTPUT -d 198.19.0.0/16 -j RETURN".to_owned()));
    assert!(
        expected.contains(&"-A SIDECAR_INBOUND -p tcp -m tcp --dport 4191 -j RETURN".to_owned())
    );
    assert_eq!(
        saved(&ns, flavour),
        Vec::<String>::new(),
        "--dry-run changed nothing"
    );

    ns.run(&bin, &flags);
    assert_eq!(
        saved(&ns, flavour),
        expected,
        "installed rules are what --dry-run printed"
    );
    ns.run(&bin, &flags);
    assert_eq!(
        saved(&ns, flavour),
        expected,
        "a second run leaves the same rules"
    );

    // Someone else's rule in OUTPUT survives our clean-up.
    ns.run(
        &format!("iptables-{flavour}"),
        &["-t", "nat", "-A", "OUTPUT", "-p", "udp", "-j", "RETURN"],
    );
    ns.run(&bin, &[&flags[..], &["--cleanup"]].concat());
    assert_eq!(saved(&ns, flavour), Vec::<String>::new());
    let rest = ns.run(&format!("iptables-{flavour}-save"), &["-t", "nat"]);
    assert!(String::from_utf8_lossy(&rest.stdout).contains("-A OUTPUT -p udp -j RETURN"));
    // Cleaning up twice is fine.
    ns.run(&bin, &[&flags[..], &["--cleanup"]].concat());
}

#[test]
fn a_malformed_cidr_is_refused_naming_its_flag() {
    // Parsed before anything runs: no namespace or iptables needed, nothing changed.
    let out = Command::new(sidecar_bin())
        .args([
            "iptables",
            "--dry-run",
            "--outbound-exclude-cidrs",
            "198.19.0.0/16,10.0.0.0/33",
        ])
        .output()
        .expect("run sidecar iptables");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value '198.19.0.0/16,10.0.0.0/33' for '--outbound-exclude-cidrs")
            || stderr.contains("invalid value '10.0.0.0/33' for '--outbound-exclude-cidrs"),
        "{stderr}"
    );
    assert!(stderr.contains("invalid CIDR \"10.0.0.0/33\""), "{stderr}");
    assert!(out.stdout.is_empty(), "no rules printed");
}

#[test]
fn rules_install_twice_and_clean_up_nft() {
    rules_install_twice_and_clean_up("nft");
}

#[test]
fn rules_install_twice_and_clean_up_legacy() {
    rules_install_twice_and_clean_up("legacy");
}

/// `--iptables auto` picks the flavour that already holds the node's rules.
#[test]
fn auto_detection_follows_the_flavour_with_rules() {
    netns::require_root_and_ip();
    let bin = sidecar_bin();
    for (flavour, other) in [("legacy", "nft"), ("nft", "legacy")] {
        require(&format!("iptables-{flavour}"));
        let ns = Netns::new("detect");
        ns.run(
            &format!("iptables-{flavour}"),
            &["-A", "INPUT", "-p", "udp", "--dport", "9", "-j", "DROP"],
        );
        let out = ns.run(&bin, &["iptables", "--dry-run"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("with iptables-{flavour}")), "{text}");
        assert!(!text.contains(&format!("with iptables-{other}")), "{text}");
        // Installing with auto puts the rules there, not in the other flavour.
        ns.run(&bin, &["iptables"]);
        assert!(!saved(&ns, flavour).is_empty());
        assert!(saved(&ns, other).is_empty());
    }
}

/// A connection made straight to an intercepting listener (not redirected) is closed,
/// not forwarded to itself in a loop.
#[tokio::test]
async fn direct_connection_to_an_intercepting_listener_is_refused() {
    let net = Network::new(&["a"]);
    let a = net.pod(0);
    let dir = shared_dir();
    let _sidecar =
        start_sidecar(a, dir.path(), "sidecar-a", "nft", &sidecar_config("  []\n")).await;
    let t = Instant::now();
    let out = a.ns.output(
        "curl",
        &["-sS", "--max-time", "5", "http://127.0.0.1:15001/"],
    );
    assert!(!out.status.success());
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the connection was held"
    );
    let m = netns::metrics(a, ADMIN);
    assert_eq!(
        m.sum(
            "sidecar_local_replies_total",
            &[("listener", "outbound"), ("reason", "not_intercepted")]
        ),
        1.0,
        "{}",
        m.text
    );
}

/// `sidecar certs issue` for `id` into `dir/name`, readable by the sidecar's UID.
fn issue(dir: &Path, name: &str, id: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    must(Command::new(sidecar_bin()).args([
        "certs",
        "issue",
        "--ca",
        &dir.join("ca").to_string_lossy(),
        "--spiffe-id",
        id,
        "--out",
        &out.to_string_lossy(),
    ]));
    must(
        Command::new("chown")
            .args(["-R", &format!("{PROXY_UID}:{PROXY_UID}")])
            .arg(&out),
    );
    out
}

fn identity_yaml(dir: &Path) -> String {
    let d = dir.to_string_lossy();
    format!(
        "identity:\n  cert_file: {d}/cert.pem\n  key_file: {d}/key.pem\n  bundle_file: {d}/bundle.pem\n"
    )
}

/// The mesh: pod A's app calls pod B's app by address in plain HTTP; the sidecars
/// between them speak mTLS. B's inbound port is strict and admits namespace `shop`; pod C
/// has no sidecar, pod D's sidecar has an identity from another namespace.
#[tokio::test]
async fn mesh_mtls_between_intercepted_pods() {
    for tool in [
        "python3",
        "curl",
        "redis-server",
        "redis-cli",
        "setpriv",
        "ss",
        "tcpdump",
    ] {
        require(tool);
    }
    require("iptables-nft");
    let net = Network::new(&["a", "b", "c", "d"]);
    let (a, b, c, d) = (net.pod(0), net.pod(1), net.pod(2), net.pod(3));
    let dir = shared_dir();
    let script = dir.path().join("app.py");
    std::fs::write(&script, APP_PY).unwrap();
    let py = script.to_string_lossy().into_owned();
    let _app_b = app(b, dir.path(), &py, "app-b", &["http", "app-b", "8080"]);
    let _redis_b = NsProcess::spawn(
        &b.ns,
        dir.path(),
        "redis-b",
        None,
        "redis-server",
        &[
            "--port",
            "7379",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    for port in [8080, 7379] {
        netns::wait_listening(b, port, Duration::from_secs(10)).await;
    }

    must(Command::new(sidecar_bin()).args([
        "certs",
        "ca",
        "--out",
        &dir.path().join("ca").to_string_lossy(),
        "--trust-domain",
        "mesh.test",
    ]));
    let id_a = issue(dir.path(), "id-a", "spiffe://mesh.test/ns/shop/sa/orders");
    let id_b = issue(dir.path(), "id-b", "spiffe://mesh.test/ns/shop/sa/payments");
    let id_d = issue(dir.path(), "id-d", "spiffe://mesh.test/ns/other/sa/rogue");

    let b_addr = &b.addr;
    let client = |id: &Path| {
        format!(
            "{}{}",
            identity_yaml(id),
            sidecar_config(&format!(
                "  - name: svc-b\n    endpoints: [\"{b_addr}:8080\"]\n    mtls: {{ identity: spiffe://mesh.test/ns/shop/sa/payments }}\n  - name: redis-b\n    endpoints: [\"{b_addr}:7379\"]\n    mtls: {{ identity: spiffe://mesh.test/ns/shop/sa/payments }}\n"
            ))
        )
    };
    let server = |mode: &str, allow: &str| {
        let base = sidecar_config("  - name: app\n    endpoints: [\"127.0.0.1:8080\"]\n");
        let inbound =
            format!("    intercept: inbound\n    mtls: {{ mode: {mode}, allow: [{allow}] }}\n");
        format!(
            "{}{}",
            identity_yaml(&id_b),
            base.replacen("    intercept: inbound\n", &inbound, 1)
        )
    };
    let _sidecar_a = start_sidecar(a, dir.path(), "sidecar-a", "nft", &client(&id_a)).await;
    let _sidecar_d = start_sidecar(d, dir.path(), "sidecar-d", "nft", &client(&id_d)).await;
    let server_config = dir.path().join("sidecar-b.yaml");
    let _sidecar_b = start_sidecar(
        b,
        dir.path(),
        "sidecar-b",
        "nft",
        &server("strict", "\"spiffe://mesh.test/ns/shop/*\""),
    )
    .await;

    // Watch the wire between the pods while A calls B.
    let pcap = dir.path().join("wire.pcap");
    let tcpdump = NsProcess::spawn(
        &b.ns,
        dir.path(),
        "tcpdump",
        None,
        "tcpdump",
        &[
            "-U",
            "-i",
            "eth0",
            "-s",
            "0",
            "-w",
            &pcap.to_string_lossy(),
            "tcp port 8080",
        ],
    );
    let started = Instant::now();
    while !std::fs::read_to_string(dir.path().join("tcpdump.stderr"))
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "tcpdump did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..3 {
        let r = curl_json(a, &format!("http://{b_addr}:8080/secret-path-{i}"));
        assert_eq!(r["app"], "app-b");
        // B's app learns who called: the client sidecar's SPIFFE ID, from B's sidecar.
        let xfcc = r["headers"]["x-forwarded-client-cert"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            xfcc,
            "By=spiffe://mesh.test/ns/shop/sa/payments;URI=spiffe://mesh.test/ns/shop/sa/orders",
            "{r}"
        );
    }
    let wire_deadline = Instant::now() + Duration::from_secs(5);
    let wire = loop {
        let bytes = std::fs::read(&pcap).unwrap_or_default();
        if bytes.windows(2).any(|w| w == [0x16, 0x03]) || Instant::now() > wire_deadline {
            break bytes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(tcpdump);
    assert!(
        wire.windows(2).any(|w| w == [0x16, 0x03]),
        "no TLS handshake record on the wire ({} bytes captured)",
        wire.len()
    );
    assert!(
        !wire
            .windows(b"secret-path".len())
            .any(|w| w == b"secret-path"),
        "the request path crossed the wire in clear text"
    );
    let mb = netns::metrics(b, ADMIN);
    assert!(detections(&mb, "inbound", "tls") >= 1.0, "{}", mb.text);
    assert_eq!(
        mb.sum(
            "sidecar_requests_total",
            &[("listener", "inbound"), ("route", "app")]
        ),
        3.0,
        "{}",
        mb.text
    );

    // An identity from another namespace is refused by B, with the reason.
    let out = d.ns.output(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{b_addr}:8080/x"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let mb = netns::metrics(b, ADMIN);
    assert_eq!(
        mb.sum(
            "sidecar_local_replies_total",
            &[("reason", "unauthorized_identity")]
        ),
        1.0,
        "{}",
        mb.text
    );

    // An app with no sidecar talks plaintext: refused by the strict port...
    let out = c.ns.output(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            &format!("http://{b_addr}:8080/plain"),
        ],
    );
    assert!(
        !out.status.success(),
        "strict mTLS served a plaintext client"
    );
    // ... and served once the port is permissive (a reload, no restart).
    std::fs::write(&server_config, server("permissive", "")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let out = c.ns.output(
            "curl",
            &[
                "-sS",
                "--fail",
                "--max-time",
                "5",
                &format!("http://{b_addr}:8080/plain"),
            ],
        );
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "permissive mode never admitted the plaintext client"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r["app"], "app-b");
    assert!(r["headers"].get("x-forwarded-client-cert").is_none(), "{r}");

    // Opaque TCP through the mesh: Redis, encrypted between the sidecars.
    let set = a.ns.run(
        "redis-cli",
        &["-h", b_addr, "-p", "7379", "SET", "mesh", "mtls"],
    );
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
    let get =
        a.ns.run("redis-cli", &["-h", b_addr, "-p", "7379", "GET", "mesh"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "mtls");
    let ma = netns::metrics(a, ADMIN);
    assert!(
        ma.one(
            "sidecar_tls_handshakes_total",
            &[("direction", "outbound"), ("name", "redis-b")]
        ) >= 1.0,
        "{}",
        ma.text
    );

    // Certificate rotation under load: B gets a new certificate while A keeps calling;
    // no request fails.
    let mut failed = 0;
    for i in 0..60 {
        if i == 20 {
            issue(dir.path(), "id-b", "spiffe://mesh.test/ns/shop/sa/payments");
        }
        let out = a.ns.output(
            "curl",
            &[
                "-sS",
                "--fail",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                &format!("http://{b_addr}:8080/load/{i}"),
            ],
        );
        if !out.status.success() {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "requests failed during the certificate rotation");
    let mb = netns::metrics(b, ADMIN);
    assert!(
        mb.sum(
            "sidecar_tls_certificate_reloads_total",
            &[("result", "success")]
        ) >= 1.0,
        "{}",
        mb.text
    );
}

/// An admin API bound beyond loopback (as injected ambassadors bind theirs, for the
/// kubelet's probes) answers other pods' probes and scrapes; everything else, draining and
/// stopping first of all, only its own pod may ask.
#[tokio::test]
async fn beyond_loopback_the_admin_serves_probes_and_metrics_only() {
    let net = Network::new(&["a", "b"]);
    let (a, b) = (net.pod(0), net.pod(1));
    let dir = shared_dir();
    let path = dir.path().join("open-admin.yaml");
    std::fs::write(
        &path,
        format!("admin:\n  address: 0.0.0.0:{ADMIN}\nlisteners: []\nclusters: []\n"),
    )
    .unwrap();
    let mut sidecar = NsProcess::spawn(
        &a.ns,
        dir.path(),
        "open-admin",
        None,
        &sidecar_bin(),
        &["--config", &path.to_string_lossy()],
    );
    netns::wait_http_ok(
        a,
        &format!("http://127.0.0.1:{ADMIN}/ready"),
        Duration::from_secs(15),
    )
    .await;
    let status = |pod: &Pod, method: &str, url: &str| {
        let out = pod.ns.output(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "-X",
                method,
                url,
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let remote = format!("http://{}:{ADMIN}", a.addr);
    for path in ["/ready", "/live", "/metrics"] {
        assert_eq!(
            status(b, "GET", &format!("{remote}{path}")),
            "200",
            "{path}"
        );
    }
    for path in [
        "/config_dump",
        "/clusters",
        "/listeners",
        "/tap",
        "/debug/failures",
    ] {
        assert_eq!(
            status(b, "GET", &format!("{remote}{path}")),
            "403",
            "{path}"
        );
    }
    for path in ["/shutdown", "/quitquitquit", "/drain"] {
        assert_eq!(
            status(b, "POST", &format!("{remote}{path}")),
            "403",
            "{path}"
        );
    }
    let local = format!("http://127.0.0.1:{ADMIN}");
    assert_eq!(status(a, "GET", &format!("{local}/config_dump")), "200");
    sidecar.assert_running();
    assert_eq!(
        status(b, "GET", &format!("{remote}/ready")),
        "200",
        "not draining"
    );

    assert_eq!(status(a, "POST", &format!("{local}/drain")), "200");
    assert_eq!(status(b, "GET", &format!("{remote}/ready")), "503");
}
