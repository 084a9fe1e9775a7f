use super::*;

fn paths(i: &Imported) -> Vec<String> {
    i.unmapped.iter().map(ToString::to_string).collect()
}

const HTTP: &str = r#"
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }
static_resources:
  listeners:
  - name: ingress
    address: { socket_address: { address: 0.0.0.0, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: HTTP1
          http_filters:
          - name: envoy.filters.http.cors
          - name: envoy.filters.http.lua
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            name: local
            virtual_hosts:
            - name: any
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: web }
            - name: api
              domains: ["api.example.com:8080"]
              cors: { allow_origin_string_match: [] }
              routes:
              - name: items
                match:
                  safe_regex: { google_re2: {}, regex: "/items/[0-9]+" }
                  headers:
                  - name: x-tenant
                    string_match: { exact: blue }
                  query_parameters: [{ name: debug }]
                route:
                  cluster: web
                  timeout: 0.25s
                  prefix_rewrite: /v2/
                  retry_policy:
                    retry_on: 5xx,retriable-4xx
                    num_retries: 3
                    per_try_timeout: 0.1s
                    retry_back_off: { base_interval: 0.01s, max_interval: 0.1s }
              - match: { prefix: "/old" }
                redirect: { path_redirect: "/new" }
  clusters:
  - name: web
    type: STRICT_DNS
    connect_timeout: { seconds: 2, nanos: 500000000 }
    lb_policy: LEAST_REQUEST
    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: localhost, port_value: 8080 } } }
          load_balancing_weight: 3
        - endpoint: { address: { socket_address: { address: "::1", port_value: 8081 } } }
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"#;

#[test]
fn converts_listener_routes_and_cluster() {
    let i = import(HTTP).expect("converts");
    let c = &i.config;
    assert_eq!(c.admin.address, "127.0.0.1:9901");
    let l = &c.listeners[0];
    assert_eq!(
        (l.name.as_str(), l.address.as_str()),
        ("ingress", "0.0.0.0:10000")
    );
    assert_eq!(l.protocol, ListenerProtocol::Http1);
    // The "*" virtual host goes after the specific one.
    let names: Vec<&str> = l.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["items", "any-0"]);
    let items = &l.routes[0];
    assert_eq!(items.matcher.hosts, ["api.example.com"]);
    assert_eq!(items.matcher.regex.as_deref(), Some("/items/[0-9]+"));
    assert_eq!(items.matcher.headers[0].exact.as_deref(), Some("blue"));
    assert_eq!(items.timeout, Dur::millis(250));
    let rp = items.retry_policy.as_ref().expect("retry policy");
    assert_eq!(
        (rp.num_retries, rp.retry_on.as_slice()),
        (3, &[RetryOn::FiveXx][..])
    );
    assert_eq!(rp.per_try_timeout, Some(Dur::millis(100)));
    assert_eq!(rp.retry_back_off.max_interval, Some(Dur::millis(100)));
    assert!(l.routes[1].matcher.hosts.is_empty());

    let web = &c.clusters[0];
    assert_eq!(web.discovery, Discovery::Dns);
    assert_eq!(web.lb_policy, LbPolicy::LeastRequest);
    assert_eq!(web.connect_timeout, Dur::millis(2500));
    assert_eq!(web.protocol, UpstreamProtocol::Http2);
    assert_eq!(web.endpoints[0].address, "localhost:8080");
    assert_eq!(web.endpoints[0].weight, 3);
    assert_eq!(web.endpoints[1].address, "[::1]:8081");
}

#[test]
fn reports_every_unconverted_field_with_its_path() {
    let i = import(HTTP).expect("converts");
    let hcm = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";
    let vh = format!("{hcm}.route_config.virtual_hosts[1]");
    let want = [
        format!("{hcm}.http_filters[0]: envoy.filters.http.cors is not supported"),
        format!("{hcm}.http_filters[1]: envoy.filters.http.lua is not supported"),
        format!("{vh}.routes[0].match.query_parameters: not supported"),
        format!(
            "{vh}.routes[0].route.retry_policy.retry_on: condition \"retriable-4xx\" is not supported"
        ),
        format!(
            "{vh}.routes[0].route.prefix_rewrite: only a route matching on `prefix` can rewrite it: not converted"
        ),
        format!(
            "{vh}.routes[1]: only routes with a `route` action (cluster or weighted_clusters) are supported: route skipped"
        ),
        format!("{vh}.routes[1].redirect: not supported"),
        format!("{vh}.cors: not supported"),
    ];
    let got = paths(&i);
    for w in &want {
        assert!(got.contains(w), "missing {w:?} in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn result_validates() {
    let i = import(HTTP).expect("converts");
    let yaml = serde_norway::to_string(&i.config).expect("serializes");
    Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}

#[test]
fn tcp_proxy_and_cluster_resilience() {
    let doc = r#"
static_resources:
  listeners:
  - name: db
    address: { socket_address: { address: 127.0.0.1, port_value: 5432 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: db
          cluster: pg
          idle_timeout: 60s
  clusters:
  - name: pg
    connect_timeout: 1s
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: 5432 } } }
    circuit_breakers:
      thresholds:
      - { priority: DEFAULT, max_connections: 10, max_pending_requests: 5, max_requests: 20, max_retries: 1 }
      - { priority: HIGH, max_connections: 100 }
    outlier_detection:
      consecutive_5xx: 3
      interval: 5s
      base_ejection_time: 10s
      max_ejection_percent: 20
      enforcing_success_rate: 0
    health_checks:
    - timeout: 0.5s
      interval: 2s
      healthy_threshold: 1
      unhealthy_threshold: { value: 2 }
      http_health_check:
        path: /healthz
        expected_statuses: [{ start: 200, end: 202 }]
    common_lb_config: { healthy_panic_threshold: { value: 0 } }
"#;
    let i = import(doc).expect("converts");
    let l = &i.config.listeners[0];
    assert_eq!(l.protocol, ListenerProtocol::Tcp);
    assert_eq!(l.cluster.as_deref(), Some("pg"));
    assert_eq!(l.idle_timeout, Dur::secs(60));
    let c = &i.config.clusters[0];
    let cb = c.circuit_breakers.as_ref().expect("breakers");
    assert_eq!(
        (
            cb.max_connections,
            cb.max_pending_requests,
            cb.max_requests,
            cb.max_retries
        ),
        (10, 5, 20, 1)
    );
    let od = c.outlier_detection.as_ref().expect("outliers");
    assert_eq!((od.consecutive_5xx, od.max_ejection_percent), (3, 20));
    assert_eq!(
        (od.interval, od.base_ejection_time),
        (Dur::secs(5), Dur::secs(10))
    );
    let hc = c.health_checks.as_ref().expect("health checks");
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (1, 2));
    let http = hc.http_health_check.as_ref().expect("http check");
    assert_eq!(
        (http.path.as_str(), http.expected_statuses.as_slice()),
        ("/healthz", &[200, 201][..])
    );
    assert_eq!(c.healthy_panic_threshold, 0);
    let got = paths(&i);
    assert_eq!(
        got,
        [
            "static_resources.clusters[0].circuit_breakers.thresholds[1]: only DEFAULT priority is supported: HIGH thresholds dropped",
            "static_resources.clusters[0].outlier_detection.enforcing_success_rate: not supported",
        ],
    );
}

#[test]
fn ring_hash_takes_the_route_hash_header() {
    let doc = r#"
static_resources:
  listeners:
  - name: in
    address: { socket_address: { address: 127.0.0.1, port_value: 8000 } }
    filter_chains:
    - filters:
      - typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: / }
                route:
                  cluster: sticky
                  hash_policy: [{ header: { header_name: X-User } }]
  clusters:
  - name: sticky
    lb_policy: MAGLEV
    load_assignment:
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } }] }]
"#;
    let i = import(doc).expect("converts");
    let c = &i.config.clusters[0];
    assert_eq!(c.lb_policy, LbPolicy::RingHash);
    assert_eq!(
        c.hash_policy.as_ref().map(|h| h.header.as_str()),
        Some("x-user")
    );
    assert!(i.unmapped.is_empty(), "{:?}", paths(&i));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(matches!(import("[1, 2]"), Err(ImportError::NotAMapping)));
    assert!(matches!(import("a: [b"), Err(ImportError::Yaml(_))));
    assert!(matches!(
        import("static_resources: {}"),
        Err(ImportError::NoListener)
    ));
    let i = import(
        r#"
static_resources:
  listeners:
  - name: x
    address: { socket_address: { address: 1.2.3.4, port_value: 80 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { "@type": x.TcpProxy, cluster: c, idle_timeout: soon } }] }]
  clusters:
  - name: c
    load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 1.2.3.4, port_value: 1 } } } }] }] }
"#,
    )
    .expect("converts");
    assert!(
        paths(&i).iter().any(|p| p.ends_with(
            "typed_config.idle_timeout: invalid duration \"soon\": expected seconds like \"1.5s\""
        )),
        "{:?}",
        paths(&i)
    );
}

#[test]
fn durations() {
    assert_eq!(duration(&Value::from("1.5s")), Ok(Dur::millis(1500)));
    assert_eq!(
        duration(&serde_json::json!({"seconds": "3"})),
        Ok(Dur::secs(3))
    );
    assert!(duration(&Value::from("5")).is_err());
    assert!(duration(&Value::from("-1s")).is_err());
}

#[test]
fn tls_is_never_downgraded_to_plain_text() {
    let doc = r#"
static_resources:
  listeners:
  - name: tls
    address: { socket_address: { address: 127.0.0.1, port_value: 443 } }
    filter_chains:
    - transport_socket: { name: envoy.transport_sockets.tls }
      filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { "@type": x.TcpProxy, cluster: plain } }]
  - name: plain
    address: { socket_address: { address: 127.0.0.1, port_value: 80 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { "@type": x.TcpProxy, cluster: secure } }] }]
  - name: ok
    address: { socket_address: { address: 127.0.0.1, port_value: 81 } }
    filter_chains: [{ filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { "@type": x.TcpProxy, cluster: plain } }] }]
  clusters:
  - name: plain
    load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: 1 } } } }] }] }
  - name: secure
    transport_socket: { name: envoy.transport_sockets.tls }
    load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 10.0.0.1, port_value: 2 } } } }] }] }
"#;
    let i = import(doc).expect("converts");
    let names: Vec<&str> = i.config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["ok"]);
    assert_eq!(i.config.clusters.len(), 1);
    assert_eq!(
        paths(&i),
        [
            "static_resources.clusters[1].transport_socket: TLS to upstreams is not supported: cluster skipped",
            "static_resources.listeners[0]: no filter chain could be converted (one with an http_connection_manager or tcp_proxy filter): listener skipped",
            "static_resources.listeners[0].filter_chains[0].transport_socket: TLS termination is not supported: filter chain skipped",
            "static_resources.listeners[1]: cluster \"secure\" was not converted: listener skipped",
        ]
    );
}
