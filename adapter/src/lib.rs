//! The adapter: reads a legacy service's log lines and writes one structured JSON record
//! per line, never dropping a line.
//!
//! `input` reads lines, `parse` turns each into fields (one `nom` parser per format),
//! `record` writes the fields as JSON.

#![forbid(unsafe_code)]

pub mod input;
pub mod parse;
pub mod record;
