//! proxy-core: the data plane shared by the sidecar suite's programs.
//!
//! The `sidecar` binary is a thin `main` over this library; the ambassador and the adapter
//! use it for everything that moves bytes over the network.
#![forbid(unsafe_code)]

pub mod config;
