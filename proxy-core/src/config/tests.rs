use super::*;

fn errors(yaml: &str) -> Vec<String> {
    Config::from_yaml(yaml)
        .expect_err("config should be rejected")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Shared with the check-config end-to-end test.
const GOOD: &str = include_str!("testdata/full.yaml");

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

#[test]
fn retry_policy_defaults_and_round_trip() {
    let cfg = Config::from_yaml(
        r#"
listeners:
  - name: in
    address: 127.0.0.1:1
    routes:
      - name: r
        cluster: c
        timeout: 2s
        retry_policy:
          retry_on: [5xx, retriable-status-codes, retriable-headers]
          retriable_status_codes: [429]
          retriable_headers: [{ name: x-retry, present: true }]
          per_try_timeout: 500ms
          retry_back_off: { base_interval: 10ms, max_interval: 100ms }
clusters:
  - name: c
    endpoints: ["127.0.0.1:2"]
    retry_budget: { budget_percent: 25, min_retries_per_second: 0 }
    circuit_breakers: { max_requests: 10 }
"#,
    )
    .unwrap();
    let rp = cfg.listeners[0].routes[0].retry_policy.as_ref().unwrap();
    assert_eq!(rp.num_retries, 2);
    assert_eq!(rp.per_request_buffer_limit, Size::kib(64));
    assert_eq!(rp.max_retry_after, Dur::secs(5));
    assert!(!rp.retry_non_idempotent);
    assert_eq!(
        rp.retry_back_off.max(),
        std::time::Duration::from_millis(100)
    );
    let c = &cfg.clusters[0];
    assert_eq!(c.retry_budget.budget_percent, 25.0);
    assert_eq!(c.retry_budget.ttl, Dur::secs(10));
    let cb = c.circuit_breakers.as_ref().unwrap();
    assert_eq!(
        (cb.max_requests, cb.max_connections, cb.max_retries),
        (10, 1024, 3)
    );
    let yaml = serde_norway::to_string(&cfg).unwrap();
    assert_eq!(Config::from_yaml(&yaml).unwrap(), cfg);

    let defaults: RetryPolicy = serde_norway::from_str("{}").unwrap();
    assert_eq!(
        defaults.retry_on,
        vec![
            RetryOn::ConnectFailure,
            RetryOn::RefusedStream,
            RetryOn::Reset
        ]
    );
    assert_eq!(
        defaults.retry_back_off.max(),
        std::time::Duration::from_millis(250)
    );
}

#[test]
fn resilience_problems_name_their_field() {
    let errs = errors(
        r#"
listeners:
  - name: in
    address: 127.0.0.1:1
    routes:
      - name: r
        cluster: c
        timeout: 1s
        retry_policy:
          num_retries: 11
          retry_on: [5xx, retriable-status-codes, retriable-headers]
          retriable_status_codes: [99]
          retriable_headers: [{ name: "bad header", exact: a, prefix: b }]
          per_try_timeout: 2s
          retry_back_off: { base_interval: 100ms, max_interval: 10ms }
          per_request_buffer_limit: 1GiB
      - name: s
        cluster: c
        retry_policy:
          retry_on: []
          retriable_status_codes: [503]
  - name: other
    address: 127.0.0.1:3
    routes:
      - name: t
        cluster: c
        retry_policy: { retry_on: [retriable-status-codes, sometimes] }
clusters:
  - name: c
    endpoints: ["127.0.0.1:2"]
    retry_budget: { budget_percent: 150, ttl: 100ms }
    circuit_breakers: { max_connections: 0, max_requests: 0 }
"#,
    );
    let want = [
        "clusters[0].retry_budget.budget_percent: must be between 0 and 100",
        "clusters[0].retry_budget.ttl: must be between 1s and 60s",
        "clusters[0].circuit_breakers.max_connections: must be at least 1",
        "clusters[0].circuit_breakers.max_requests: must be at least 1",
        "listeners[0].routes[0].retry_policy.num_retries: at most 10",
        "listeners[0].routes[0].retry_policy.retriable_status_codes[0]: 99 is not an HTTP status (100 to 599)",
        "listeners[0].routes[0].retry_policy.retriable_headers[0].name: invalid header name \"bad header\"",
        "listeners[0].routes[0].retry_policy.retriable_headers[0]: set exactly one of exact, prefix, regex and present",
        "listeners[0].routes[0].retry_policy.per_try_timeout: 2s is longer than the route timeout (1s); it would never fire",
        "listeners[0].routes[0].retry_policy.retry_back_off.max_interval: must not be shorter than base_interval",
        "listeners[0].routes[0].retry_policy.per_request_buffer_limit: at most 16MiB: every retried request holds its body in memory",
        "listeners[0].routes[1].retry_policy.retry_on: name at least one condition",
        "listeners[0].routes[1].retry_policy.retriable_status_codes: only used when retry_on names retriable-status-codes",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
    }
    assert!(
        errs.iter().any(|e| e.starts_with(
            "listeners[1].routes[0].retry_policy.retry_on[1]: unknown variant \"sometimes\""
        )),
        "{errs:#?}"
    );
}

#[test]
fn outlier_detection_defaults_and_problems() {
    let cfg = Config::from_yaml(
        r#"
clusters:
  - name: c
    endpoints: ["127.0.0.1:2"]
    outlier_detection: { consecutive_5xx: 3, interval: 1s }
"#,
    )
    .unwrap();
    let od = cfg.clusters[0].outlier_detection.as_ref().unwrap();
    assert_eq!(od.consecutive_5xx, 3);
    assert_eq!(od.consecutive_local_origin_failure, 5);
    assert_eq!(od.base_ejection_time, Dur::secs(30));
    assert_eq!(od.max_ejection_percent, 50);

    let errs = errors(
        r#"
clusters:
  - name: c
    endpoints: ["127.0.0.1:2"]
    outlier_detection:
      interval: 10ms
      base_ejection_time: 10s
      max_ejection_time: 5s
      max_ejection_percent: 101
      success_rate_request_volume: 0
"#,
    );
    assert_eq!(
        errs,
        vec![
            "clusters[0].outlier_detection.interval: must be at least 100ms",
            "clusters[0].outlier_detection.max_ejection_time: must not be shorter than base_ejection_time",
            "clusters[0].outlier_detection.max_ejection_percent: at most 100",
            "clusters[0].outlier_detection.success_rate_request_volume: must be at least 1 when success_rate_minimum_hosts is set",
        ]
    );
}

#[test]
fn error_rate_breaker_problems() {
    let errs = errors(
        r#"
clusters:
  - name: c
    endpoints: ["127.0.0.1:2"]
    error_rate_breaker:
      failure_rate_threshold: 0
      minimum_requests: 0
      window: 500ms
      open_duration: 10ms
      half_open_requests: 0
"#,
    );
    assert_eq!(
        errs,
        vec![
            "clusters[0].error_rate_breaker.failure_rate_threshold: must be more than 0 and at most 100",
            "clusters[0].error_rate_breaker.minimum_requests: must be at least 1",
            "clusters[0].error_rate_breaker.window: must be between 1s and 10m",
            "clusters[0].error_rate_breaker.open_duration: must be at least 100ms",
            "clusters[0].error_rate_breaker.half_open_requests: must be at least 1",
        ]
    );
}

#[test]
fn health_check_problems() {
    let errs = errors(
        r#"
clusters:
  - name: c
    endpoints: ["127.0.0.1:2"]
    healthy_panic_threshold: 120
    health_checks:
      interval: 1s
      timeout: 2s
      healthy_threshold: 0
      http_health_check: { path: healthz, expected_statuses: [700] }
"#,
    );
    assert_eq!(
        errs,
        vec![
            "clusters[0].health_checks.timeout: must not be longer than interval",
            "clusters[0].health_checks.healthy_threshold: must be at least 1",
            "clusters[0].health_checks.http_health_check.path: \"healthz\" is not a request path starting with '/'",
            "clusters[0].health_checks.http_health_check.expected_statuses[0]: 700 is not an HTTP status (100 to 599)",
            "clusters[0].healthy_panic_threshold: at most 100",
        ]
    );
}

#[test]
fn a_bad_field_does_not_hide_the_other_problems_of_its_item() {
    let errs = errors(
        r#"
listeners:
  - name: in
    address: 127.0.0.1:1
    idle_timout: 5s
    routes:
      - { name: r, cluster: rrr, timeout: 3 }
clusters:
  - name: c
    lb_polcy: random
    endpoints: ["127.0.0.1:99999"]
"#,
    );
    let want = [
        "listeners[0].idle_timout: unknown field",
        "listeners[0].routes[0].timeout: duration 3 needs a unit",
        "listeners[0].routes[0].cluster: unknown cluster \"rrr\"",
        "clusters[0].lb_polcy: unknown field",
        "clusters[0].endpoints[0]: invalid port \"99999\"",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(w)),
            "missing {w:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn a_bad_list_element_does_not_hide_its_siblings() {
    let errs = errors(
        r#"
listeners:
  - name: in
    address: 127.0.0.1:1
    routes:
      - name: r
        cluster: c
        retry_policy: { retry_on: [connect-fail], num_retries: 11 }
clusters:
  - { name: c, endpoints: ["127.0.0.1:2"], max_idle_connections: two }
"#,
    );
    assert!(
        errs.iter()
            .any(|e| e
                .starts_with("listeners[0].routes[0].retry_policy.retry_on[0]: unknown variant")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("listeners[0].routes[0].retry_policy.num_retries:")),
        "{errs:#?}"
    );
    assert!(errs.contains(&"clusters[0].max_idle_connections: invalid type: string \"two\", expected a whole number".to_owned()), "{errs:#?}");
}
