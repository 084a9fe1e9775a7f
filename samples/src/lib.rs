//! Sample services for the sidecar suite: small, real HTTP servers that the demo and the
//! README put behind the proxies, so what each proxy adds can be seen in the answers.
#![forbid(unsafe_code)]

pub mod api_caller;
pub mod demo_app;
pub mod external_api;
pub mod legacy;
pub mod order;
pub mod payment;
pub mod service;
pub mod upstream;
