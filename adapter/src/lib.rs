//! The adapter: reads a legacy service's log lines and writes one structured JSON record
//! per line, never dropping a line.
//!
//! `input` reads lines (stdin, a child's pipes, followed files), `parse` turns each into
//! fields (one `nom` parser per format, `multiline` joins stack traces), `record` writes the
//! fields as JSON, `pipeline` batches records towards `output` (stdout, file, HTTP), which
//! commits file checkpoints once records are accepted. `app` wires a run together from
//! the command line or a `config` file; `admin` serves `metrics`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod input;
pub mod metrics;
pub mod output;
pub mod parse;
pub mod pipeline;
pub mod record;
