//! The ambassador's YAML document, its validation (every problem with its path), and the
//! route credentials it builds as proxy-core request hooks. Its translation into the
//! proxy-core config it runs is in `translate`.

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

use crate::credentials::{self, CredentialConfig, Hooks, RouteCredential};
use crate::metrics::AmbassadorMetrics;
use crate::translate::BaseUrl;

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

    pub(crate) fn listener_of<'a>(&'a self, r: &'a Route) -> &'a str {
        r.listener
            .as_deref()
            .or(self.listeners.first().map(|l| l.name.as_str()))
            .unwrap_or("")
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
}
