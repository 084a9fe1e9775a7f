//! The ambassador: an egress proxy beside a service that calls third-party APIs. The service
//! calls `http://127.0.0.1:PORT/...` with no secret; the ambassador forwards over TLS to the
//! real API and puts the credential on each request.
//!
//! It is thin: its config model (`config`), translated into a proxy-core config
//! (`translate`) whose routes carry a credential hook (`credentials`), secrets kept out of every output (`secret`), and
//! its metric families (`metrics`). Listeners, the pooled TLS client, retries, breakers, the
//! rate limiter and the admin server are proxy-core's.
#![forbid(unsafe_code)]

pub mod config;
pub mod credentials;
pub mod metrics;
pub mod secret;
pub mod translate;
