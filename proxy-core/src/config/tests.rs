use super::*;

fn errors(yaml: &str) -> Vec<String> {
    Config::from_yaml(yaml)
        .expect_err("config should be rejected")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const GOOD: &str = r#"
admin: { address: "127.0.0.1:15000" }
listeners:
  - name: in
    address: 127.0.0.1:15006
    routes:
      - name: api
        match: { prefix: /api/, headers: [{ name: x-canary, exact: "1" }] }
        weighted_clusters: [{ name: a, weight: 90 }, { name: b, weight: 10 }]
        timeout: 250ms
      - name: rest
        cluster: a
  - name: db
    address: 127.0.0.1:15007
    protocol: tcp
    cluster: b
clusters:
  - name: a
    endpoints: ["127.0.0.1:8080", { address: "[::1]:8081", weight: 3 }]
    lb_policy: ring_hash
    hash_policy: { header: x-user }
  - name: b
    discovery: dns
    endpoints: ["localhost:9000"]
"#;

#[test]
fn accepts_a_full_document() {
    let cfg = Config::from_yaml(GOOD).unwrap();
    assert_eq!(cfg.listeners.len(), 2);
    assert_eq!(cfg.listeners[0].routes[0].timeout, Dur::millis(250));
    assert_eq!(cfg.clusters[0].endpoints[1].weight, 3);
    assert_eq!(cfg.clusters[1].discovery, Discovery::Dns);
}

#[test]
fn round_trips_through_json_and_yaml() {
    let cfg = Config::from_yaml(GOOD).unwrap();
    let yaml = serde_norway::to_string(&cfg).unwrap();
    assert_eq!(Config::from_yaml(&yaml).unwrap(), cfg);
    serde_json::to_string(&cfg).unwrap();
}

#[test]
fn default_config_is_valid() {
    let cfg = Config::default_config();
    assert_eq!(cfg.admin.address, "127.0.0.1:15000");
    assert!(cfg.listeners.iter().any(|l| l.address.ends_with(":15006")));
    assert!(cfg.listeners.iter().any(|l| l.address.ends_with(":15001")));
}

#[test]
fn reports_every_problem_with_its_path() {
    let errs = errors(
        r#"
listeners:
  - name: in
    adress: 127.0.0.1:1
  - name: ok
    address: 127.0.0.1:2
    routes: [{ name: r, cluster: nope }]
clusters:
  - name: c
    endpoints: ["127.0.0.1:8080", "127.0.0.1:80a"]
    connect_timeout: 5
"#,
    );
    assert!(
        errs[0].starts_with("listeners[0].adress: unknown field \"adress\""),
        "{errs:?}"
    );
    assert!(
        errs.contains(
            &"clusters[0].connect_timeout: duration 5 needs a unit, like \"5s\" or \"5ms\""
                .to_owned()
        ),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"listeners[1].routes[0].cluster: unknown cluster \"nope\"".to_owned()),
        "{errs:?}"
    );
}

#[test]
fn endpoint_problems_name_the_endpoint() {
    let errs = errors(
        r#"
clusters:
  - name: c
    endpoints: ["127.0.0.1:80a", "example.com:80", "::1:80", { address: "127.0.0.1:1", weight: 0 }]
"#,
    );
    assert_eq!(
        errs,
        vec![
            "clusters[0].endpoints[0]: invalid port \"80a\": expected 1 to 65535",
            "clusters[0].endpoints[1]: \"example.com\" is not an IP address; static endpoints are IP:port (use discovery: dns for host names)",
            "clusters[0].endpoints[2]: invalid address \"::1:80\": write IPv6 addresses in brackets, like \"[::1]:8080\"",
            "clusters[0].endpoints[3].weight: must be at least 1",
        ]
    );
}

#[test]
fn cross_references_and_shapes() {
    let errs = errors(
        r#"
listeners:
  - name: a
    address: 127.0.0.1:1
    protocol: tcp
  - name: a
    address: 127.0.0.1:1
    routes:
      - name: r
        cluster: c
        weighted_clusters: [{ name: c, weight: 1 }]
        match: { prefix: api, regex: "(" }
clusters:
  - name: c
    endpoints: ["127.0.0.1:1"]
    lb_policy: ring_hash
"#,
    );
    let want = [
        "clusters[0].hash_policy: lb_policy ring_hash needs hash_policy.header",
        "listeners[0].cluster: a tcp listener needs a cluster",
        "listeners[1].name: duplicate listener name \"a\"",
        "listeners[1].address: 127.0.0.1:1 is used by another listener",
        "listeners[1].routes[0]: set either cluster or weighted_clusters, not both",
        "listeners[1].routes[0].match: use only one of prefix, path and regex",
        "listeners[1].routes[0].match.prefix: \"api\" must start with '/'",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
    }
    assert!(
        errs.iter()
            .any(|e| e.starts_with("listeners[1].routes[0].match.regex: invalid regex"))
    );
}

#[test]
fn a_broken_cluster_does_not_cause_unknown_cluster_noise() {
    let errs = errors(
        r#"
listeners:
  - { name: l, address: "127.0.0.1:1", routes: [{ name: r, cluster: c }] }
clusters:
  - { name: c, endpoints: ["127.0.0.1:1"], lb_polcy: random }
"#,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("clusters[0].lb_polcy: unknown field"));
}

#[test]
fn yaml_syntax_and_top_level_errors() {
    assert!(errors("listeners: [")[0].starts_with("invalid YAML"));
    assert_eq!(
        errors("- a")[0],
        "expected a mapping at the top of the document, found a list"
    );
    assert!(errors("clusterz: []")[0].starts_with("clusterz: unknown field"));
    assert_eq!(
        errors("listeners: 3")[0],
        "listeners: expected a list, found a number"
    );
}

#[test]
fn host_port_parsing() {
    assert_eq!(
        parse_host_port("[::1]:80").unwrap().socket_addr(),
        Some("[::1]:80".parse().unwrap())
    );
    assert_eq!(parse_host_port("svc.ns:8080").unwrap().host, "svc.ns");
    assert!(parse_host_port("host").is_err());
    assert!(parse_host_port("host:0").is_err());
    assert!(parse_host_port(":80").is_err());
    assert!(parse_host_port("bad host:80").is_err());
}
