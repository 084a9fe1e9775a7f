//! TLS: rustls client configs for upstream connections.

pub mod upstream;
