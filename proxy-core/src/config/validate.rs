//! Semantic checks over a parsed document: addresses, references between sections, regexes,
//! header names. Every check records its problem and carries on, so one run shows them all.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use super::Problems;
use super::model::*;
use super::resilience;

/// An endpoint address split into host and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The address, if the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

/// Split `host:port` or `[v6]:port`, with a message fit for an operator when it is wrong.
pub fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, p)) = rest.split_once("]:") else {
            return Err(format!("invalid address {s:?}: expected \"[ipv6]:port\""));
        };
        (h, p)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "invalid address {s:?}: write IPv6 addresses in brackets, like \"[::1]:8080\""
                ));
            }
            Some(hp) => hp,
            None => return Err(format!("invalid address {s:?}: expected \"host:port\"")),
        }
    };
    if host.is_empty() {
        return Err(format!("invalid address {s:?}: the host is empty"));
    }
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => return Err(format!("invalid port {port:?}: expected 1 to 65535")),
        Ok(p) => p,
    };
    if host.parse::<IpAddr>().is_err() && !valid_hostname(host) {
        return Err(format!("invalid host {host:?}"));
    }
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Names become metric label values and admin URLs: keep them plain.
fn check_name(p: &mut Problems, path: &str, name: &str) {
    if name.is_empty() {
        p.at(format!("{path}.name"), "must not be empty");
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        p.at(
            format!("{path}.name"),
            format!("invalid name {name:?}: use letters, digits, '-', '_' and '.'"),
        );
    }
}

fn check_socket_addr(p: &mut Problems, path: &str, addr: &str) -> Option<SocketAddr> {
    match addr.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.at(
                path,
                format!("invalid socket address {addr:?}: expected \"ip:port\", like \"127.0.0.1:15000\""),
            );
            None
        }
    }
}

fn check_header_name(p: &mut Problems, path: &str, name: &str) {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        p.at(path, format!("invalid header name {name:?}"));
    }
}

fn check_regex(p: &mut Problems, path: &str, re: &str) {
    if let Err(e) = regex::Regex::new(re) {
        // regex's messages span lines (a caret under the pattern); one problem, one line.
        let msg = e.to_string();
        let msg: Vec<&str> = msg
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        p.at(path, format!("invalid regex: {}", msg.join(" ")));
    }
}

/// Where each parsed list item stood in the document (items that failed to parse are absent
/// from the parsed lists, so positions differ once one fails).
#[derive(Debug, Default)]
pub(super) struct DocIndex {
    pub listeners: Vec<usize>,
    pub clusters: Vec<usize>,
}

pub(super) fn config(cfg: &Config, idx: &DocIndex, raw_cluster_names: &[String], p: &mut Problems) {
    check_socket_addr(p, "admin.address", &cfg.admin.address);

    if cfg.runtime.worker_threads > 1024 {
        p.at("runtime.worker_threads", "at most 1024");
    }
    if let Some(log) = &cfg.access_log
        && log.path.trim().is_empty()
    {
        p.at(
            "access_log.path",
            "must not be empty (stdout, stderr or a file path)",
        );
    }

    let mut cluster_names: HashSet<&str> = raw_cluster_names.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    for (i, c) in cfg.clusters.iter().enumerate() {
        let path = format!("clusters[{}]", idx.clusters.get(i).copied().unwrap_or(i));
        check_name(p, &path, &c.name);
        if !seen.insert(c.name.as_str()) {
            p.at(
                format!("{path}.name"),
                format!("duplicate cluster name {:?}", c.name),
            );
        }
        cluster_names.insert(&c.name);
        cluster(p, &path, c);
    }

    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        let path = format!("listeners[{}]", idx.listeners.get(i).copied().unwrap_or(i));
        check_name(p, &path, &l.name);
        if !names.insert(l.name.as_str()) {
            p.at(
                format!("{path}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        if let Some(a) = check_socket_addr(p, &format!("{path}.address"), &l.address)
            && !addrs.insert(a)
        {
            p.at(
                format!("{path}.address"),
                format!("{a} is used by another listener"),
            );
        }
        listener(p, &path, l, &cluster_names);
    }
    super::mtls::check(cfg, idx, p);
}

fn listener(p: &mut Problems, path: &str, l: &Listener, clusters: &HashSet<&str>) {
    if !super::intercept::check_listener(p, path, l) {
        return;
    }
    if l.protocol == ListenerProtocol::Tcp {
        match &l.cluster {
            None => p.at(format!("{path}.cluster"), "a tcp listener needs a cluster"),
            Some(c) if !clusters.contains(c.as_str()) => {
                p.at(format!("{path}.cluster"), format!("unknown cluster {c:?}"))
            }
            Some(_) => {}
        }
        if !l.routes.is_empty() {
            p.at(
                format!("{path}.routes"),
                "a tcp listener has no routes; set cluster instead",
            );
        }
        return;
    }
    if l.cluster.is_some() {
        p.at(
            format!("{path}.cluster"),
            "only tcp listeners take a cluster; http listeners send requests by their routes",
        );
    }
    if l.routes.is_empty() && l.intercept.is_none() {
        p.at(
            format!("{path}.routes"),
            "an http listener needs at least one route",
        );
    }
    if l.max_request_headers == 0 {
        p.at(format!("{path}.max_request_headers"), "must be at least 1");
    }
    if l.max_request_headers_size.bytes() < 1024 {
        p.at(
            format!("{path}.max_request_headers_size"),
            "must be at least 1KiB",
        );
    }
    if l.request_header_timeout.get().is_zero() {
        p.at(
            format!("{path}.request_header_timeout"),
            "must be more than 0",
        );
    }
    if l.idle_timeout.get().is_zero() {
        p.at(format!("{path}.idle_timeout"), "must be more than 0");
    }
    if l.max_concurrent_streams == 0 {
        p.at(
            format!("{path}.max_concurrent_streams"),
            "must be at least 1",
        );
    }
    let mut names = HashSet::new();
    for (j, r) in l.routes.iter().enumerate() {
        let rpath = format!("{path}.routes[{j}]");
        check_name(p, &rpath, &r.name);
        if !names.insert(r.name.as_str()) {
            p.at(
                format!("{rpath}.name"),
                format!("duplicate route name {:?}", r.name),
            );
        }
        route(p, &rpath, r, clusters);
    }
}

fn route(p: &mut Problems, path: &str, r: &Route, clusters: &HashSet<&str>) {
    match (&r.cluster, r.weighted_clusters.is_empty()) {
        (Some(_), false) => p.at(path, "set either cluster or weighted_clusters, not both"),
        (None, true) => p.at(path, "needs a cluster or weighted_clusters"),
        _ => {}
    }
    if let Some(c) = &r.cluster
        && !clusters.contains(c.as_str())
    {
        p.at(format!("{path}.cluster"), format!("unknown cluster {c:?}"));
    }
    let mut total = 0u64;
    for (k, w) in r.weighted_clusters.iter().enumerate() {
        if !clusters.contains(w.name.as_str()) {
            p.at(
                format!("{path}.weighted_clusters[{k}].name"),
                format!("unknown cluster {:?}", w.name),
            );
        }
        total += u64::from(w.weight);
    }
    if !r.weighted_clusters.is_empty() && total == 0 {
        p.at(
            format!("{path}.weighted_clusters"),
            "weights must not all be 0",
        );
    }
    if r.timeout.get().is_zero() {
        p.at(format!("{path}.timeout"), "must be more than 0");
    }
    super::traffic::validate_route(p, path, r, clusters, r.hash_policy.as_ref());

    let m = &r.matcher;
    let mpath = format!("{path}.match");
    let path_conditions = [m.prefix.is_some(), m.path.is_some(), m.regex.is_some()];
    if path_conditions.iter().filter(|b| **b).count() > 1 {
        p.at(&mpath, "use only one of prefix, path and regex");
    }
    for (field, v) in [("prefix", &m.prefix), ("path", &m.path)] {
        if let Some(v) = v
            && !v.starts_with('/')
        {
            p.at(
                format!("{mpath}.{field}"),
                format!("{v:?} must start with '/'"),
            );
        }
    }
    if let Some(re) = &m.regex {
        check_regex(p, &format!("{mpath}.regex"), re);
    }
    for (k, h) in m.hosts.iter().enumerate() {
        let inner = h
            .strip_prefix("*.")
            .or_else(|| h.strip_suffix(".*"))
            .unwrap_or(h);
        if h.is_empty() || (h != "*" && (inner.contains('*') || inner.is_empty())) {
            p.at(
                format!("{mpath}.hosts[{k}]"),
                format!("invalid host pattern {h:?}: use \"exact.host\", \"*.suffix\", \"prefix.*\" or \"*\""),
            );
        }
    }
    for (k, h) in m.headers.iter().enumerate() {
        header_match(p, &format!("{mpath}.headers[{k}]"), h);
    }
    for (field, list) in [
        ("request_headers_to_add", &r.request_headers_to_add),
        ("response_headers_to_add", &r.response_headers_to_add),
    ] {
        for (k, h) in list.iter().enumerate() {
            check_header_name(p, &format!("{path}.{field}[{k}].name"), &h.name);
            if http::HeaderValue::from_str(&h.value).is_err() {
                p.at(format!("{path}.{field}[{k}].value"), "invalid header value");
            }
        }
    }
    if let Some(rp) = &r.retry_policy {
        resilience::retry_policy(p, &format!("{path}.retry_policy"), rp, r.timeout.get());
    }
    if r.prefix_rewrite.is_some() && m.prefix.is_none() {
        p.at(
            format!("{path}.prefix_rewrite"),
            "needs match.prefix: it replaces the matched prefix",
        );
    }
    if let Some(h) = &r.host_rewrite_literal
        && http::uri::Authority::try_from(h.as_str()).is_err()
    {
        p.at(
            format!("{path}.host_rewrite_literal"),
            format!("invalid host {h:?}"),
        );
    }
    if let Some(rl) = &r.local_rate_limit {
        crate::ratelimit::local::validate(p, &format!("{path}.local_rate_limit"), rl);
    }
    for (field, list) in [
        ("request_headers_to_remove", &r.request_headers_to_remove),
        ("response_headers_to_remove", &r.response_headers_to_remove),
    ] {
        for (k, h) in list.iter().enumerate() {
            check_header_name(p, &format!("{path}.{field}[{k}]"), h);
        }
    }
}

pub(super) fn header_match(p: &mut Problems, hpath: &str, h: &HeaderMatch) {
    check_header_name(p, &format!("{hpath}.name"), &h.name);
    let n = [
        h.exact.is_some(),
        h.prefix.is_some(),
        h.regex.is_some(),
        h.present.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if n != 1 {
        p.at(hpath, "set exactly one of exact, prefix, regex and present");
    }
    if let Some(re) = &h.regex {
        check_regex(p, &format!("{hpath}.regex"), re);
    }
}

fn cluster(p: &mut Problems, path: &str, c: &Cluster) {
    if c.tls.is_some() && c.mtls.is_some() {
        p.at(
            format!("{path}.tls"),
            "set either tls (TLS to an outside server) or mtls (the mesh's mutual TLS), not both",
        );
    }
    if c.endpoints.is_empty() {
        p.at(format!("{path}.endpoints"), "needs at least one endpoint");
    }
    for (k, e) in c.endpoints.iter().enumerate() {
        let epath = format!("{path}.endpoints[{k}]");
        match parse_host_port(&e.address) {
            Err(msg) => p.at(&epath, msg),
            Ok(hp) => {
                if c.discovery == Discovery::Static && hp.socket_addr().is_none() {
                    p.at(
                        &epath,
                        format!(
                            "{:?} is not an IP address; static endpoints are IP:port (use discovery: dns for host names)",
                            hp.host
                        ),
                    );
                }
            }
        }
        if e.weight == 0 {
            p.at(format!("{epath}.weight"), "must be at least 1");
        }
    }
    match (c.lb_policy, &c.hash_policy) {
        (LbPolicy::RingHash, None) => p.at(
            format!("{path}.hash_policy"),
            "lb_policy ring_hash needs hash_policy.header",
        ),
        (LbPolicy::RingHash, Some(h)) => {
            check_header_name(p, &format!("{path}.hash_policy.header"), &h.header)
        }
        (_, Some(_)) => p.at(
            format!("{path}.hash_policy"),
            "only lb_policy ring_hash uses hash_policy",
        ),
        _ => {}
    }
    if c.connect_timeout.get().is_zero() {
        p.at(format!("{path}.connect_timeout"), "must be more than 0");
    }
    if c.discovery == Discovery::Dns
        && c.dns_refresh_rate.get() < std::time::Duration::from_millis(100)
    {
        p.at(format!("{path}.dns_refresh_rate"), "must be at least 100ms");
    }
    if c.idle_timeout.get().is_zero() {
        p.at(format!("{path}.idle_timeout"), "must be more than 0");
    }
    resilience::retry_budget(p, &format!("{path}.retry_budget"), &c.retry_budget);
    if let Some(cb) = &c.circuit_breakers {
        resilience::circuit_breakers(p, &format!("{path}.circuit_breakers"), cb);
    }
    if let Some(od) = &c.outlier_detection {
        resilience::outlier_detection(p, &format!("{path}.outlier_detection"), od);
    }
    if let Some(b) = &c.error_rate_breaker {
        resilience::error_rate_breaker(p, &format!("{path}.error_rate_breaker"), b);
    }
    if let Some(hc) = &c.health_checks {
        resilience::health_checks(p, &format!("{path}.health_checks"), hc);
    }
    crate::tls::upstream::validate(p, path, c);
    if c.healthy_panic_threshold > 100 {
        p.at(format!("{path}.healthy_panic_threshold"), "at most 100");
    }
}
