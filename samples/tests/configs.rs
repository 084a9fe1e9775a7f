//! The configs users copy from stay valid as the config model grows: the demo's, which must
//! keep pointing at where demo-app listens, and the README's full example.

use proxy_core::config::Config;

const DEMO_YAML: &str = include_str!("../sidecar-demo.yaml");
const README: &str = include_str!("../../README.md");

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
