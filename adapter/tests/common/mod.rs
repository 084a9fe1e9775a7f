//! Helpers shared by the integration tests.

pub mod json_check;
