//! The JSON access log: one line per request, Envoy-like field names, written by a
//! background thread so a slow disk or a blocked stdout never stalls the data path.
//! If the writer falls behind by more than its buffer, lines are dropped and counted by
//! `tracing-appender` rather than blocking requests.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

pub struct AccessLog {
    path: String,
    writer: NonBlocking,
    _guard: WorkerGuard,
}

impl AccessLog {
    /// `stdout`, `stderr`, or a file appended to.
    pub fn open(path: &str) -> std::io::Result<AccessLog> {
        let builder = NonBlockingBuilder::default()
            .buffered_lines_limit(64 * 1024)
            .lossy(true)
            .thread_name("access-log");
        let (writer, guard) = match path {
            "stdout" => builder.finish(std::io::stdout()),
            "stderr" => builder.finish(std::io::stderr()),
            file => builder.finish(OpenOptions::new().create(true).append(true).open(file)?),
        };
        Ok(AccessLog {
            path: path.to_owned(),
            writer,
            _guard: guard,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn write(&self, entry: &Entry<'_>) {
        if let Ok(mut line) = serde_json::to_vec(entry) {
            line.push(b'\n');
            let _ = self.writer.clone().write_all(&line);
        }
    }
}

/// One access log line.
#[derive(Serialize)]
pub struct Entry<'a> {
    pub start_time: String,
    pub method: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    pub listener: &'a str,
    pub request_id: &'a str,
    pub downstream_remote_address: SocketAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'a str>,
    /// With tracing on: the trace the request belongs to and this proxy's span in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<&'a str>,
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
