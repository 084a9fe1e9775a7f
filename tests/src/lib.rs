//! Harness for the end-to-end tests of the `sidecar` binary.
//!
//! The tests run the release-built binary as a child process against servers they start in
//! process on loopback, so they check what an operator gets, not what a unit sees. Builders
//! read like the sentence a test means:
//!
//! ```no_run
//! # async fn demo() {
//! use e2e_tests::{client::Client, proxy_config, upstream, Sidecar};
//! let echo = upstream::http1().name("echo").run().await;
//! let proxy = Sidecar::start(proxy_config::single_route(&echo)).await;
//! let reply = Client::http1(proxy.listener("in")).await.get("/").send().await;
//! assert_eq!(reply.echoed().upstream, "echo");
//! # }
//! ```
//!
//! Run them with `cargo build --release --bins && cargo nextest run -p e2e-tests` (plain
//! `cargo test -p e2e-tests` works too), or as part of everything with `bash tests/run.sh`,
//! which also installs `promtool` (`apt-get install -y prometheus`) that they need.
//! `SIDECAR_BIN=/path/to/sidecar` tests another build; `SIDECAR_LOG=debug` makes the sidecar
//! logs printed with a failing test more detailed.
//!
//! Each test starts its own sidecar on its own ports in its own temporary directory, so tests
//! run in parallel, and kills it when it ends, pass or fail.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod admin;
pub mod ambassador;
pub mod body;
pub mod client;
pub mod collector;
pub mod kube;
pub mod load;
pub mod mesh;
pub mod metrics;
pub mod netns;
pub mod ports;
pub mod process;
pub mod proxy_config;
pub mod redis;
pub mod upstream;
pub mod wait;

pub use process::Sidecar;
