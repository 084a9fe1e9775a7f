//! The `adapter` binary as a child process for the adapter's end-to-end tests: started with
//! arguments in its own temporary directory, its stdout and stderr captured to files there,
//! killed when the test ends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub use nix::sys::signal::Signal;
use serde_json::Value;

use crate::wait::eventually;

/// The release-built adapter (`$ADAPTER_BIN` overrides it).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ADAPTER_BIN") {
        return PathBuf::from(path);
    }
    let path = crate::process::release_dir().join("adapter");
    assert!(
        path.is_file(),
        "the adapter binary is missing at {}: run `cargo build --release --bins` first",
        path.display()
    );
    path
}

/// A running adapter; killed (SIGKILL) when dropped if still running.
pub struct Adapter {
    child: Child,
    exit: Option<ExitStatus>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Adapter {
    /// Starts `adapter ARGS...`, appending its stdout to `stdout` (so restarts add to one
    /// file) and its stderr to `stdout` + `.err`.
    pub fn start(args: &[&str], stdout: &Path) -> Adapter {
        let stderr = stdout.with_extension("err");
        let open = |p: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .expect("open an output file")
        };
        let child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(open(stdout))
            .stderr(open(&stderr))
            .spawn()
            .expect("spawn the adapter");
        Adapter {
            child,
            exit: None,
            stdout: stdout.to_owned(),
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid fits"));
        let _ = nix::sys::signal::kill(pid, sig);
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        eventually("the adapter to exit", within, async || {
            self.try_exit().ok_or("still running")
        })
        .await
    }

    /// Peak resident memory so far (`VmHWM`), in bytes; `None` once the process has
    /// exited (a zombie's status has no memory lines), which can happen between a check
    /// that it runs and this read.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- adapter stderr ----\n{}", self.stderr_text());
        }
    }
}

/// The JSON records in a file of JSON lines (a torn last line is left out).
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What the collector does with the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answer 500 without looking at the body.
    Fail,
    /// Read the request and never answer.
    Stall,
    /// Keep the records (gunzipped when sent so) and answer 200.
    Accept,
}

/// An HTTP log endpoint for the adapter's HTTP output: its behaviour is switched by the test,
/// and it keeps every NDJSON line it accepted.
pub struct Collector {
    pub addr: std::net::SocketAddr,
    state: std::sync::Arc<std::sync::Mutex<CollectorState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct CollectorState {
    mode: Option<Mode>,
    lines: Vec<String>,
    requests: u64,
}

impl Collector {
    pub async fn start(mode: Mode) -> Collector {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        let state = std::sync::Arc::new(std::sync::Mutex::new(CollectorState {
            mode: Some(mode),
            ..CollectorState::default()
        }));
        let shared = std::sync::Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let state = std::sync::Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let state = std::sync::Arc::clone(&state);
                            async move {
                                let mode = {
                                    let mut s = state.lock().expect("collector state");
                                    s.requests += 1;
                                    s.mode.unwrap_or(Mode::Accept)
                                };
                                let gzip = req
                                    .headers()
                                    .get("content-encoding")
                                    .is_some_and(|v| v == "gzip");
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let status = match mode {
                                    Mode::Fail => 500,
                                    Mode::Stall => {
                                        std::future::pending::<()>().await;
                                        500
                                    }
                                    Mode::Accept => {
                                        let text = if gzip {
                                            let mut out = String::new();
                                            std::io::Read::read_to_string(
                                                &mut flate2::read::GzDecoder::new(&body[..]),
                                                &mut out,
                                            )
                                            .expect("gzip body");
                                            out
                                        } else {
                                            String::from_utf8_lossy(&body).into_owned()
                                        };
                                        let mut s = state.lock().expect("collector state");
                                        s.lines.extend(text.lines().map(str::to_owned));
                                        200
                                    }
                                };
                                let mut response = hyper::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::new(),
                                ));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).expect("status");
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Collector { addr, state, task }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("collector state").mode = Some(mode);
    }

    pub fn lines(&self) -> Vec<String> {
        self.state.lock().expect("collector state").lines.clone()
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().expect("collector state").requests
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
