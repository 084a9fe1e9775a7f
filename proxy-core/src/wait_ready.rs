//! `sidecar wait-ready` and `ambassador wait-ready`: hold something back until a proxy of
//! the suite is ready.
//!
//! Kubernetes before 1.29 has no native sidecars: the app may start (and make its first
//! calls) before the proxy listens. `wait-ready` polls the admin API's `/ready` until it
//! answers 200, bounded by a timeout, and then exits 0 or replaces itself with a command
//! (`sidecar wait-ready -- my-app --flag` as the app's entrypoint, or bare in the sidecar
//! container's `postStart` hook, which the kubelet waits for before starting the next
//! container).

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How often `/ready` is asked while the sidecar is not ready yet.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// One attempt (connect and answer) may take this long before it counts as not ready.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the admin API at {admin} was not ready within {timeout}: {last}", timeout = humantime::format_duration(*.timeout))]
    NotReady {
        admin: String,
        timeout: Duration,
        last: String,
    },
    #[error("cannot run {command}: {reason}")]
    Exec { command: String, reason: String },
    #[error("cannot start the poller: {0}")]
    Runtime(String),
}

impl WaitError {
    /// Stable reason string, for scripts and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            WaitError::NotReady { .. } => "not_ready",
            WaitError::Exec { .. } => "exec_failed",
            WaitError::Runtime(_) => "runtime",
        }
    }
}

/// The `wait-ready` subcommand of `program`: wait, then exit 0 or become `command`. Errors
/// go to stderr as `PROGRAM wait-ready: what [reason]`: exit 1 when not ready in time, 127
/// (as a shell does) when the command cannot be started.
pub fn command_line(
    program: &str,
    admin: &str,
    timeout: Duration,
    command: &[OsString],
) -> ExitCode {
    if let Err(e) = wait(admin, timeout) {
        eprintln!("{program} wait-ready: {e} [{}]", e.reason());
        return ExitCode::FAILURE;
    }
    if command.is_empty() {
        return ExitCode::SUCCESS;
    }
    let e = exec(command);
    eprintln!("{program} wait-ready: {e} [{}]", e.reason());
    ExitCode::from(127)
}

/// Poll `http://{admin}/ready` until it answers 200 or `timeout` passes. The error carries
/// the last thing seen (connection refused, `503 draining`, ...).
pub fn wait(admin: &str, timeout: Duration) -> Result<(), WaitError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| WaitError::Runtime(e.to_string()))?;
    rt.block_on(async {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match tokio::time::timeout(ATTEMPT_TIMEOUT, probe(admin)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => format!(
                    "no answer within {}",
                    humantime::format_duration(ATTEMPT_TIMEOUT)
                ),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::NotReady {
                    admin: admin.to_owned(),
                    timeout,
                    last,
                });
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    })
}

/// One `GET /ready`: Ok on 200, else what was seen.
async fn probe(admin: &str) -> Result<(), String> {
    let stream = TcpStream::connect(admin).await.map_err(|e| e.to_string())?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("/ready")
        .header(http::header::HOST, admin)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    match resp.status() {
        StatusCode::OK => Ok(()),
        status => Err(format!("/ready answered {status}")),
    }
}

/// Replace this process with `command` (its exit status becomes ours, signals reach it
/// directly). Returns only when the command cannot be started.
pub fn exec(command: &[OsString]) -> WaitError {
    use std::os::unix::process::CommandExt as _;
    let Some((program, args)) = command.split_first() else {
        return WaitError::Exec {
            command: String::new(),
            reason: "no command given after --".into(),
        };
    };
    let err = std::process::Command::new(program).args(args).exec();
    WaitError::Exec {
        command: program.to_string_lossy().into_owned(),
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_times_out_with_the_last_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = wait(&addr, Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.reason(), "not_ready");
        let msg = err.to_string();
        assert!(msg.contains("was not ready within 300ms"), "{msg}");
        assert!(msg.contains("refused"), "{msg}");
    }

    #[test]
    fn a_missing_command_is_an_exec_error() {
        let err = exec(&["/nonexistent/program".into()]);
        assert_eq!(err.reason(), "exec_failed");
        assert!(err.to_string().contains("/nonexistent/program"), "{err}");
    }
}
