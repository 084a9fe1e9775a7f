//! proxy-core: the data plane shared by the sidecar suite's programs.
//!
//! The `sidecar` binary is a thin `main` over this library; the ambassador and the adapter
//! use it for everything that moves bytes over the network.
//!
//! A request crosses the modules in this order: `listener` (accept) → `http::server`
//! (hyper) → `http::proxy` (route, pick, forward) → `cluster` (endpoint, load balancer) →
//! `http::attempts` (retry loop, `resilience` policies) → `http::client` (pooled connection) → back through `http::body`, which records
//! `telemetry` when the response ends.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cluster;
pub mod config;
pub mod detect;
pub mod error;
pub mod http;
pub mod import;
pub mod inject;
pub mod inspect;
pub mod intercept;
pub mod listener;
pub mod observed;
pub mod ratelimit;
pub mod resilience;
pub mod route;
pub mod runtime;
pub mod snapshot;
pub mod tcp;
pub mod telemetry;
pub mod tls;
pub mod wait_ready;
pub mod watch;
