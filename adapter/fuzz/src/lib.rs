//! The property every fuzz target checks, shared with the corpus replay test of the
//! adapter crate (`tests/fuzz_corpus.rs`) so both run the same code.

#![forbid(unsafe_code)]

#[path = "../../tests/common/mod.rs"]
mod common;

pub use common::fuzz_check::{GROK_PATTERN, TARGETS, check, check_pattern};
