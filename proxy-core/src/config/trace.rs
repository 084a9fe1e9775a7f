//! The `tracing:` section: sampling, header formats, and the span collector.

use serde::{Deserialize, Serialize};

use super::units::Dur;
use super::{HostPort, Problems, parse_host_port};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// Fraction (0 to 1) of requests without a caller's sampling decision that are sampled.
    /// A caller's decision (`traceparent` flags, `x-b3-sampled`, `b3`) is always honoured.
    #[serde(default = "default_sampling")]
    pub sampling: f64,
    /// The service name spans are reported under.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Header formats written upstream for a trace this proxy starts (a request that arrived
    /// with a context keeps its format): `w3c`, `b3` (multi header), or both.
    #[serde(default = "default_propagation")]
    pub propagation: Vec<PropagationFormat>,
    /// Where spans are sent; without it contexts are still propagated, nothing is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<TraceCollector>,
}

fn default_sampling() -> f64 {
    0.01
}
fn default_service_name() -> String {
    "sidecar".into()
}
fn default_propagation() -> Vec<PropagationFormat> {
    vec![PropagationFormat::W3c]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropagationFormat {
    W3c,
    B3,
}

/// The formats of `tracing.propagation`, as flags for the request path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Propagation {
    pub w3c: bool,
    pub b3: bool,
}

impl Tracing {
    pub fn propagation(&self) -> Propagation {
        Propagation {
            w3c: self.propagation.contains(&PropagationFormat::W3c),
            b3: self.propagation.contains(&PropagationFormat::B3),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectorProtocol {
    /// Zipkin v2 JSON (`POST /api/v2/spans`).
    #[default]
    Zipkin,
    /// OTLP/HTTP, protobuf encoding (`POST /v1/traces`).
    Otlp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceCollector {
    #[serde(default)]
    pub protocol: CollectorProtocol,
    /// `http://host:port/path` of the collector.
    pub endpoint: String,
    /// Spans per export request at most.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A batch is sent at the latest this long after its first span.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Dur,
    /// Finished spans waiting for export at most; past it they are dropped and counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Time allowed for one export request.
    #[serde(default = "default_export_timeout")]
    pub timeout: Dur,
}

fn default_batch_size() -> usize {
    512
}
fn default_flush_interval() -> Dur {
    Dur::secs(1)
}
fn default_queue_size() -> usize {
    4096
}
fn default_export_timeout() -> Dur {
    Dur::secs(5)
}

/// Which way a listener's traffic goes, as Envoy's `traffic_direction`: it sets the kind of
/// the span the proxy records (server for inbound, client for outbound).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceDirection {
    #[default]
    Inbound,
    Outbound,
}

pub(super) fn validate(t: &Tracing, p: &mut Problems) {
    if !(0.0..=1.0).contains(&t.sampling) || t.sampling.is_nan() {
        p.at(
            "tracing.sampling",
            format!(
                "{} is not a fraction between 0 and 1 (0.01 samples 1%)",
                t.sampling
            ),
        );
    }
    if t.service_name.is_empty() {
        p.at("tracing.service_name", "must not be empty");
    }
    if t.propagation.is_empty() {
        p.at("tracing.propagation", "name at least one format: w3c, b3");
    }
    if let Some(c) = &t.collector {
        if let Err(why) = collector_address(&c.endpoint) {
            p.at("tracing.collector.endpoint", why);
        }
        if c.batch_size == 0 {
            p.at("tracing.collector.batch_size", "must be at least 1");
        }
        if c.queue_size == 0 {
            p.at("tracing.collector.queue_size", "must be at least 1");
        }
        if c.flush_interval.get().is_zero() {
            p.at("tracing.collector.flush_interval", "must be more than zero");
        }
        if c.timeout.get().is_zero() {
            p.at("tracing.collector.timeout", "must be more than zero");
        }
    }
}

/// The collector's host and port, from an `http://host:port/path` URL.
fn collector_address(endpoint: &str) -> Result<HostPort, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("\"{endpoint}\" is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "\"{endpoint}\": https collectors are not supported; send spans to a local collector or agent over http"
            ));
        }
        _ => return Err(format!("\"{endpoint}\" must be an absolute http:// URL")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("\"{endpoint}\" has no host"))?;
    let hp = if authority.port().is_some() {
        authority.as_str().to_owned()
    } else {
        format!("{}:80", authority.host())
    };
    parse_host_port(&hp).map_err(|e| format!("\"{endpoint}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_endpoints() {
        assert!(collector_address("http://127.0.0.1:9411/api/v2/spans").is_ok());
        assert!(collector_address("http://collector/v1/traces").is_ok());
        assert!(
            collector_address("https://x:1/")
                .unwrap_err()
                .contains("https")
        );
        assert!(collector_address("127.0.0.1:9411").is_err());
        assert!(collector_address("not a url").is_err());
    }
}
