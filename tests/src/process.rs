//! The sidecar as a child process: started from a config document the test writes, its
//! stdout and stderr captured to files in its own temporary directory, killed when the test
//! ends, and its logs printed when the test failed, so a failure explains itself.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::admin::Admin;
use crate::proxy_config::{Addresses, ConfigFile, Layout, to_yaml};
use crate::wait::eventually;

/// Time a sidecar may take from spawn to `/ready` answering 200.
pub const START_DEADLINE: Duration = Duration::from_secs(15);

/// Where `cargo build --release` puts the workspace's binaries: beside the build of this test
/// binary (`target/<host tuple>/debug/deps/…` gives `target/<host tuple>/release`), so the
/// tests follow the build target `.cargo/config.toml` sets without naming it.
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("test binaries sit in <target dir>/<profile>/deps")
        .join("release")
}

/// The binary under test: `$SIDECAR_BIN`, else the workspace's release build.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIDECAR_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "SIDECAR_BIN={} is not a file",
            path.display()
        );
        return path;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace");
    let path = release_dir().join("sidecar");
    assert!(
        path.is_file(),
        "the sidecar binary is missing at {}: run `cargo build --release --bins` first \
         (or set SIDECAR_BIN to the binary to test)",
        path.display()
    );
    warn_if_stale(&path, &workspace.join("proxy-core/src"));
    path
}

/// Testing an old build by mistake makes a fixed bug look unfixed, or the reverse. The warning
/// goes to the test's captured stderr, which is shown exactly when a test fails.
fn warn_if_stale(binary: &Path, sources: &Path) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(binary) else {
        return;
    };
    let mut dirs = vec![sources.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if modified(&p).is_some_and(|m| m > built) {
                eprintln!(
                    "warning: {} is newer than {}: run `cargo build --release --bins` to test the current code",
                    p.display(),
                    binary.display()
                );
                return;
            }
        }
    }
}

/// The variables a developer's shell may hold that would change what the sidecar under test
/// reads; each test decides them itself.
const INHERITED_OVERRIDES: [&str; 3] = [
    "SIDECAR_CONFIG",
    "SIDECAR_ADMIN_ADDRESS",
    "SIDECAR_LOG_FORMAT",
];

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sidecar ARGS...` with the extra environment `env` to its end (at most 10 s) and
/// returns what it printed.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in INHERITED_OVERRIDES {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let child = cmd.spawn().expect("spawn the sidecar binary");
    let pid = child.id();
    // Output is read on another thread so that a command that never exits can be killed.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(out) => out.expect("wait for the sidecar binary"),
        Err(_) => {
            signal_pid(pid, Signal::SIGKILL);
            panic!("`sidecar {}` did not exit within 10s", args.join(" "));
        }
    };
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn signal_pid(pid: u32, sig: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
    // The process may have exited on its own in the meantime; that is not the test's concern.
    let _ = nix::sys::signal::kill(pid, sig);
}

pub struct Builder {
    doc: Value,
    layout: Layout,
    access_log: bool,
    env: Vec<(String, String)>,
}

impl Builder {
    /// Lay the config file out as a mounted Kubernetes ConfigMap.
    pub fn configmap_layout(mut self) -> Self {
        self.layout = Layout::ConfigMap;
        self
    }

    /// Write the access log to `access.log` in the sidecar's directory (see
    /// [`Sidecar::access_log`]).
    pub fn access_log(mut self) -> Self {
        self.access_log = true;
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts the sidecar and waits until `/ready` answers 200.
    ///
    /// Listener ports are chosen before the process binds them, so another test may take one
    /// in between; the sidecar then exits saying so, and it is started again on fresh ports
    /// (the test learns its addresses only from the running sidecar, so nothing else changes).
    pub async fn start(self) -> Sidecar {
        const ATTEMPTS: u32 = 3;
        let mut attempt = 1;
        loop {
            let mut sidecar = self.spawn();
            let status = match sidecar.wait_ready().await {
                Ok(()) => return sidecar,
                Err(status) => status,
            };
            if attempt < ATTEMPTS && sidecar.stderr().contains("Address already in use") {
                attempt += 1;
                continue;
            }
            panic!("the sidecar exited during start-up with {status}");
        }
    }

    /// Starts the sidecar without waiting for anything.
    pub fn spawn(&self) -> Sidecar {
        let dir = tempfile::Builder::new()
            .prefix("sidecar-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        let mut doc = self.doc.clone();
        let mut addresses = Addresses::new();
        addresses.assign(&mut doc);
        if self.access_log {
            doc["access_log"] = json!({ "path": dir.path().join("access.log") });
        }
        let mut file = ConfigFile::new(dir.path(), self.layout);
        file.write(&to_yaml(&doc));

        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(file.path())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout.log"))
            .stderr(File::create(&stderr).expect("create stderr.log"));
        for var in INHERITED_OVERRIDES {
            cmd.env_remove(var);
        }
        if std::env::var_os("SIDECAR_LOG").is_none() {
            cmd.env("SIDECAR_LOG", "info");
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().expect("spawn the sidecar binary");
        Sidecar {
            child,
            exit: None,
            file,
            addresses,
            doc,
            stdout,
            stderr,
            dir,
        }
    }
}

/// A running sidecar; killed (SIGKILL) when dropped if still running.
pub struct Sidecar {
    child: Child,
    exit: Option<ExitStatus>,
    file: ConfigFile,
    addresses: Addresses,
    doc: Value,
    stdout: PathBuf,
    stderr: PathBuf,
    // Last, so the files are removed after the process is gone.
    dir: TempDir,
}

/// Memory figures from `/proc/PID/status`, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub resident: u64,
    /// Highest resident set size so far (`VmHWM`).
    pub high_water_mark: u64,
}

impl Sidecar {
    /// A sidecar running `doc` (listeners without an address get a free port).
    pub fn builder(doc: Value) -> Builder {
        Builder {
            doc,
            layout: Layout::Plain,
            access_log: false,
            env: Vec::new(),
        }
    }

    /// Starts a sidecar running `doc` and waits until it is ready.
    pub async fn start(doc: Value) -> Sidecar {
        Sidecar::builder(doc).start().await
    }

    /// Where listener `name` listens.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self
            .addresses
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("no listener named {name:?} in the config"))
    }

    pub fn admin(&self) -> Admin {
        Admin::new(self.addresses.admin)
    }

    /// Waits until `/ready` answers 200; the error is the exit status if the process ended
    /// first.
    async fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let admin = self.admin();
        eventually("the sidecar to become ready", START_DEADLINE, async || {
            if let Some(status) = self.try_exit() {
                return Ok(Err(status));
            }
            admin.ready().await.map(Ok)
        })
        .await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the config file with `doc`; listeners keep their addresses by name.
    pub fn rewrite_config(&mut self, mut doc: Value) {
        self.addresses.assign(&mut doc);
        if let Some(log) = self.doc.get("access_log") {
            doc["access_log"] = log.clone();
        }
        self.file.write(&to_yaml(&doc));
        self.doc = doc;
    }

    /// Replaces the config file with `text` as is (for documents that must be rejected). A
    /// failure dump keeps showing the last document given as JSON.
    pub fn rewrite_config_text(&mut self, text: &str) {
        self.file.write(text);
    }

    pub fn signal(&self, sig: Signal) {
        signal_pid(self.pid(), sig);
    }

    /// The exit status, if the process has exited. (Polling a child of ours only fails if it
    /// was already reaped, which this type alone does; such a failure reads as "running".)
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `within` for the process to exit; panics if it does not.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        eventually("the sidecar to exit", within, async || {
            self.try_exit().ok_or("still running")
        })
        .await
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The access log entries written so far, one JSON object per line.
    pub fn access_log(&self) -> Vec<Value> {
        let path = self.dir.path().join("access.log");
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l:?}"))
            })
            .collect()
    }

    /// Waits for the access log entry whose `request_id` is `id`.
    pub async fn access_log_entry(&self, id: &str) -> Value {
        eventually(
            &format!("an access log entry with request_id {id:?}"),
            Duration::from_secs(5),
            async || {
                self.access_log()
                    .into_iter()
                    .find(|e| e["request_id"] == id)
                    .ok_or("not logged yet")
            },
        )
        .await
    }

    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of the sidecar");
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
        };
        Memory {
            resident: kib("VmRSS:") * 1024,
            high_water_mark: kib("VmHWM:") * 1024,
        }
    }

    fn dump(&self) {
        const TAIL: usize = 32 * 1024;
        let tail = |s: String| {
            if s.len() > TAIL {
                let mut cut = s.len() - TAIL;
                while !s.is_char_boundary(cut) {
                    cut += 1;
                }
                format!("[... {cut} bytes cut ...]\n{}", &s[cut..])
            } else {
                s
            }
        };
        eprintln!(
            "==== sidecar pid {} in {} ====\n---- config ----\n{}\n---- stderr ----\n{}\n---- stdout ----\n{}",
            self.child.id(),
            self.dir.path().display(),
            to_yaml(&self.doc),
            tail(self.stderr()),
            tail(self.stdout()),
        );
        if let Ok(log) = std::fs::read_to_string(self.dir.path().join("access.log")) {
            eprintln!("---- access log ----\n{}", tail(log));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            self.dump();
        }
    }
}

/// `PROGRAM wait-ready --admin ADMIN --timeout TIMEOUT [-- COMMAND...]` with its output
/// piped, for `program` the sidecar's or the ambassador's binary (both have the command).
pub fn wait_ready_command(program: &Path, admin: &str, timeout: &str, command: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["wait-ready", "--admin", admin, "--timeout", timeout]);
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}
