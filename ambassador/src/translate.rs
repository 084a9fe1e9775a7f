//! The translation of an ambassador config into the proxy-core document it runs: listeners
//! on loopback, one route per ambassador route (the matched prefix replaced by the base URL's
//! path, Host set to the API's), and one cluster per route (DNS discovery for host names, TLS
//! with SNI for https). Problems proxy-core finds in the result are reported at the
//! ambassador field they came from.

use proxy_core::config::{self as core, ConfigErrors};
use serde_json::json;

use crate::config::Config;

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

    pub(crate) fn proxy_yaml(&self) -> String {
        serde_norway::to_string(&self.proxy_value()).unwrap_or_default()
    }

    /// The proxy-core config to run.
    pub fn proxy_config(&self) -> Result<core::Config, ConfigErrors> {
        core::Config::from_yaml(&self.proxy_yaml())
    }

    /// A path in the translated document, as the path of the ambassador field it came from.
    pub(crate) fn user_path(&self, path: &str, idx: &[usize]) -> String {
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
