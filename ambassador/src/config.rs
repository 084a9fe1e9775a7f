//! The ambassador's YAML document, its validation (every problem with its path), and its
//! translation into the proxy-core config it runs: listeners on loopback, one route per
//! ambassador route (path prefix or Host, prefix stripped and replaced by the base URL's
//! path, Host set to the API's), one cluster per route (DNS discovery, TLS with SNI), and the
//! route's credential as a proxy-core request hook.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;
use proxy_core::config::{
    self as core, CircuitBreakers, ConfigError, ConfigErrors, Dur, ErrorRateBreaker, Problems,
    RetryPolicy,
};
use proxy_core::ratelimit::local::LocalRateLimit;
use proxy_core::tls::upstream::UpstreamTls;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::credentials::{self, CredentialConfig, Hooks, RouteCredential};
use crate::metrics::AmbassadorMetrics;

/// The whole ambassador document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_admin")]
    pub admin: core::Admin,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<core::AccessLog>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            admin: default_admin(),
            runtime: Runtime::default(),
            access_log: None,
            listeners: Vec::new(),
            routes: Vec::new(),
        }
    }
}

fn default_admin() -> core::Admin {
    core::Admin {
        address: "127.0.0.1:15100".into(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// Worker threads; 0 means one per available CPU.
    pub worker_threads: usize,
    pub drain_grace: Dur,
    pub drain_deadline: Dur,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            worker_threads: 0,
            drain_grace: Dur::secs(0),
            drain_deadline: Dur::secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    /// A loopback address: the ambassador adds credentials for whoever can connect.
    pub address: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Local path prefix, like `/stripe/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Host the service calls (`stripe.local`), without port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// The listener the route belongs to; the first listener when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The API's base URL: `https://api.example.com/v1`. Its path replaces the matched prefix.
    pub upstream: String,
    /// Allow an `http://` upstream (credentials would cross the network in the clear).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Remove the matched prefix before forwarding (the default).
    #[serde(default = "yes")]
    pub strip_prefix: bool,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_rate_limit: Option<LocalRateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CircuitBreakers>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_breaker: Option<ErrorRateBreaker>,
    /// TLS toward the API (https upstreams); defaults: system roots, SNI from the URL, ALPN h2 + http/1.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialConfig>,
    /// Forward the client's own credential header instead of removing it.
    #[serde(default)]
    pub keep_client_credential: bool,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> Dur {
    Dur::secs(30)
}
fn default_connect_timeout() -> Dur {
    Dur::secs(5)
}

/// A base URL, split.
#[derive(Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Without a trailing slash; `/` for none.
    pub path: String,
}

impl BaseUrl {
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("invalid URL {s:?}: use https://host[:port][/path]")),
        };
        let auth = uri
            .authority()
            .ok_or_else(|| format!("invalid URL {s:?}: no host"))?;
        if auth.as_str().contains('@') {
            return Err(format!(
                "invalid URL {s:?}: put credentials in `credential`, not in the URL"
            ));
        }
        if uri.query().is_some() {
            return Err(format!("invalid URL {s:?}: a base URL has no query"));
        }
        let host = auth
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path().trim_end_matches('/');
        Ok(BaseUrl {
            https,
            host,
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }

    fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The Host header the API expects.
    fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl Config {
    /// Parse and check a document, reporting every problem found.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigErrors> {
        let map = core::yaml_mapping(text)?;
        let mut p = Problems::default();
        let mut cfg = Config::default();
        let mut route_index = Vec::new();
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                p.at("", "top-level keys must be strings");
                continue;
            };
            match key {
                "admin" => cfg.admin = p.section("admin", v).unwrap_or_else(default_admin),
                "runtime" => cfg.runtime = p.section("runtime", v).unwrap_or_default(),
                "access_log" => cfg.access_log = p.section("access_log", v),
                "listeners" => {
                    cfg.listeners = p.list("listeners", v).into_iter().map(|(_, l)| l).collect()
                }
                "routes" => (route_index, cfg.routes) = p.list("routes", v).into_iter().unzip(),
                other => p.at(
                    other,
                    "unknown field, expected one of \"admin\", \"runtime\", \"access_log\", \"listeners\", \"routes\"",
                ),
            }
        }
        cfg.check(&route_index, &mut p);
        if p.is_empty() {
            // Whatever proxy-core finds in the translation (retry policies, rate limits,
            // breakers) is reported at the ambassador route it came from.
            if let Err(errs) = core::Config::from_yaml(&cfg.proxy_yaml()) {
                for e in errs.0 {
                    p.at(cfg.user_path(&e.path, &route_index), e.message);
                }
            }
        }
        p.into_result(cfg)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Config::from_yaml(&text)
    }

    fn check(&self, idx: &[usize], p: &mut Problems) {
        if self.listeners.is_empty() {
            p.at("listeners", "needs at least one listener");
        }
        for (i, l) in self.listeners.iter().enumerate() {
            match l.address.parse::<std::net::SocketAddr>() {
                Ok(a) if !a.ip().is_loopback() => p.at(
                    format!("listeners[{i}].address"),
                    format!("{a} is not a loopback address: anyone who can connect would get the credentials; use 127.0.0.1 or [::1]"),
                ),
                Ok(_) => {}
                Err(_) => p.at(format!("listeners[{i}].address"), format!("invalid socket address {:?}", l.address)),
            }
        }
        if self.routes.is_empty() {
            p.at("routes", "needs at least one route");
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let path = format!("routes[{}]", idx.get(i).copied().unwrap_or(i));
            if !names.insert(r.name.as_str()) {
                p.at(
                    format!("{path}.name"),
                    format!("duplicate route name {:?}", r.name),
                );
            }
            if let Some(l) = &r.listener
                && !self.listeners.iter().any(|x| &x.name == l)
            {
                p.at(
                    format!("{path}.listener"),
                    format!("unknown listener {l:?}"),
                );
            }
            match (&r.matcher.prefix, &r.matcher.host) {
                (None, None) => p.at(format!("{path}.match"), "set prefix, host or both"),
                (Some(pre), _) if !pre.starts_with('/') => p.at(
                    format!("{path}.match.prefix"),
                    format!("{pre:?} must start with '/'"),
                ),
                _ => {}
            }
            match BaseUrl::parse(&r.upstream) {
                Err(e) => p.at(format!("{path}.upstream"), e),
                Ok(u) if !u.https && !r.allow_plain_http => p.at(
                    format!("{path}.upstream"),
                    "plain http sends credentials in the clear; use https or set allow_plain_http: true",
                ),
                Ok(u) if !u.https && r.tls.is_some() => {
                    p.at(format!("{path}.tls"), "an http:// upstream takes no tls block")
                }
                Ok(_) => {}
            }
            if let Some(c) = &r.credential
                && let Some(h) = c.header()
                && HeaderName::from_bytes(h.as_bytes()).is_err()
            {
                p.at(
                    format!("{path}.credential.header"),
                    format!("invalid header name {h:?}"),
                );
            }
        }
    }

    fn listener_of<'a>(&'a self, r: &'a Route) -> &'a str {
        r.listener
            .as_deref()
            .or(self.listeners.first().map(|l| l.name.as_str()))
            .unwrap_or("")
    }

    /// The proxy-core document this config runs as.
    pub fn proxy_value(&self) -> serde_json::Value {
        let mut listeners = Vec::new();
        let mut clusters = Vec::new();
        for l in &self.listeners {
            let mut routes = Vec::new();
            for r in self.routes.iter().filter(|r| self.listener_of(r) == l.name) {
                let Ok(base) = BaseUrl::parse(&r.upstream) else {
                    continue;
                };
                let mut m = serde_json::Map::new();
                if let Some(pre) = &r.matcher.prefix {
                    m.insert("prefix".into(), json!(pre));
                }
                if let Some(h) = &r.matcher.host {
                    m.insert("hosts".into(), json!([h]));
                }
                let mut route = json!({
                    "name": r.name,
                    "match": m,
                    "cluster": r.name,
                    "timeout": r.timeout,
                    "host_rewrite_literal": base.authority(),
                });
                let strip = r.strip_prefix && r.matcher.prefix.is_some();
                if strip || base.path != "/" {
                    match &r.matcher.prefix {
                        Some(_) if strip => route["prefix_rewrite"] = json!(base.path),
                        // Keep the local path, under the base path.
                        Some(pre) => {
                            route["prefix_rewrite"] =
                                json!(format!("{}{pre}", base.path.trim_end_matches('/')))
                        }
                        None => {
                            route["match"]["prefix"] = json!("/");
                            route["prefix_rewrite"] =
                                json!(format!("{}/", base.path.trim_end_matches('/')));
                        }
                    }
                }
                if let Some(rp) = &r.retry_policy {
                    route["retry_policy"] = json!(rp);
                }
                if let Some(rl) = &r.local_rate_limit {
                    route["local_rate_limit"] = json!(rl);
                }
                routes.push(route);
                let mut cluster = json!({
                    "name": r.name,
                    "discovery": if base.host.parse::<std::net::IpAddr>().is_ok() { "static" } else { "dns" },
                    "endpoints": [base.endpoint()],
                    "connect_timeout": r.connect_timeout,
                });
                if base.https {
                    cluster["tls"] = match &r.tls {
                        Some(t) => json!(t),
                        None => json!({}),
                    };
                }
                if let Some(cb) = &r.circuit_breakers {
                    cluster["circuit_breakers"] = json!(cb);
                }
                if let Some(b) = &r.error_rate_breaker {
                    cluster["error_rate_breaker"] = json!(b);
                }
                clusters.push(cluster);
            }
            listeners.push(json!({
                "name": l.name,
                "address": l.address,
                "routes": routes,
            }));
        }
        let mut doc = json!({
            "admin": self.admin,
            "runtime": {
                "worker_threads": self.runtime.worker_threads,
                "drain_grace": self.runtime.drain_grace,
                "drain_deadline": self.runtime.drain_deadline,
                "watch_config": false,
            },
            "listeners": listeners,
            "clusters": clusters,
        });
        if let Some(a) = &self.access_log {
            doc["access_log"] = json!(a);
        }
        doc
    }

    fn proxy_yaml(&self) -> String {
        serde_norway::to_string(&self.proxy_value()).unwrap_or_default()
    }

    /// The proxy-core config to run.
    pub fn proxy_config(&self) -> Result<core::Config, ConfigErrors> {
        core::Config::from_yaml(&self.proxy_yaml())
    }

    /// A path in the translated document, as the path of the ambassador field it came from.
    fn user_path(&self, path: &str, idx: &[usize]) -> String {
        let value = self.proxy_value();
        let name_at = |kind: &str, rest: &str| -> Option<(String, String)> {
            let (n, tail) = rest.split_once(']')?;
            let n: usize = n.parse().ok()?;
            let name = match kind {
                "clusters" => value["clusters"][n]["name"].as_str()?.to_owned(),
                _ => return None,
            };
            Some((name, tail.to_owned()))
        };
        let found = if let Some(rest) = path.strip_prefix("clusters[") {
            name_at("clusters", rest)
        } else if let Some(rest) = path.strip_prefix("listeners[") {
            (|| {
                let (l, tail) = rest.split_once("].routes[")?;
                let (r, tail) = tail.split_once(']')?;
                let name = value["listeners"][l.parse::<usize>().ok()?]["routes"]
                    [r.parse::<usize>().ok()?]["name"]
                    .as_str()?
                    .to_owned();
                Some((name, tail.to_owned()))
            })()
        } else {
            None
        };
        match found.and_then(|(name, tail)| {
            let i = self.routes.iter().position(|r| r.name == name)?;
            Some(format!(
                "routes[{}]{tail}",
                idx.get(i).copied().unwrap_or(i)
            ))
        }) {
            Some(p) => p,
            None => path.to_owned(),
        }
    }

    /// Open every route's secrets and build its credential hook. Problems (an unset
    /// environment variable, an unreadable file) come with their field path.
    pub fn hooks(&self, metrics: &AmbassadorMetrics) -> Result<Hooks, ConfigErrors> {
        let mut p = Problems::default();
        let mut hooks = BTreeMap::new();
        for (i, r) in self.routes.iter().enumerate() {
            let Some(c) = &r.credential else {
                continue;
            };
            let path = format!("routes[{i}].credential");
            match credentials::build(&r.name, &path, c, metrics) {
                Ok(provider) => {
                    let remove = if r.keep_client_credential {
                        None
                    } else {
                        c.header()
                            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                    };
                    hooks.insert(
                        (self.listener_of(r).to_owned(), r.name.clone()),
                        Arc::new(RouteCredential {
                            remove,
                            provider,
                            injected: metrics.injected(&r.name),
                        }),
                    );
                }
                Err(problems) => {
                    for (path, msg) in problems {
                        p.at(path, msg);
                    }
                }
            }
        }
        p.into_result(Hooks(hooks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let u = BaseUrl::parse("https://api.example.com/v1/").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "api.example.com", 443, "/v1")
        );
        assert_eq!(u.authority(), "api.example.com");
        let u = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.authority()),
            (8080, "/", "127.0.0.1:8080".to_owned())
        );
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(
            BaseUrl::parse("https://user:pw@x")
                .unwrap_err()
                .contains("credential")
        );
    }

    #[test]
    fn every_problem_with_its_path() {
        let errs = Config::from_yaml(
            r#"
listeners:
  - {name: out, address: "0.0.0.0:9000"}
routes:
  - name: a
    match: {prefix: stripe}
    upstream: http://api.example.com
    bogus: 1
  - name: b
    match: {prefix: /b/}
    upstream: https://api.example.com
    local_rate_limit: {requests: 0}
"#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "routes[0].bogus: unknown field",
            "listeners[0].address: 0.0.0.0:9000 is not a loopback address",
            "routes[0].match.prefix: \"stripe\" must start with '/'",
            "routes[0].upstream: plain http",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
    }

    #[test]
    fn translated_problems_point_at_the_ambassador_route() {
        let errs = Config::from_yaml(
            r#"
listeners: [{name: out, address: "127.0.0.1:9000"}]
routes:
  - name: b
    match: {prefix: /b/}
    upstream: https://api.example.com
    local_rate_limit: {requests: 0}
"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            errs.contains("routes[0].local_rate_limit.requests: must be at least 1"),
            "{errs}"
        );
    }

    #[test]
    fn every_provider_parses_and_builds() {
        let cfg = Config::from_yaml(
            r#"
listeners: [{name: out, address: "127.0.0.1:9000"}]
routes:
  - {name: h, match: {prefix: /h/}, upstream: https://a.test, credential: {type: header, header: x-api-key, secret: {value: k1}}}
  - {name: q, match: {prefix: /q/}, upstream: https://a.test, credential: {type: query, param: key, secret: {value: k2}}}
  - {name: b, match: {prefix: /b/}, upstream: https://a.test, credential: {type: basic, username: {value: u}, password: {value: pw-77}}}
  - name: o
    match: {host: crm.local}
    upstream: https://a.test/v2
    credential: {type: oauth2, token_url: "https://auth.test/token", client_id: c, client_secret: {value: cs-99}, scopes: [a], params: {audience: x}, refresh_at: 0.5}
  - {name: s, match: {prefix: /s/}, upstream: https://a.test, credential: {type: aws_sigv4, service: execute-api, region: eu-west-1, access_key_id: {value: AK}, secret_access_key: {value: SK}}}
  - {name: m, match: {prefix: /m/}, upstream: https://a.test, credential: {type: hmac, secret: {value: hk}, encoding: base64}}
"#,
        )
        .unwrap();
        let hooks = cfg.hooks(&AmbassadorMetrics::default()).unwrap();
        assert_eq!(hooks.0.len(), 6);
        let dump = serde_json::to_string(&cfg).unwrap();
        assert!(
            dump.contains("127.0.0.1:15100"),
            "the ambassador's admin default"
        );
        for secret in ["k1", "k2", "\"u\"", "pw-77", "cs-99", "AK", "SK", "hk"] {
            assert!(!dump.contains(secret), "{secret} in {dump}");
        }
    }

    #[test]
    fn credential_problems_have_paths() {
        let errs = Config::from_yaml(
            r#"
listeners: [{name: out, address: "127.0.0.1:9000"}]
routes:
  - {name: h, match: {prefix: /h/}, upstream: https://a.test, credential: {type: header, secret: {value: k}, colour: red}}
  - {name: o, match: {prefix: /o/}, upstream: https://a.test, credential: {type: oauth2, token_url: "http://auth.test/token", client_id: c, client_secret: {env: AMBASSADOR_TEST_NOT_SET}}}
"#,
        )
        .map_err(|e| e.to_string())
        .and_then(|c| c.hooks(&AmbassadorMetrics::default()).map(|_| ()).map_err(|e| e.to_string()))
        .unwrap_err();
        assert!(
            errs.contains("routes[0].credential") && errs.contains("colour"),
            "{errs}"
        );
    }

    #[test]
    fn provider_problems_name_the_field() {
        let cfg = Config::from_yaml(
            r#"
listeners: [{name: out, address: "127.0.0.1:9000"}]
routes:
  - {name: o, match: {prefix: /o/}, upstream: https://a.test, credential: {type: oauth2, token_url: "http://auth.test/token", client_id: c, client_secret: {env: AMBASSADOR_TEST_NOT_SET}}}
"#,
        )
        .unwrap();
        let errs = cfg
            .hooks(&AmbassadorMetrics::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            errs.contains("routes[0].credential.token_url: plain http"),
            "{errs}"
        );
        assert!(errs.contains("routes[0].credential.client_secret: environment variable AMBASSADOR_TEST_NOT_SET is not set"), "{errs}");
    }

    #[test]
    fn translation_strips_the_prefix_and_sets_the_host() {
        let cfg = Config::from_yaml(
            r#"
listeners: [{name: out, address: "127.0.0.1:9000"}]
routes:
  - name: stripe
    match: {prefix: /stripe/}
    upstream: https://api.stripe.com/v1
"#,
        )
        .unwrap();
        let v = cfg.proxy_value();
        let r = &v["listeners"][0]["routes"][0];
        assert_eq!(r["prefix_rewrite"], "/v1");
        assert_eq!(r["host_rewrite_literal"], "api.stripe.com");
        assert_eq!(v["clusters"][0]["discovery"], "dns");
        assert_eq!(v["clusters"][0]["endpoints"][0], "api.stripe.com:443");
        assert!(v["clusters"][0]["tls"].is_object());
        cfg.proxy_config().unwrap();
    }
}
