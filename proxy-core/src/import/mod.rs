//! Converters from other proxies' config formats into ours.

pub mod envoy;
