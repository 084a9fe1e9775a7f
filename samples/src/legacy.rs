//! `sample legacy`: a legacy web service with an old-style log. Every request is logged as
//! an Apache combined access line; `GET /report` fails and logs, the way a Java servlet
//! container does, an ERROR line followed by a multi-line stack trace with a cause. Each log
//! entry goes to stdout and is appended to a file, so `adapter run` (stdout) and
//! `adapter tail` (the file) both have something to read.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::service::{Reply, header_text, json};

pub struct Legacy {
    file: Mutex<File>,
}

impl Legacy {
    /// Opens (creating, appending) the log file.
    pub fn open(log_file: &Path) -> std::io::Result<Arc<Legacy>> {
        if let Some(dir) = log_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)?;
        Ok(Arc::new(Legacy {
            file: Mutex::new(file),
        }))
    }

    pub async fn handle(self: Arc<Self>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
        let now = Utc::now();
        let (status, reply) = match (req.method(), req.uri().path()) {
            (&Method::GET, "/report") => {
                self.write(&stack_trace(now));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "report generation failed (see the log)"}),
                )
            }
            (&Method::GET, "/" | "/catalog" | "/cart") => (
                StatusCode::OK,
                json!({"service": "legacy", "path": req.uri().path()}),
            ),
            _ => (StatusCode::NOT_FOUND, json!({"error": "no such page"})),
        };
        let resp = json(status, &reply);
        let size = hyper::body::Body::size_hint(resp.body())
            .exact()
            .unwrap_or(0);
        self.write(&access_line(now, peer, &req, status, size));
        resp
    }

    /// One log entry to stdout and the file. A failed write is reported on stderr: the
    /// service keeps serving, as legacy services do.
    fn write(&self, entry: &str) {
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(entry.as_bytes()).and_then(|()| out.flush()) {
            eprintln!("legacy: cannot write the log to stdout: {e}");
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(entry.as_bytes()) {
            eprintln!("legacy: cannot write the log file: {e}");
        }
    }
}

/// `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`, newline included.
fn access_line<B>(
    now: DateTime<Utc>,
    peer: SocketAddr,
    req: &Request<B>,
    status: StatusCode,
    size: u64,
) -> String {
    let quoted = |v: Option<String>| match v {
        Some(v) => v.replace('\\', "\\\\").replace('"', "\\\""),
        None => "-".to_owned(),
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .replace('"', "%22");
    format!(
        "{} - - [{}] \"{} {} {:?}\" {} {} \"{}\" \"{}\"\n",
        peer.ip(),
        now.format("%d/%b/%Y:%H:%M:%S %z"),
        req.method(),
        target,
        req.version(),
        status.as_u16(),
        size,
        quoted(header_text(req.headers(), "referer")),
        quoted(header_text(req.headers(), "user-agent")),
    )
}

/// What a Java servlet logs when a request throws: a log4j-style ERROR line, the exception,
/// its frames, and a cause.
fn stack_trace(now: DateTime<Utc>) -> String {
    format!(
        "{} ERROR [http-nio-8080-exec-3] com.example.legacy.ReportServlet - report generation failed\n\
java.lang.IllegalStateException: ledger is locked by another report\n\
\tat com.example.legacy.Ledger.open(Ledger.java:88)\n\
\tat com.example.legacy.ReportServlet.doGet(ReportServlet.java:42)\n\
\tat javax.servlet.http.HttpServlet.service(HttpServlet.java:634)\n\
Caused by: java.io.IOException: lock file /var/lib/ledger/.lock is held\n\
\tat com.example.legacy.FileLock.acquire(FileLock.java:31)\n\
\tat com.example.legacy.Ledger.open(Ledger.java:85)\n\
\t... 2 more\n",
        now.format("%Y-%m-%d %H:%M:%S,%3f"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_is_apache_combined() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let req = Request::get("/catalog?page=2")
            .header("user-agent", "curl/7.88.1")
            .header("referer", "http://shop/\"x\"")
            .body(())
            .unwrap();
        let line = access_line(
            now,
            "127.0.0.1:4000".parse().unwrap(),
            &req,
            StatusCode::OK,
            42,
        );
        assert_eq!(
            line,
            "127.0.0.1 - - [27/Nov/2026:12:00:00 +0000] \"GET /catalog?page=2 HTTP/1.1\" 200 42 \"http://shop/\\\"x\\\"\" \"curl/7.88.1\"\n"
        );
    }

    #[test]
    fn stack_trace_is_one_error_line_then_indented_frames() {
        let now = Utc::now();
        let trace = stack_trace(now);
        let mut lines = trace.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .contains(" ERROR [http-nio-8080-exec-3] ")
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("java.lang.IllegalStateException: ")
        );
        assert!(lines.all(|l| l.starts_with('\t') || l.starts_with("Caused by: ")));
    }
}
