//! The configs users copy from stay valid as the programs grow: every config shipped in
//! samples/ passes its own program's `check-config` (the release binaries, as the demo runs
//! them), the demo's configs agree with each other and with demo.sh on addresses and
//! identities, and the README's full example still parses.

use std::path::{Path, PathBuf};
use std::process::Command;

use proxy_core::config::Config;

const DEMO_YAML: &str = include_str!("../sidecar-demo.yaml");
const ORDER_SIDECAR: &str = include_str!("../order-sidecar.yaml");
const PAYMENT_SIDECAR: &str = include_str!("../payment-sidecar.yaml");
const AMBASSADOR: &str = include_str!("../ambassador.yaml");
const ADAPTER: &str = include_str!("../adapter-legacy.yaml");
const DEMO_SH: &str = include_str!("../demo.sh");
const README: &str = include_str!("../../README.md");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("samples sits in the workspace")
        .to_owned()
}

/// The release build of `name`: beside this test binary's build (`target/<host tuple>/debug/
/// deps/…` gives `target/<host tuple>/release`), wherever `.cargo/config.toml` puts it.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .ancestors()
        .nth(3)
        .expect("test binaries sit in <target dir>/<profile>/deps")
        .join("release")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --bins` first (tests/run.sh does)",
        path.display()
    );
    path
}

/// A directory laid out like the repository root after the demo made its certificates
/// (`target/demo/mesh/...`, `target/demo/api-tls/...`), since the configs name those files
/// relative to where the demo runs. Made with the same commands as demo.sh.
fn demo_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let run = |bin: &str, args: &[&str]| {
        let out = Command::new(binary(bin))
            .args(args)
            .current_dir(root.path())
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{bin} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "sidecar",
        &[
            "certs",
            "ca",
            "--out",
            "target/demo/mesh/ca",
            "--trust-domain",
            "demo.local",
        ],
    );
    for sa in ["order", "payment"] {
        let id = format!("spiffe://demo.local/ns/shop/sa/{sa}");
        let out = format!("target/demo/mesh/{sa}");
        run(
            "sidecar",
            &[
                "certs",
                "issue",
                "--ca",
                "target/demo/mesh/ca",
                "--spiffe-id",
                &id,
                "--out",
                &out,
            ],
        );
    }
    run("sample", &["api-certs", "--out", "target/demo/api-tls"]);
    root
}

/// `PROGRAM check-config samples/FILE` from `root`; returns its output.
fn check_config(program: &str, file: &str, root: &Path) -> String {
    let out = Command::new(binary(program))
        .arg("check-config")
        .arg(workspace().join("samples").join(file))
        .current_dir(root)
        .env("WEATHER_CLIENT_SECRET", "test-secret")
        .output()
        .expect("run check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} check-config samples/{file} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn every_shipped_config_passes_its_programs_check_config() {
    let root = demo_root();
    for (program, file) in [
        ("sidecar", "sidecar-demo.yaml"),
        ("sidecar", "order-sidecar.yaml"),
        ("sidecar", "payment-sidecar.yaml"),
        ("ambassador", "ambassador.yaml"),
        ("adapter", "adapter-legacy.yaml"),
    ] {
        let text = check_config(program, file, root.path());
        assert!(text.contains("ok"), "{program} {file}: {text}");
        assert!(
            DEMO_SH.contains(&format!("samples/{file}")) || file == "sidecar-demo.yaml",
            "demo.sh runs samples/{file}"
        );
    }
}

/// Without the demo's certificates the sidecar configs do not load, and check-config says
/// which file is missing: the check above really looks at the files.
#[test]
fn check_config_names_the_missing_certificate() {
    let root = tempfile::tempdir().expect("temp dir");
    let out = Command::new(binary("sidecar"))
        .arg("check-config")
        .arg(workspace().join("samples/payment-sidecar.yaml"))
        .current_dir(root.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("identity.cert_file: target/demo/mesh/payment/cert.pem"),
        "{err}"
    );
}

#[test]
fn the_sidecars_chain_order_to_both_payment_replicas() {
    // The configs name the demo's certificate files relative to the repository root; loading
    // reads them, so point them into a directory holding such files.
    let root = demo_root();
    let load = |yaml: &str, name: &str| {
        let yaml = yaml.replace(
            "target/demo/",
            &format!("{}/target/demo/", root.path().display()),
        );
        Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{name} does not load:\n{e}"))
    };
    let order = load(ORDER_SIDECAR, "order-sidecar.yaml");
    let payment = load(PAYMENT_SIDECAR, "payment-sidecar.yaml");
    let outbound = &order.listeners[0];
    assert_eq!(outbound.address, "127.0.0.1:18101");
    assert!(DEMO_SH.contains("--sidecar http://$H:18101 --payment-host payment"));
    assert!(
        outbound.routes[0]
            .matcher
            .hosts
            .iter()
            .any(|h| h == "payment"),
        "the outbound route matches the name the order service calls"
    );
    let to_payment = order.cluster("payment").expect("cluster payment");
    assert_eq!(
        to_payment.endpoints[0].address, payment.listeners[0].address,
        "order's sidecar dials payment's sidecar"
    );
    let replicas = payment.cluster("payment").expect("cluster payment");
    let addrs: Vec<_> = replicas
        .endpoints
        .iter()
        .map(|e| e.address.clone())
        .collect();
    assert_eq!(addrs, ["127.0.0.1:18091", "127.0.0.1:18092"]);
    for a in &addrs {
        assert!(
            DEMO_SH.contains(&format!("--listen $H:{}", &a[10..])),
            "demo.sh starts {a}"
        );
    }
    assert!(replicas.outlier_detection.is_some() && replicas.circuit_breakers.is_some());
    assert!(payment.listeners[0].routes[0].retry_policy.is_some());
}

#[test]
fn the_mesh_identities_match_what_demo_sh_issues() {
    assert!(ORDER_SIDECAR.contains("identity: spiffe://demo.local/ns/shop/sa/payment"));
    assert!(PAYMENT_SIDECAR.contains(r#"allow: ["spiffe://demo.local/ns/shop/sa/order"]"#));
    assert!(DEMO_SH.contains(r#"--spiffe-id "spiffe://demo.local/ns/shop/sa/$sa""#));
    assert!(DEMO_SH.contains("--trust-domain demo.local"));
}

#[test]
fn the_ambassador_and_adapter_configs_match_the_demo() {
    for needle in [
        "address: \"127.0.0.1:18401\"",
        "upstream: https://127.0.0.1:18443",
        "token_url: http://127.0.0.1:18600/token",
        "client_secret: { env: WEATHER_CLIENT_SECRET }",
    ] {
        assert!(AMBASSADOR.contains(needle), "ambassador.yaml: {needle}");
    }
    assert!(DEMO_SH.contains("--listen $H:18443 --issuer http://localhost:18600"));
    assert!(DEMO_SH.contains("env WEATHER_CLIENT_SECRET="));
    assert!(ADAPTER.contains("command: [sample, legacy, --listen, \"127.0.0.1:18301\""));
    // The adapter finds `sample` on the PATH the demo sets.
    assert!(DEMO_SH.contains("export PATH=\"$PWD/$BIN:$PATH\""));
    assert!(ADAPTER.contains("address: 127.0.0.1:18300"));
}

#[test]
fn demo_config_is_valid_and_fronts_demo_app() {
    let cfg = Config::from_yaml(DEMO_YAML).unwrap_or_else(|e| panic!("invalid demo config:\n{e}"));
    let app = cfg.cluster("demo-app").expect("cluster demo-app");
    assert_eq!(app.endpoints[0].address, samples::demo_app::DEFAULT_LISTEN);
    let inbound = &cfg.listeners[0];
    assert_eq!(inbound.address, "127.0.0.1:18006");
    assert_eq!(cfg.admin.address, "127.0.0.1:18000");
    assert!(
        inbound.routes.iter().any(|r| r
            .response_headers_to_add
            .iter()
            .any(|h| h.name == "x-served-by")),
        "the demo shows a response header added by a route"
    );
    assert!(cfg.access_log.is_some(), "the demo shows the access log");
}

/// The YAML block under the README's "A full example" heading.
fn readme_full_example() -> &'static str {
    let section = README
        .split_once("### A full example")
        .expect("README has a full example section")
        .1;
    let block = section
        .split_once("```yaml\n")
        .expect("the section has a yaml block")
        .1;
    block.split_once("```").expect("the yaml block ends").0
}

#[test]
fn readme_full_example_is_valid_and_sets_every_section() {
    let cfg = Config::from_yaml(readme_full_example())
        .unwrap_or_else(|e| panic!("the README's full example is invalid:\n{e}"));
    assert!(cfg.access_log.is_some());
    assert!(cfg.listeners.len() >= 2 && cfg.clusters.len() >= 2);
    let routes = &cfg.listeners[0].routes;
    assert!(routes.iter().any(|r| !r.weighted_clusters.is_empty()));
    assert!(routes.iter().any(|r| !r.matcher.headers.is_empty()));
}
