//! HTTP: serving downstream connections, the request's trip through the proxy, header
//! handling, and pooled upstream connections.

pub mod attempts;
pub mod body;
pub mod client;
pub mod deadline;
pub mod fault;
pub mod headers;
pub mod inject;
pub mod mirror;
pub mod proxy;
pub mod server;
pub mod supervise;
