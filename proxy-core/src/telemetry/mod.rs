//! Telemetry: the metrics registry, the access log, and process logging.

pub mod access_log;
pub mod histogram;
pub mod logging;
pub mod metrics;
pub mod tap;
