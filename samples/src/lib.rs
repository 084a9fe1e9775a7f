//! Sample services for the sidecar suite: small, real HTTP servers that the demo and the
//! README put behind the proxy, so what the proxy adds to a request can be seen in the answer.
#![forbid(unsafe_code)]

pub mod demo_app;
