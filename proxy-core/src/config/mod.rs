//! Configuration: the YAML model, human units, loading with every problem reported at its
//! path in the document, and semantic validation.
//!
//! Loading is in two passes so that one run of `check-config` shows *every* problem: each
//! top-level section and each list item is deserialized on its own (a typo in `clusters[0]`
//! does not hide one in `listeners[2]`), then semantic checks run over what parsed.

pub mod intercept;
mod model;
mod mtls;
mod ratelimit;
mod resilience;
mod trace;
mod traffic;
pub mod units;
mod validate;

use std::fmt;

use serde::de::DeserializeOwned;
use serde_norway::Value;

pub use intercept::InterceptMode;
pub use model::*;
pub use mtls::{ClusterMtls, Identity, ListenerMtls, MtlsMode};
pub use ratelimit::*;
pub use resilience::*;
pub use trace::*;
pub use traffic::*;
pub use units::{Dur, Size};
pub use validate::{HostPort, parse_host_port};

/// The embedded default config, printed by `sidecar default-config` and run when no file is given.
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

/// One problem in a config document: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Path in the document, like `clusters[1].endpoints[0]`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a config document, in document order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects problems while a document is checked. Shared by every program's config.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<ConfigError>);

impl Problems {
    pub fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.0))
        }
    }

    /// Deserialize `value` as `T`, recording each failure with its full path under `base`.
    ///
    /// serde stops at the first problem, so a bad field would hide every other problem of
    /// the same item. After recording one, the offending field is taken out (an unknown
    /// key, or a value of the wrong form, whose default then applies) and the item is read
    /// again, up to a bound. The item comes back when it parses that way, so the semantic
    /// checks can look at the rest of it; the document as a whole is still rejected.
    pub fn section<T: DeserializeOwned>(&mut self, base: &str, value: Value) -> Option<T> {
        let mut value = value;
        for _ in 0..32 {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut path = base.to_owned();
            for seg in e.path().iter() {
                use serde_path_to_error::Segment;
                match seg {
                    Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                    Segment::Map { key } | Segment::Enum { variant: key } => {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(key);
                    }
                    Segment::Unknown => {}
                }
            }
            self.at(path, clean_serde_message(&e.inner().to_string()));
            if !remove_at(&mut value, e.path()) {
                return None;
            }
        }
        None
    }

    /// Deserialize a list item by item, so a bad item does not hide problems in the next.
    /// Each item that parsed comes with its index in the document, for later paths.
    pub fn list<T: DeserializeOwned>(&mut self, base: &str, value: Value) -> Vec<(usize, T)> {
        match value {
            Value::Sequence(items) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| self.section(&format!("{base}[{i}]"), v).map(|t| (i, t)))
                .collect(),
            Value::Null => Vec::new(),
            other => {
                self.at(base, format!("expected a list, found {}", kind(&other)));
                Vec::new()
            }
        }
    }
}

/// Take out the mapping key a deserialization error points at: the field itself, or the
/// list holding a bad element (taking one element out would shift the indexes later
/// problems are reported with).
fn remove_at(value: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let Some(last_key) = segs.iter().rposition(|s| matches!(s, Segment::Map { .. })) else {
        return false;
    };
    let Segment::Map { key } = segs[last_key] else {
        return false;
    };
    let mut v = value;
    for seg in &segs[..last_key] {
        v = match (seg, v) {
            (Segment::Map { key }, Value::Mapping(m)) => match m.get_mut(key.as_str()) {
                Some(next) => next,
                None => return false,
            },
            (Segment::Seq { index }, Value::Sequence(items)) => match items.get_mut(*index) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match v {
        Value::Mapping(m) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// serde's messages quote with backticks, which read oddly in a terminal next to YAML.
/// Rust type names mean nothing to an operator either.
fn clean_serde_message(m: &str) -> String {
    let mut m = m.replace('`', "\"");
    for (rust, plain) in [
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        m = m.replace(rust, plain);
    }
    m
}

/// Parse a YAML document into its top-level mapping, or say why it is not one.
pub fn yaml_mapping(text: &str) -> Result<serde_norway::Mapping, ConfigErrors> {
    let one = |m: String| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: m,
        }])
    };
    let value: Value =
        serde_norway::from_str(text).map_err(|e| one(format!("invalid YAML: {e}")))?;
    match value {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(serde_norway::Mapping::new()),
        other => Err(one(format!(
            "expected a mapping at the top of the document, found {}",
            kind(&other)
        ))),
    }
}

/// A name given to a list item, if the raw item has one (used to keep cross-reference checks
/// quiet about items that failed to parse for another reason).
pub fn raw_names(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

impl Config {
    /// Parse and validate a document, reporting every problem found.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigErrors> {
        let map = yaml_mapping(text)?;
        let mut p = Problems::default();
        if map.is_empty() {
            p.at("", "the document is empty: a config needs at least one listener (see `sidecar default-config`)");
        }
        let cluster_names = raw_names(map.get("clusters"));
        let mut cfg = Config::default();
        let mut index = validate::DocIndex::default();
        for (k, v) in map {
            let Some(key) = k.as_str() else {
                p.at(
                    "",
                    format!("top-level keys must be strings, found {}", kind(&k)),
                );
                continue;
            };
            match key {
                "admin" => cfg.admin = p.section("admin", v).unwrap_or_default(),
                "runtime" => cfg.runtime = p.section("runtime", v).unwrap_or_default(),
                "access_log" => cfg.access_log = p.section("access_log", v),
                "tracing" => cfg.tracing = p.section("tracing", v),
                "rate_limit_service" => {
                    cfg.rate_limit_service = p.section("rate_limit_service", v)
                }
                "identity" => cfg.identity = p.section("identity", v),
                "listeners" => {
                    (index.listeners, cfg.listeners) = p.list("listeners", v).into_iter().unzip()
                }
                "clusters" => {
                    (index.clusters, cfg.clusters) = p.list("clusters", v).into_iter().unzip()
                }
                other => p.at(
                    other,
                    "unknown field, expected one of \"admin\", \"runtime\", \"access_log\", \"tracing\", \"rate_limit_service\", \"identity\", \"listeners\", \"clusters\"",
                ),
            }
        }
        validate::config(&cfg, &index, &cluster_names, &mut p);
        if let Some(t) = &cfg.tracing {
            trace::validate(t, &mut p);
        }
        if let Some(s) = &cfg.rate_limit_service {
            ratelimit::validate_service(s, &mut p);
        }
        ratelimit::check_global_rules(&cfg, &index.listeners, &mut p);
        p.into_result(cfg)
    }

    /// The embedded default config.
    pub fn default_config() -> Config {
        Config::from_yaml(DEFAULT_YAML).expect("the embedded default config is valid")
    }

    /// Read and parse a config file.
    pub fn from_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Config::from_yaml(&text)
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests;
