//! `sidecar import-envoy`: the part of an Envoy v3 static bootstrap that maps onto our config
//! model, converted; everything else reported with its path.
//!
//! The walk reads the document as plain JSON values. Every mapping it visits is an [`Obj`]
//! that remembers which keys were taken; when the walk leaves it, each key not taken is
//! reported as not supported. So a field is either converted or named in the report: nothing
//! is dropped silently, including fields this converter has never heard of.
//!
//! Semantic differences worth knowing (also in the README):
//! - Virtual hosts become host-matched routes of one flat list per listener, in document
//!   order, except that a virtual host whose domains include `*` goes after the others (Envoy
//!   picks the most specific domain first; `*` is the least specific).
//! - `LOGICAL_DNS` clusters become `dns` clusters, which use every resolved address, not
//!   only the first.
//! - A route `hash_policy` on a header becomes the `hash_policy` of its `RING_HASH` or
//!   `MAGLEV` cluster (ours is per cluster).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::config::{
    Admin, CircuitBreakers, Cluster, Config, Discovery, Dur, Endpoint, HashPolicy, HeaderMatch,
    HeaderValueOption, HealthChecks, HttpHealthCheck, LbPolicy, Listener, ListenerProtocol,
    OutlierDetection, RetryBackOff, RetryOn, RetryPolicy, Route, RouteMatch, Size,
    UpstreamProtocol, WeightedCluster,
};

/// A field of the Envoy document with no place in ours, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmapped {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Unmapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The converted config and the report of what did not convert.
#[derive(Debug)]
pub struct Imported {
    pub config: Config,
    pub unmapped: Vec<Unmapped>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("expected a mapping at the top of the document")]
    NotAMapping,
    #[error("static_resources has no listener that could be converted")]
    NoListener,
}

/// Exit status when the input cannot be read or converted (EX_DATAERR).
const EXIT_INPUT: u8 = 65;

/// `sidecar import-envoy FILE`: the converted config on stdout, the report on stderr.
///
/// Exits 0 when the result validates (unconverted fields are reported, not fatal: the
/// report is the to-do list of a migration), 65 when the input cannot be converted or the
/// result does not validate (its problems are listed too).
pub fn run_cli(file: &std::path::Path) -> std::process::ExitCode {
    use std::process::ExitCode;
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let imported = match import(&text) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let yaml = match serde_norway::to_string(&imported.config) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("{}: cannot write the result: {e}", file.display());
            return ExitCode::from(EXIT_INPUT);
        }
    };
    let n = imported.unmapped.len();
    print!(
        "# Converted from {} by `sidecar import-envoy`; {n} field(s) not converted (listed on stderr).\n{yaml}",
        file.display()
    );
    for u in &imported.unmapped {
        eprintln!("{u}");
    }
    eprintln!("{}: {n} field(s) not converted", file.display());
    match Config::from_yaml(&yaml) {
        Ok(_) => ExitCode::SUCCESS,
        Err(errs) => {
            eprintln!(
                "the converted config does not validate ({} problem(s)):\n{errs}",
                errs.0.len()
            );
            ExitCode::from(EXIT_INPUT)
        }
    }
}

/// Convert an Envoy v3 bootstrap (YAML or JSON) into our config.
pub fn import(text: &str) -> Result<Imported, ImportError> {
    let doc: Value = serde_norway::from_str(text).map_err(|e| ImportError::Yaml(e.to_string()))?;
    let mut w = Walker::default();
    let mut root = Obj::new(&doc, String::new(), &mut w).ok_or(ImportError::NotAMapping)?;
    let mut config = Config::default();

    if let Some((v, path)) = root.take("admin")
        && let Some(mut admin) = Obj::new(v, path, &mut w)
    {
        if let Some((a, apath)) = admin.take("address")
            && let Some(address) = socket_address(&mut w, a, apath)
        {
            config.admin = Admin { address };
        }
        admin.done(&mut w);
    }
    if let Some((v, path)) = root.take("static_resources")
        && let Some(mut sr) = Obj::new(v, path, &mut w)
    {
        // Clusters first: routes refer to them, and a route's hash policy lands on one.
        if let Some((cs, cpath)) = sr.take("clusters") {
            for (i, c) in items(&mut w, cs, &cpath) {
                if let Some(cluster) = w.cluster(c, format!("{cpath}[{i}]")) {
                    config.clusters.push(cluster);
                }
            }
        }
        if let Some((ls, lpath)) = sr.take("listeners") {
            for (i, l) in items(&mut w, ls, &lpath) {
                if let Some(listener) = w.listener(l, format!("{lpath}[{i}]"), &mut config) {
                    config.listeners.push(listener);
                }
            }
        }
        sr.done(&mut w);
    }
    root.done(&mut w);

    for (cluster, (header, path)) in std::mem::take(&mut w.hash_headers) {
        match config.clusters.iter_mut().find(|c| c.name == cluster) {
            Some(c) if c.lb_policy == LbPolicy::RingHash => {
                c.hash_policy = Some(HashPolicy { header })
            }
            _ => w.note(
                path,
                format!(
                    "cluster {cluster:?} does not use RING_HASH or MAGLEV: hash policy ignored"
                ),
            ),
        }
    }
    // A ring-hash cluster no route hashes for cannot work here; round robin is the honest fallback.
    for (i, c) in config.clusters.iter_mut().enumerate() {
        if c.lb_policy == LbPolicy::RingHash && c.hash_policy.is_none() {
            c.lb_policy = LbPolicy::RoundRobin;
            w.note(
                format!("static_resources.clusters[{i}].lb_policy"),
                "no route hashes on a header for this cluster: round_robin used instead",
            );
        }
    }
    drop_dangling(&mut config, &mut w);
    if config.listeners.is_empty() {
        return Err(ImportError::NoListener);
    }
    // Document paths in order, indices numerically: a report that reads top to bottom.
    let mut unmapped = w.unmapped;
    unmapped.sort_by_cached_key(|u| path_key(&u.path));
    Ok(Imported { config, unmapped })
}

/// A path as segments, list indices as numbers, so `[10]` sorts after `[9]`.
fn path_key(path: &str) -> Vec<(String, u64)> {
    path.split(['.', '['])
        .map(
            |seg| match seg.strip_suffix(']').and_then(|n| n.parse().ok()) {
                Some(n) => (String::new(), n),
                None => (seg.to_owned(), 0),
            },
        )
        .collect()
}

/// Routes and TCP listeners whose cluster was not converted cannot work: they go too, each
/// reported, and so does a listener left without routes.
fn drop_dangling(config: &mut Config, w: &mut Walker) {
    let clusters: std::collections::HashSet<String> =
        config.clusters.iter().map(|c| c.name.clone()).collect();
    let missing = |name: &str| !clusters.contains(name);
    config.listeners.retain_mut(|l| {
        let lpath = w.listener_paths.get(&l.name).cloned().unwrap_or_default();
        if let Some(c) = &l.cluster {
            if missing(c) {
                w.note(
                    lpath,
                    format!("cluster {c:?} was not converted: listener skipped"),
                );
                return false;
            }
            return true;
        }
        l.routes.retain(|r| {
            let gone: Vec<&str> = r
                .cluster
                .iter()
                .map(String::as_str)
                .chain(r.weighted_clusters.iter().map(|wc| wc.name.as_str()))
                .filter(|c| missing(c))
                .collect();
            if gone.is_empty() {
                return true;
            }
            let rpath = w
                .origins
                .get(&(l.name.clone(), r.name.clone()))
                .cloned()
                .unwrap_or_else(|| lpath.clone());
            w.note(
                rpath,
                format!("cluster {:?} was not converted: route skipped", gone[0]),
            );
            false
        });
        if l.routes.is_empty() {
            w.note(lpath, "no route left: listener skipped");
            return false;
        }
        true
    });
}

/// Collects the report while the document is walked.
#[derive(Default)]
struct Walker {
    unmapped: Vec<Unmapped>,
    /// cluster -> (header, path of the route hash_policy that named it)
    hash_headers: BTreeMap<String, (String, String)>,
    /// (listener, route) -> the route's path in the Envoy document.
    origins: BTreeMap<(String, String), String>,
    /// listener -> its path in the Envoy document.
    listener_paths: BTreeMap<String, String>,
}

impl Walker {
    fn note(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.unmapped.push(Unmapped {
            path: path.into(),
            message: message.into(),
        });
    }

    fn listener(&mut self, v: &Value, path: String, config: &mut Config) -> Option<Listener> {
        let mut o = Obj::new(v, path.clone(), self)?;
        let name = o.name(self, "listener", &path);
        let address = match o.take("address") {
            Some((a, apath)) => socket_address(self, a, apath),
            None => {
                self.note(&path, "listener has no address: skipped");
                None
            }
        };
        self.listener_paths.insert(name.clone(), path.clone());
        let has_address = address.is_some();
        let mut listener = Listener {
            name,
            address: address.unwrap_or_default(),
            protocol: ListenerProtocol::Auto,
            routes: Vec::new(),
            cluster: None,
            idle_timeout: Dur::secs(300),
            request_header_timeout: Dur::secs(10),
            max_request_headers_size: Size::kib(60),
            max_request_headers: 100,
            max_concurrent_streams: 256,
            traffic_direction: Default::default(),
            mtls: None,
            intercept: None,
            protocol_detection_timeout: crate::config::intercept::default_detect_timeout(),
            opaque_ports: crate::config::intercept::default_opaque_ports(),
        };
        let mut converted = false;
        if let Some((chains, cpath)) = o.take("filter_chains") {
            for (i, chain) in items(self, chains, &cpath) {
                let chain_path = format!("{cpath}[{i}]");
                if converted {
                    self.note(
                        chain_path,
                        "only the first filter chain is converted (no filter_chain_match)",
                    );
                    continue;
                }
                converted = self.filter_chain(chain, chain_path, &mut listener, config);
            }
        }
        o.done(self);
        if !has_address || !converted {
            if has_address {
                self.note(
                    &path,
                    "no filter chain could be converted (one with an http_connection_manager or tcp_proxy filter): listener skipped",
                );
            }
            return None;
        }
        Some(listener)
    }

    /// Converts the chain's network filters into the listener; false when none converted.
    fn filter_chain(
        &mut self,
        v: &Value,
        path: String,
        listener: &mut Listener,
        config: &mut Config,
    ) -> bool {
        let Some(mut o) = Obj::new(v, path, self) else {
            return false;
        };
        if let Some((_, tpath)) = o.take("transport_socket") {
            // Serving in plain text what was meant to be TLS would be worse than not serving.
            self.note(
                tpath,
                "TLS termination is not supported: filter chain skipped",
            );
            o.take_all();
            return false;
        }
        let mut converted = false;
        if let Some((filters, fpath)) = o.take("filters") {
            for (i, f) in items(self, filters, &fpath) {
                let path = format!("{fpath}[{i}]");
                let Some(mut fo) = Obj::new(f, path.clone(), self) else {
                    continue;
                };
                let name = fo.take_str(self, "name").unwrap_or_default();
                let typed = fo.take("typed_config");
                let type_url = typed
                    .as_ref()
                    .and_then(|(t, _)| t.get("@type"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let kind = if type_url.ends_with(".HttpConnectionManager")
                    || name == "envoy.filters.network.http_connection_manager"
                {
                    Some(true)
                } else if type_url.ends_with(".TcpProxy")
                    || name == "envoy.filters.network.tcp_proxy"
                {
                    Some(false)
                } else {
                    None
                };
                match (kind, typed) {
                    (Some(_), _) if converted => {
                        self.note(path, "a second terminal filter is not supported")
                    }
                    (Some(true), Some((t, tpath))) => {
                        converted = self.http_connection_manager(t, tpath, listener, config)
                    }
                    (Some(false), Some((t, tpath))) => {
                        converted = self.tcp_proxy(t, tpath, listener, config)
                    }
                    (Some(_), None) => self.note(path, "filter without typed_config"),
                    (None, _) => self.note(
                        path,
                        format!("{} is not supported", display_name(&name, type_url)),
                    ),
                }
                fo.done(self);
            }
        }
        o.done(self);
        converted
    }

    fn tcp_proxy(
        &mut self,
        v: &Value,
        path: String,
        listener: &mut Listener,
        config: &mut Config,
    ) -> bool {
        let Some(mut o) = Obj::new(v, path.clone(), self) else {
            return false;
        };
        o.take("@type");
        o.take_quiet("stat_prefix");
        listener.protocol = ListenerProtocol::Tcp;
        if let Some(d) = o.take_duration(self, "idle_timeout") {
            listener.idle_timeout = nonzero_or(d, Dur::secs(86_400));
        }
        if let Some((a, apath)) = o.take("access_log") {
            self.access_logs(a, apath, config);
        }
        listener.cluster = o.take_str(self, "cluster");
        o.done(self);
        if listener.cluster.is_none() {
            self.note(path, "tcp_proxy without a cluster: listener skipped");
            return false;
        }
        true
    }

    fn http_connection_manager(
        &mut self,
        v: &Value,
        path: String,
        listener: &mut Listener,
        config: &mut Config,
    ) -> bool {
        let Some(mut o) = Obj::new(v, path.clone(), self) else {
            return false;
        };
        o.take("@type");
        o.take_quiet("stat_prefix");
        if let Some(codec) = o.take_str(self, "codec_type") {
            listener.protocol = match codec.as_str() {
                "AUTO" => ListenerProtocol::Auto,
                "HTTP1" => ListenerProtocol::Http1,
                "HTTP2" => ListenerProtocol::Http2,
                other => {
                    self.note(
                        format!("{path}.codec_type"),
                        format!("{other} is not supported; auto used"),
                    );
                    ListenerProtocol::Auto
                }
            };
        }
        if let Some((c, cpath)) = o.take("common_http_protocol_options")
            && let Some(mut co) = Obj::new(c, cpath, self)
        {
            if let Some(d) = co.take_duration(self, "idle_timeout") {
                listener.idle_timeout = nonzero_or(d, Dur::secs(86_400));
            }
            if let Some(n) = co.take_u64(self, "max_headers_count") {
                listener.max_request_headers = n as usize;
            }
            co.done(self);
        }
        if let Some(kb) = o.take_u64(self, "max_request_headers_kb") {
            listener.max_request_headers_size = Size::kib(kb);
        }
        if let Some(d) = o.take_duration(self, "request_headers_timeout") {
            listener.request_header_timeout = nonzero_or(d, Dur::secs(3600));
        }
        if let Some((h2, hpath)) = o.take("http2_protocol_options")
            && let Some(mut ho) = Obj::new(h2, hpath, self)
        {
            if let Some(n) = ho.take_u64(self, "max_concurrent_streams") {
                listener.max_concurrent_streams = u32::try_from(n).unwrap_or(u32::MAX);
            }
            ho.done(self);
        }
        if let Some((a, apath)) = o.take("access_log") {
            self.access_logs(a, apath, config);
        }
        if let Some((filters, fpath)) = o.take("http_filters") {
            for (i, f) in items(self, filters, &fpath) {
                let fpath = format!("{fpath}[{i}]");
                let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                let type_url = f
                    .get("typed_config")
                    .and_then(|t| t.get("@type"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if name == "envoy.filters.http.router" || type_url.ends_with("router.v3.Router") {
                    // Routing is what the sidecar does; the router has nothing else to map.
                    continue;
                }
                self.note(
                    fpath,
                    format!("{} is not supported", display_name(name, type_url)),
                );
            }
        }
        let mut routed = false;
        if let Some((rc, rpath)) = o.take("route_config")
            && let Some(mut ro) = Obj::new(rc, rpath, self)
        {
            ro.take_quiet("name");
            if let Some((vhs, vpath)) = ro.take("virtual_hosts") {
                let mut vhosts: Vec<(usize, &Value)> = items(self, vhs, &vpath);
                // Envoy picks the most specific domain; "*" is the catch-all, so it goes last.
                vhosts.sort_by_key(|(_, vh)| {
                    vh.get("domains")
                        .and_then(Value::as_array)
                        .is_some_and(|d| d.iter().any(|x| x.as_str() == Some("*")))
                });
                for (i, vh) in vhosts {
                    self.virtual_host(vh, format!("{vpath}[{i}]"), listener);
                }
            }
            ro.done(self);
            routed = !listener.routes.is_empty();
        }
        o.done(self);
        if !routed {
            self.note(path, "no route could be converted: listener skipped");
        }
        routed
    }

    fn access_logs(&mut self, v: &Value, path: String, config: &mut Config) {
        for (i, a) in items(self, v, &path) {
            let apath = format!("{path}[{i}]");
            let file = a
                .get("typed_config")
                .filter(|t| {
                    t.get("@type")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u.ends_with(".FileAccessLog"))
                })
                .and_then(|t| t.get("path"))
                .and_then(Value::as_str);
            let stdout = a
                .get("typed_config")
                .and_then(|t| t.get("@type"))
                .and_then(Value::as_str)
                .is_some_and(|u| u.ends_with(".StdoutAccessLog"));
            let target = match (file, stdout) {
                (Some("/dev/stdout"), _) | (None, true) => "stdout",
                (Some("/dev/stderr"), _) => "stderr",
                (Some(p), _) => p,
                (None, false) => {
                    self.note(apath, "only file and stdout access logs are supported");
                    continue;
                }
            };
            if config.access_log.is_some() {
                self.note(apath, "one access log per sidecar: this one is not used");
                continue;
            }
            config.access_log = Some(crate::config::AccessLog {
                path: target.to_owned(),
            });
            let extra: Vec<&str> = a
                .get("typed_config")
                .and_then(Value::as_object)
                .map(|t| {
                    t.keys()
                        .map(String::as_str)
                        .filter(|k| !matches!(*k, "@type" | "path"))
                        .collect()
                })
                .unwrap_or_default();
            for k in extra {
                self.note(
                    format!("{apath}.typed_config.{k}"),
                    "not supported: the access log is always one JSON object per line",
                );
            }
            if let Some(keys) = a.as_object() {
                for k in keys
                    .keys()
                    .filter(|k| !matches!(k.as_str(), "name" | "typed_config"))
                {
                    self.note(format!("{apath}.{k}"), "not supported");
                }
            }
        }
    }

    fn virtual_host(&mut self, v: &Value, path: String, listener: &mut Listener) {
        let Some(mut o) = Obj::new(v, path.clone(), self) else {
            return;
        };
        let vname = o.take_str(self, "name").unwrap_or_else(|| "vhost".into());
        let domains: Vec<String> = o
            .take("domains")
            .map(|(d, dpath)| strings(self, d, &dpath))
            .unwrap_or_default();
        let hosts: Vec<String> = if domains.iter().any(|d| d == "*") {
            Vec::new()
        } else {
            domains
                .iter()
                .map(|d| match d.rsplit_once(':') {
                    // Our host match compares the host without its port.
                    Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
                    _ => d.clone(),
                })
                // `api.test` and `api.test:8080` are one host once the port is gone.
                .fold(Vec::new(), |mut hosts, h| {
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                    hosts
                })
        };
        let headers = self.header_rewrites(&mut o);
        let vh_retry = o
            .take("retry_policy")
            .and_then(|(r, rpath)| self.retry_policy(r, rpath));
        let first = listener.routes.len();
        if let Some((routes, rpath)) = o.take("routes") {
            for (i, r) in items(self, routes, &rpath) {
                let path = format!("{rpath}[{i}]");
                if let Some(route) = self.route(r, path.clone(), &vname, i, &hosts) {
                    self.origins
                        .insert((listener.name.clone(), route.name.clone()), path);
                    listener.routes.push(route);
                }
            }
        }
        for r in &mut listener.routes[first..] {
            // Envoy applies the route's header changes, then the virtual host's.
            r.request_headers_to_add
                .extend(headers.req_add.iter().cloned());
            r.request_headers_to_remove
                .extend(headers.req_remove.iter().cloned());
            r.response_headers_to_add
                .extend(headers.resp_add.iter().cloned());
            r.response_headers_to_remove
                .extend(headers.resp_remove.iter().cloned());
            if r.retry_policy.is_none() {
                r.retry_policy = vh_retry.clone();
            }
        }
        o.done(self);
    }

    fn header_rewrites(&mut self, o: &mut Obj<'_>) -> HeaderRewrites {
        let mut h = HeaderRewrites::default();
        if let Some((v, p)) = o.take("request_headers_to_add") {
            h.req_add = self.header_value_options(v, &p);
        }
        if let Some((v, p)) = o.take("request_headers_to_remove") {
            h.req_remove = strings(self, v, &p);
        }
        if let Some((v, p)) = o.take("response_headers_to_add") {
            h.resp_add = self.header_value_options(v, &p);
        }
        if let Some((v, p)) = o.take("response_headers_to_remove") {
            h.resp_remove = strings(self, v, &p);
        }
        h
    }

    fn header_value_options(&mut self, v: &Value, path: &str) -> Vec<HeaderValueOption> {
        let mut out = Vec::new();
        for (i, item) in items(self, v, path) {
            let Some(mut o) = Obj::new(item, format!("{path}[{i}]"), self) else {
                continue;
            };
            // Envoy's default is to append (APPEND_IF_EXISTS_OR_ADD).
            let mut append = true;
            if let Some(a) = o.take_bool(self, "append") {
                append = a;
            }
            if let Some(action) = o.take_str(self, "append_action") {
                match action.as_str() {
                    "APPEND_IF_EXISTS_OR_ADD" => append = true,
                    "OVERWRITE_IF_EXISTS_OR_ADD" => append = false,
                    other => {
                        self.note(
                            format!("{path}[{i}].append_action"),
                            format!("{other} is not supported: header not added"),
                        );
                        o.take_quiet("header");
                        o.done(self);
                        continue;
                    }
                }
            }
            if let Some((hv, hpath)) = o.take("header")
                && let Some(mut ho) = Obj::new(hv, hpath, self)
            {
                let name = ho.take_str(self, "key");
                let value = ho.take_str(self, "value").unwrap_or_default();
                if let Some(name) = name {
                    out.push(HeaderValueOption {
                        name,
                        value,
                        append,
                    });
                }
                ho.done(self);
            }
            o.done(self);
        }
        out
    }

    fn route(
        &mut self,
        v: &Value,
        path: String,
        vhost: &str,
        index: usize,
        hosts: &[String],
    ) -> Option<Route> {
        let mut o = Obj::new(v, path.clone(), self)?;
        let name = match o.take_str(self, "name") {
            Some(n) => sanitize(&n),
            None => sanitize(&format!("{vhost}-{index}")),
        };
        let mut matcher = RouteMatch {
            hosts: hosts.to_vec(),
            ..RouteMatch::default()
        };
        if let Some((m, mpath)) = o.take("match")
            && let Some(mut mo) = Obj::new(m, mpath.clone(), self)
        {
            matcher.prefix = mo.take_str(self, "prefix");
            matcher.path = mo.take_str(self, "path");
            if let Some((re, repath)) = mo.take("safe_regex") {
                matcher.regex = self.regex(re, repath);
            }
            if let Some((hs, hpath)) = mo.take("headers") {
                for (i, h) in items(self, hs, &hpath) {
                    if let Some(hm) = self.header_matcher(h, format!("{hpath}[{i}]")) {
                        matcher.headers.push(hm);
                    }
                }
            }
            if mo.take_bool(self, "case_sensitive") == Some(false) {
                self.note(
                    format!("{mpath}.case_sensitive"),
                    "case-insensitive path matching is not supported: matched case-sensitively",
                );
            }
            mo.done(self);
        }
        let headers = self.header_rewrites(&mut o);
        let mut route = Route {
            name,
            matcher,
            cluster: None,
            weighted_clusters: Vec::new(),
            timeout: Dur::secs(15),
            request_headers_to_add: headers.req_add,
            request_headers_to_remove: headers.req_remove,
            response_headers_to_add: headers.resp_add,
            response_headers_to_remove: headers.resp_remove,
            retry_policy: None,
            fault: None,
            request_mirror_policies: Vec::new(),
            hash_policy: None,
            rate_limits: Vec::new(),
            prefix_rewrite: None,
            host_rewrite_literal: None,
            local_rate_limit: None,
        };
        let Some((action, apath)) = o.take("route") else {
            o.done(self);
            self.note(
                path,
                "only routes with a `route` action (cluster or weighted_clusters) are supported: route skipped",
            );
            return None;
        };
        let mut ao = Obj::new(action, apath.clone(), self)?;
        route.cluster = ao.take_str(self, "cluster");
        if let Some((wc, wpath)) = ao.take("weighted_clusters")
            && let Some(mut wo) = Obj::new(wc, wpath, self)
        {
            if let Some((cs, cpath)) = wo.take("clusters") {
                for (i, c) in items(self, cs, &cpath) {
                    let Some(mut co) = Obj::new(c, format!("{cpath}[{i}]"), self) else {
                        continue;
                    };
                    let name = co.take_str(self, "name");
                    let weight = co.take_u64(self, "weight").unwrap_or(0);
                    if let Some(name) = name {
                        route.weighted_clusters.push(WeightedCluster {
                            name,
                            weight: u32::try_from(weight).unwrap_or(u32::MAX),
                        });
                    }
                    co.done(self);
                }
            }
            // Our weights are relative: the total needs no statement.
            wo.take_quiet("total_weight");
            wo.done(self);
        }
        if let Some(p) = ao.take_str(self, "prefix_rewrite") {
            if route.matcher.prefix.is_some() {
                route.prefix_rewrite = Some(p);
            } else {
                self.note(
                    format!("{apath}.prefix_rewrite"),
                    "only a route matching on `prefix` can rewrite it: not converted",
                );
            }
        }
        route.host_rewrite_literal = ao.take_str(self, "host_rewrite_literal");
        if let Some(d) = ao.take_duration(self, "timeout") {
            route.timeout = if d.get().is_zero() {
                self.note(
                    format!("{apath}.timeout"),
                    "0s (no timeout) is not supported: 24h used",
                );
                Dur::secs(86_400)
            } else {
                d
            };
        }
        if let Some((r, rpath)) = ao.take("retry_policy") {
            route.retry_policy = self.retry_policy(r, rpath);
        }
        if let Some((hp, hpath)) = ao.take("hash_policy") {
            for (i, h) in items(self, hp, &hpath) {
                let ipath = format!("{hpath}[{i}]");
                let header = h
                    .get("header")
                    .and_then(|x| x.get("header_name"))
                    .and_then(Value::as_str);
                let only_header = h.as_object().is_some_and(|m| m.len() == 1)
                    && h.get("header")
                        .and_then(Value::as_object)
                        .is_some_and(|m| m.len() == 1);
                match (header, route.cluster.clone(), i, only_header) {
                    (Some(hn), Some(c), 0, true) => {
                        self.hash_headers
                            .entry(c)
                            .or_insert((hn.to_ascii_lowercase(), ipath));
                    }
                    _ => self.note(
                        ipath,
                        "only one hash policy on a header (of a route to one cluster) is supported",
                    ),
                }
            }
        }
        if route.cluster.is_none() && route.weighted_clusters.is_empty() {
            self.note(
                &apath,
                "no cluster or weighted_clusters (cluster_header is not supported): route skipped",
            );
            ao.done(self);
            o.done(self);
            return None;
        }
        ao.done(self);
        o.done(self);
        Some(route)
    }

    fn regex(&mut self, v: &Value, path: String) -> Option<String> {
        let mut o = Obj::new(v, path, self)?;
        // The RE2 engine settings have no meaning for the regex crate (also linear time).
        o.take_quiet("google_re2");
        let re = o.take_str(self, "regex");
        o.done(self);
        re
    }

    fn header_matcher(&mut self, v: &Value, path: String) -> Option<HeaderMatch> {
        let mut o = Obj::new(v, path.clone(), self)?;
        let mut m = HeaderMatch {
            name: o.take_str(self, "name")?,
            ..HeaderMatch::default()
        };
        m.exact = o.take_str(self, "exact_match");
        if let Some(p) = o.take_str(self, "prefix_match") {
            m.prefix = Some(p);
        }
        if let Some((re, rpath)) = o.take("safe_regex_match") {
            m.regex = self.regex(re, rpath);
        }
        if let Some(p) = o.take_bool(self, "present_match") {
            m.present = Some(p);
        }
        if let Some(i) = o.take_bool(self, "invert_match") {
            m.invert = i;
        }
        if let Some((sm, spath)) = o.take("string_match")
            && let Some(mut so) = Obj::new(sm, spath, self)
        {
            m.exact = so.take_str(self, "exact").or(m.exact);
            m.prefix = so.take_str(self, "prefix").or(m.prefix);
            if let Some((re, rpath)) = so.take("safe_regex") {
                m.regex = self.regex(re, rpath);
            }
            so.done(self);
        }
        o.done(self);
        if m.exact.is_none() && m.prefix.is_none() && m.regex.is_none() && m.present.is_none() {
            self.note(path, "no supported condition: header match dropped");
            return None;
        }
        Some(m)
    }

    fn retry_policy(&mut self, v: &Value, path: String) -> Option<RetryPolicy> {
        let mut o = Obj::new(v, path.clone(), self)?;
        let mut p = RetryPolicy {
            // Envoy's default; ours is 2.
            num_retries: 1,
            retry_on: Vec::new(),
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            per_try_timeout: None,
            retry_back_off: RetryBackOff::default(),
            max_retry_after: Dur::secs(5),
            retry_non_idempotent: false,
            per_request_buffer_limit: Size::kib(64),
        };
        if let Some(on) = o.take_str(self, "retry_on") {
            for cond in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match RetryOn::ALL.iter().find(|r| r.as_str() == cond) {
                    Some(r) => p.retry_on.push(*r),
                    None => self.note(
                        format!("{path}.retry_on"),
                        format!("condition {cond:?} is not supported"),
                    ),
                }
            }
        }
        if let Some(n) = o.take_u64(self, "num_retries") {
            p.num_retries = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(d) = o.take_duration(self, "per_try_timeout") {
            p.per_try_timeout = (!d.get().is_zero()).then_some(d);
        }
        if let Some((codes, cpath)) = o.take("retriable_status_codes") {
            for (i, c) in items(self, codes, &cpath) {
                match c.as_u64().and_then(|c| u16::try_from(c).ok()) {
                    Some(c) => p.retriable_status_codes.push(c),
                    None => self.note(format!("{cpath}[{i}]"), "expected a status code"),
                }
            }
        }
        if let Some((hs, hpath)) = o.take("retriable_headers") {
            for (i, h) in items(self, hs, &hpath) {
                if let Some(m) = self.header_matcher(h, format!("{hpath}[{i}]")) {
                    p.retriable_headers.push(m);
                }
            }
        }
        if let Some((b, bpath)) = o.take("retry_back_off")
            && let Some(mut bo) = Obj::new(b, bpath, self)
        {
            if let Some(d) = bo.take_duration(self, "base_interval") {
                p.retry_back_off.base_interval = d;
            }
            p.retry_back_off.max_interval = bo.take_duration(self, "max_interval");
            bo.done(self);
        }
        o.done(self);
        if p.retry_on.is_empty() {
            self.note(
                path,
                "no supported retry_on condition: route does not retry",
            );
            return None;
        }
        Some(p)
    }

    fn cluster(&mut self, v: &Value, path: String) -> Option<Cluster> {
        let mut o = Obj::new(v, path.clone(), self)?;
        let name = o.name(self, "cluster", &path);
        let mut c = Cluster {
            name,
            discovery: Discovery::Static,
            dns_refresh_rate: Dur::secs(5),
            endpoints: Vec::new(),
            lb_policy: LbPolicy::RoundRobin,
            hash_policy: None,
            // Envoy's default connect_timeout.
            connect_timeout: Dur::secs(5),
            protocol: UpstreamProtocol::Http1,
            max_idle_connections: 64,
            idle_timeout: Dur::secs(60),
            retry_budget: crate::config::RetryBudget::default(),
            circuit_breakers: None,
            outlier_detection: None,
            error_rate_breaker: None,
            health_checks: None,
            healthy_panic_threshold: 50,
            mtls: None,
            tls: None,
        };
        match o.take_str(self, "type").as_deref() {
            None | Some("STATIC") => {}
            Some("STRICT_DNS" | "LOGICAL_DNS") => c.discovery = Discovery::Dns,
            Some(other) => {
                self.note(
                    format!("{path}.type"),
                    format!("{other} is not supported: cluster skipped"),
                );
                o.take_quiet("load_assignment");
                o.done(self);
                return None;
            }
        }
        if let Some(d) = o.take_duration(self, "connect_timeout") {
            c.connect_timeout = nonzero_or(d, Dur::secs(5));
        }
        if let Some(d) = o.take_duration(self, "dns_refresh_rate") {
            c.dns_refresh_rate = nonzero_or(d, Dur::secs(5));
        }
        if let Some(lb) = o.take_str(self, "lb_policy") {
            c.lb_policy = match lb.as_str() {
                "ROUND_ROBIN" => LbPolicy::RoundRobin,
                "LEAST_REQUEST" => LbPolicy::LeastRequest,
                "RANDOM" => LbPolicy::Random,
                "RING_HASH" | "MAGLEV" => LbPolicy::RingHash,
                other => {
                    self.note(
                        format!("{path}.lb_policy"),
                        format!("{other} is not supported: round_robin used"),
                    );
                    LbPolicy::RoundRobin
                }
            };
        }
        if let Some((la, lpath)) = o.take("load_assignment") {
            self.load_assignment(la, lpath, &mut c);
        }
        if let Some((cb, cbpath)) = o.take("circuit_breakers") {
            c.circuit_breakers = self.circuit_breakers(cb, cbpath);
        }
        if let Some((od, odpath)) = o.take("outlier_detection") {
            c.outlier_detection = self.outlier_detection(od, odpath);
        }
        if let Some((hc, hcpath)) = o.take("health_checks") {
            for (i, h) in items(self, hc, &hcpath) {
                let hpath = format!("{hcpath}[{i}]");
                if c.health_checks.is_some() {
                    self.note(hpath, "only the first health check is converted");
                    continue;
                }
                c.health_checks = self.health_check(h, hpath);
            }
        }
        if o.take("http2_protocol_options").is_some() {
            c.protocol = UpstreamProtocol::Http2;
        }
        if let Some((tepo, tpath)) = o.take("typed_extension_protocol_options")
            && let Some(mut to) = Obj::new(tepo, tpath, self)
        {
            let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
            if let Some((hpo, hpath)) = to.take(key) {
                self.http_protocol_options(hpo, hpath, &mut c);
            }
            to.done(self);
        }
        if let Some((_, tpath)) = o.take("transport_socket") {
            // Sending in plain text what was meant to be encrypted would leak it.
            self.note(tpath, "TLS to upstreams is not supported: cluster skipped");
            o.take_all();
            o.done(self);
            return None;
        }
        if let Some((cl, clpath)) = o.take("common_lb_config")
            && let Some(mut co) = Obj::new(cl, clpath, self)
        {
            if let Some((t, _)) = co.take("healthy_panic_threshold") {
                let pct = t.get("value").and_then(Value::as_f64).unwrap_or(50.0);
                c.healthy_panic_threshold = pct.clamp(0.0, 100.0).round() as u32;
            }
            co.done(self);
        }
        o.done(self);
        if c.endpoints.is_empty() {
            self.note(path, "no endpoint could be converted: cluster skipped");
            return None;
        }
        Some(c)
    }

    fn http_protocol_options(&mut self, v: &Value, path: String, c: &mut Cluster) {
        let Some(mut o) = Obj::new(v, path, self) else {
            return;
        };
        o.take("@type");
        if let Some((e, epath)) = o.take("explicit_http_config")
            && let Some(mut eo) = Obj::new(e, epath, self)
        {
            if let Some((h2, h2path)) = eo.take("http2_protocol_options") {
                c.protocol = UpstreamProtocol::Http2;
                if let Some(ho) = Obj::new(h2, h2path, self) {
                    ho.done(self);
                }
            }
            if let Some((h1, h1path)) = eo.take("http_protocol_options") {
                c.protocol = UpstreamProtocol::Http1;
                if let Some(ho) = Obj::new(h1, h1path, self) {
                    ho.done(self);
                }
            }
            eo.done(self);
        }
        if let Some((co, cpath)) = o.take("common_http_protocol_options")
            && let Some(mut co) = Obj::new(co, cpath, self)
        {
            if let Some(d) = co.take_duration(self, "idle_timeout") {
                c.idle_timeout = nonzero_or(d, Dur::secs(3600));
            }
            co.done(self);
        }
        o.done(self);
    }

    fn load_assignment(&mut self, v: &Value, path: String, c: &mut Cluster) {
        let Some(mut o) = Obj::new(v, path, self) else {
            return;
        };
        o.take_quiet("cluster_name");
        if let Some((eps, epath)) = o.take("endpoints") {
            for (i, locality) in items(self, eps, &epath) {
                let Some(mut lo) = Obj::new(locality, format!("{epath}[{i}]"), self) else {
                    continue;
                };
                if let Some(p) = lo.take_u64(self, "priority")
                    && p > 0
                {
                    self.note(
                        format!("{epath}[{i}].priority"),
                        "priorities are not supported: endpoints used at priority 0",
                    );
                }
                if let Some((lbs, lbpath)) = lo.take("lb_endpoints") {
                    for (j, lb) in items(self, lbs, &lbpath) {
                        let Some(mut lbo) = Obj::new(lb, format!("{lbpath}[{j}]"), self) else {
                            continue;
                        };
                        let weight = lbo.take_u64(self, "load_balancing_weight").unwrap_or(1);
                        if let Some((e, e_path)) = lbo.take("endpoint")
                            && let Some(mut eo) = Obj::new(e, e_path, self)
                        {
                            if let Some((a, apath)) = eo.take("address")
                                && let Some(address) = socket_address(self, a, apath)
                            {
                                c.endpoints.push(Endpoint {
                                    address,
                                    weight: u32::try_from(weight).unwrap_or(u32::MAX),
                                });
                            }
                            eo.done(self);
                        }
                        lbo.done(self);
                    }
                }
                lo.done(self);
            }
        }
        o.done(self);
    }

    fn circuit_breakers(&mut self, v: &Value, path: String) -> Option<CircuitBreakers> {
        let mut o = Obj::new(v, path, self)?;
        let mut out = None;
        if let Some((ts, tpath)) = o.take("thresholds") {
            for (i, t) in items(self, ts, &tpath) {
                let ipath = format!("{tpath}[{i}]");
                let Some(mut to) = Obj::new(t, ipath.clone(), self) else {
                    continue;
                };
                match to.take_str(self, "priority").as_deref() {
                    None | Some("DEFAULT") => {}
                    Some(other) => {
                        self.note(
                            ipath,
                            format!(
                                "only DEFAULT priority is supported: {other} thresholds dropped"
                            ),
                        );
                        to.take_all();
                        continue;
                    }
                }
                let mut cb = CircuitBreakers::default();
                let set = |n: Option<u64>, f: &mut u32| {
                    if let Some(n) = n {
                        *f = u32::try_from(n).unwrap_or(u32::MAX);
                    }
                };
                set(
                    to.take_u64(self, "max_connections"),
                    &mut cb.max_connections,
                );
                set(
                    to.take_u64(self, "max_pending_requests"),
                    &mut cb.max_pending_requests,
                );
                set(to.take_u64(self, "max_requests"), &mut cb.max_requests);
                set(to.take_u64(self, "max_retries"), &mut cb.max_retries);
                to.done(self);
                out = Some(cb);
            }
        }
        o.done(self);
        out
    }

    fn outlier_detection(&mut self, v: &Value, path: String) -> Option<OutlierDetection> {
        let mut o = Obj::new(v, path, self)?;
        let mut od = OutlierDetection::default();
        let count = |o: &mut Obj<'_>, w: &mut Walker, key: &'static str, f: &mut u32| {
            if let Some(n) = o.take_u64(w, key) {
                *f = u32::try_from(n).unwrap_or(u32::MAX);
            }
        };
        count(&mut o, self, "consecutive_5xx", &mut od.consecutive_5xx);
        count(
            &mut o,
            self,
            "consecutive_gateway_failure",
            &mut od.consecutive_gateway_failure,
        );
        count(
            &mut o,
            self,
            "consecutive_local_origin_failure",
            &mut od.consecutive_local_origin_failure,
        );
        count(
            &mut o,
            self,
            "max_ejection_percent",
            &mut od.max_ejection_percent,
        );
        count(
            &mut o,
            self,
            "success_rate_minimum_hosts",
            &mut od.success_rate_minimum_hosts,
        );
        count(
            &mut o,
            self,
            "success_rate_request_volume",
            &mut od.success_rate_request_volume,
        );
        count(
            &mut o,
            self,
            "success_rate_stdev_factor",
            &mut od.success_rate_stdev_factor,
        );
        for (key, f) in [
            ("interval", &mut od.interval),
            ("base_ejection_time", &mut od.base_ejection_time),
            ("max_ejection_time", &mut od.max_ejection_time),
        ] {
            if let Some(d) = o.take_duration(self, key) {
                *f = d;
            }
        }
        o.done(self);
        Some(od)
    }

    fn health_check(&mut self, v: &Value, path: String) -> Option<HealthChecks> {
        let mut o = Obj::new(v, path, self)?;
        let mut hc = HealthChecks::default();
        if let Some(d) = o.take_duration(self, "timeout") {
            hc.timeout = d;
        }
        if let Some(d) = o.take_duration(self, "interval") {
            hc.interval = d;
        }
        for (key, f) in [
            ("healthy_threshold", &mut hc.healthy_threshold),
            ("unhealthy_threshold", &mut hc.unhealthy_threshold),
        ] {
            // Envoy writes these as wrapped integers ({value: N}) or bare ones.
            if let Some((t, tpath)) = o.take(key) {
                match t.get("value").unwrap_or(t).as_u64() {
                    Some(n) => *f = u32::try_from(n).unwrap_or(u32::MAX),
                    None => self.note(tpath, "expected a count"),
                }
            }
        }
        if let Some((h, hpath)) = o.take("http_health_check")
            && let Some(mut ho) = Obj::new(h, hpath.clone(), self)
        {
            let path = ho.take_str(self, "path").unwrap_or_else(|| "/".into());
            let mut expected = Vec::new();
            if let Some((es, espath)) = ho.take("expected_statuses") {
                for (i, r) in items(self, es, &espath) {
                    let start = r.get("start").and_then(Value::as_u64);
                    let end = r.get("end").and_then(Value::as_u64);
                    match (start, end) {
                        // Envoy's ranges are half-open: [start, end).
                        (Some(s), Some(e)) if s >= 100 && e <= 600 && s < e => {
                            expected.extend((s..e).filter_map(|c| u16::try_from(c).ok()))
                        }
                        _ => self.note(
                            format!("{espath}[{i}]"),
                            "expected a range {start, end} within 100..600",
                        ),
                    }
                }
            }
            hc.http_health_check = Some(HttpHealthCheck {
                path,
                expected_statuses: expected,
            });
            ho.done(self);
        }
        if let Some((t, tpath)) = o.take("tcp_health_check")
            && let Some(to) = Obj::new(t, tpath, self)
        {
            // A bare TCP check is our default: a connect. Payloads are reported by `done`.
            to.done(self);
        }
        o.done(self);
        Some(hc)
    }
}

#[derive(Default)]
struct HeaderRewrites {
    req_add: Vec<HeaderValueOption>,
    req_remove: Vec<String>,
    resp_add: Vec<HeaderValueOption>,
    resp_remove: Vec<String>,
}

/// A mapping being read: keys not taken by the time of [`Obj::done`] are reported.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    taken: Vec<bool>,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: String, w: &mut Walker) -> Option<Obj<'a>> {
        match v.as_object() {
            Some(map) => Some(Obj {
                taken: vec![false; map.len()],
                path,
                map,
            }),
            None => {
                w.note(path, format!("expected a mapping, found {}", kind(v)));
                None
            }
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value at `key` and its path, marking it handled.
    fn take(&mut self, key: &str) -> Option<(&'a Value, String)> {
        let i = self.map.keys().position(|k| k == key)?;
        self.taken[i] = true;
        let v = self.map.get(key)?;
        Some((v, self.child(key)))
    }

    /// Marks a key handled for a field that has no meaning here by design (`stat_prefix`:
    /// our metrics are labelled by listener name).
    fn take_quiet(&mut self, key: &str) {
        self.take(key);
    }

    fn take_all(&mut self) {
        self.taken.iter_mut().for_each(|t| *t = true);
    }

    fn take_str(&mut self, w: &mut Walker, key: &str) -> Option<String> {
        let (v, path) = self.take(key)?;
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                w.note(path, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    fn take_bool(&mut self, w: &mut Walker, key: &str) -> Option<bool> {
        let (v, path) = self.take(key)?;
        let b = v.get("value").unwrap_or(v).as_bool();
        if b.is_none() {
            w.note(path, format!("expected a boolean, found {}", kind(v)));
        }
        b
    }

    /// An integer, bare or in protobuf's wrapper form `{value: N}`; strings of digits too
    /// (proto3 JSON writes 64-bit integers as strings).
    fn take_u64(&mut self, w: &mut Walker, key: &str) -> Option<u64> {
        let (v, path) = self.take(key)?;
        let inner = v.get("value").unwrap_or(v);
        let n = inner
            .as_u64()
            .or_else(|| inner.as_str().and_then(|s| s.parse().ok()));
        if n.is_none() {
            w.note(
                path,
                format!("expected a non-negative integer, found {}", kind(v)),
            );
        }
        n
    }

    fn take_duration(&mut self, w: &mut Walker, key: &str) -> Option<Dur> {
        let (v, path) = self.take(key)?;
        match duration(v) {
            Ok(d) => Some(d),
            Err(e) => {
                w.note(path, e);
                None
            }
        }
    }

    /// The object's `name`, made a valid name of ours (reported when it had to change).
    fn name(&mut self, w: &mut Walker, what: &str, path: &str) -> String {
        match self.take_str(w, "name") {
            Some(n) => {
                let s = sanitize(&n);
                if s != n {
                    w.note(format!("{path}.name"), format!("{what} renamed to {s:?}"));
                }
                s
            }
            None => {
                let s = sanitize(&format!("{what}{}", path.rsplit('[').next().unwrap_or("")));
                w.note(format!("{path}.name"), format!("no name: named {s:?}"));
                s
            }
        }
    }

    fn done(self, w: &mut Walker) {
        for ((k, v), taken) in self.map.iter().zip(&self.taken) {
            if !taken {
                let what = v
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or(String::new(), |n| format!(" ({n})"));
                w.note(self.child(k), format!("not supported{what}"));
            }
        }
    }
}

/// Items of a list, with their index; anything else is reported.
fn items<'a>(w: &mut Walker, v: &'a Value, path: &str) -> Vec<(usize, &'a Value)> {
    match v.as_array() {
        Some(a) => a.iter().enumerate().collect(),
        None => {
            w.note(path, format!("expected a list, found {}", kind(v)));
            Vec::new()
        }
    }
}

fn strings(w: &mut Walker, v: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in items(w, v, path) {
        match s.as_str() {
            Some(s) => out.push(s.to_owned()),
            None => w.note(format!("{path}[{i}]"), "expected a string"),
        }
    }
    out
}

/// `{socket_address: {address, port_value}}` as `host:port` (IPv6 in brackets).
fn socket_address(w: &mut Walker, v: &Value, path: String) -> Option<String> {
    let mut o = Obj::new(v, path.clone(), w)?;
    let Some((sa, spath)) = o.take("socket_address") else {
        o.done(w);
        w.note(path, "only socket_address is supported");
        return None;
    };
    o.done(w);
    let mut so = Obj::new(sa, spath.clone(), w)?;
    let host = so.take_str(w, "address");
    let port = so.take_u64(w, "port_value");
    if let Some(proto) = so.take_str(w, "protocol")
        && proto != "TCP"
    {
        w.note(
            format!("{spath}.protocol"),
            format!("{proto} is not supported"),
        );
    }
    so.done(w);
    match (host, port) {
        (Some(h), Some(p)) if h.contains(':') && !h.starts_with('[') => Some(format!("[{h}]:{p}")),
        (Some(h), Some(p)) => Some(format!("{h}:{p}")),
        _ => {
            w.note(spath, "needs address and port_value");
            None
        }
    }
}

/// A protobuf Duration: `"1.5s"` (its JSON form) or `{seconds, nanos}`.
fn duration(v: &Value) -> Result<Dur, String> {
    if let Some(s) = v.as_str() {
        let secs = s
            .strip_suffix('s')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("invalid duration {s:?}: expected seconds like \"1.5s\""))?;
        return Ok(Dur(std::time::Duration::from_secs_f64(secs)));
    }
    if let Some(o) = v.as_object() {
        let secs = o.get("seconds").map_or(Some(0), |s| {
            s.as_u64()
                .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
        });
        let nanos = o.get("nanos").map_or(Some(0), Value::as_u64);
        if let (Some(s), Some(n)) = (secs, nanos)
            && n < 1_000_000_000
        {
            return Ok(Dur(
                std::time::Duration::from_secs(s) + std::time::Duration::from_nanos(n)
            ));
        }
    }
    Err(format!(
        "invalid duration {v}: expected seconds like \"1.5s\""
    ))
}

fn nonzero_or(d: Dur, zero: Dur) -> Dur {
    if d.get().is_zero() { zero } else { d }
}

/// Names become metric labels: letters, digits, `-`, `_`, `.` only.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "unnamed".into() } else { s }
}

fn display_name(name: &str, type_url: &str) -> String {
    match (name.is_empty(), type_url.rsplit('/').next()) {
        (false, _) => name.to_owned(),
        (true, Some(t)) if !t.is_empty() => t.to_owned(),
        _ => "an unnamed filter".to_owned(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests;
