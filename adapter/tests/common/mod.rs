//! Helpers shared by the integration tests (and, through `#[path]`, the fuzz targets).

pub mod fuzz_check;
pub mod json_check;
