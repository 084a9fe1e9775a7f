//! Network namespaces as pods, for the interception tests: each test builds its own small
//! network (a bridge namespace and one namespace per pod, joined by veth pairs, addressed
//! from 198.18.0.0/15, the range reserved for test beds, with no route out), runs apps
//! and sidecars inside with `ip netns exec`, and removes every namespace when the network
//! is dropped, also when the test panics. Nothing is created in the host's namespace.
//!
//! Needs root, `ip` (iproute2) and `iptables`; `tests/run.sh` installs them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::metrics::Metrics;
use crate::wait::eventually;

/// The UID (and GID) the sidecars run as in these tests: the owner match of the nat rules
/// exempts its connections.
pub const PROXY_UID: u32 = 1337;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Run a command to completion; panic with its output when it fails.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is it installed? tests/run.sh installs it)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails the test loudly unless it runs as root with `ip` available.
pub fn require_root_and_ip() {
    let uid = must(Command::new("id").arg("-u"));
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the interception tests create network namespaces and need root"
    );
    must(Command::new("ip").arg("-V"));
}

/// One network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let name = format!(
            "sct{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        must(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS args...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Output {
        must(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run inside the namespace; panic when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        must(self.command(program).args(args))
    }

    /// Run inside the namespace and return stdout; whatever the status.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A process inside a namespace, killed on drop; its output goes to files that are
/// printed when the test is failing.
pub struct NsProcess {
    pub what: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl NsProcess {
    /// Start `program args` in `ns`, optionally as `uid` (via `setpriv`), logging to `dir`.
    pub fn spawn(
        ns: &Netns,
        dir: &Path,
        what: &str,
        uid: Option<u32>,
        program: &str,
        args: &[&str],
    ) -> NsProcess {
        let stdout = dir.join(format!("{what}.stdout"));
        let stderr = dir.join(format!("{what}.stderr"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]);
        if let Some(uid) = uid {
            let (u, g) = (format!("--reuid={uid}"), format!("--regid={uid}"));
            cmd.args(["setpriv", &u, &g, "--clear-groups"]);
        }
        cmd.arg(program).args(args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("log file"))
            .stderr(File::create(&stderr).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({program}): {e}"));
        NsProcess {
            what: what.to_owned(),
            child,
            stdout,
            stderr,
        }
    }

    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- {} stdout\n{}--- {} stderr\n{}",
            self.what,
            read(&self.stdout),
            self.what,
            read(&self.stderr)
        )
    }

    /// Panics (with the logs) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early ({status}):\n{}", self.what, self.logs());
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        // `ip netns exec` execs the program (and setpriv execs too), so the child is the
        // process itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A pod: a namespace with one address on the shared bridge.
pub struct Pod {
    pub ns: Netns,
    pub addr: String,
}

/// A small network of pods joined by a bridge living in a namespace of its own.
/// Fields drop in order: pods first, then the bridge namespace (which takes the veths).
pub struct Network {
    pub pods: Vec<Pod>,
    bridge: Netns,
}

impl Network {
    /// Pods named by `roles`, at 198.18.0.1, .2, ... on a /24.
    pub fn new(roles: &[&str]) -> Network {
        require_root_and_ip();
        let bridge = Netns::new("br");
        bridge.ip(&["link", "add", "br0", "type", "bridge"]);
        bridge.ip(&["link", "set", "br0", "up"]);
        let mut pods = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            let ns = Netns::new(role);
            let port = format!("p{i}");
            let addr = format!("198.18.0.{}", i + 1);
            bridge.ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ]);
            bridge.ip(&["link", "set", &port, "master", "br0"]);
            bridge.ip(&["link", "set", &port, "up"]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            pods.push(Pod { ns, addr });
        }
        Network { pods, bridge }
    }

    pub fn pod(&self, i: usize) -> &Pod {
        &self.pods[i]
    }

    /// The bridge namespace (to watch the wire).
    pub fn bridge(&self) -> &Netns {
        &self.bridge
    }
}

/// A temporary directory readable by the sidecar's UID (tempfile makes them 0700).
pub fn shared_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    must(Command::new("chmod").arg("755").arg(dir.path()));
    dir
}

/// The sidecar's `/metrics`, fetched from inside its pod (the admin port is on loopback).
pub fn metrics(pod: &Pod, admin_port: u16) -> Metrics {
    let out = pod.ns.run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{admin_port}/metrics"),
        ],
    );
    Metrics::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Wait until an HTTP URL answers 200 from inside `pod`.
pub async fn wait_http_ok(pod: &Pod, url: &str, within: Duration) {
    eventually(
        &format!("{url} to answer 200 in {}", pod.ns.name),
        within,
        async || {
            let out = pod.ns.output(
                "curl",
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                    url,
                ],
            );
            let code = String::from_utf8_lossy(&out.stdout).into_owned();
            if code == "200" { Ok(()) } else { Err(code) }
        },
    )
    .await;
}

/// Wait until something listens on TCP `port` inside `pod`.
pub async fn wait_listening(pod: &Pod, port: u16, within: Duration) {
    eventually(
        &format!("port {port} listening in {}", pod.ns.name),
        within,
        async || {
            let out = pod.ns.output("ss", &["-Htln", &format!("sport = :{port}")]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.trim().is_empty() {
                Err(text)
            } else {
                Ok(())
            }
        },
    )
    .await;
}
