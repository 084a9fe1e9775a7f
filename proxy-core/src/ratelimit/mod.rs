//! Rate limits: local token buckets, per route.

pub mod local;
