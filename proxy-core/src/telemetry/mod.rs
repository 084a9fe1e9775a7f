//! Telemetry: the metrics registry, the access log, process logging, and distributed tracing
//! (trace context on the request path, span export off it).

pub mod access_log;
pub mod histogram;
pub mod logging;
pub mod metrics;
pub mod span_export;
pub mod tap;
pub mod trace;
