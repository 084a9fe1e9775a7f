//! TLS: rustls client configs for upstream connections (`upstream`, a cluster's `tls:`
//! block), and the mesh: workload identities (SPIFFE IDs in X.509 certificates read from
//! files and reloaded when they change), mTLS on inbound listeners and to meshed clusters,
//! authorization by peer identity, and the `sidecar certs` development CA.

pub mod authz;
pub mod certs;
pub mod failure;
pub mod identity;
pub mod mesh_client;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod spiffe;
pub mod upstream;
