//! A real `redis-server` on a loopback port, in a temporary directory, without persistence;
//! killed when dropped. `tests/run.sh` installs it (Debian's `redis-server`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ports;
use crate::wait::eventually;

pub struct Redis {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server and waits until it answers `PING`.
    pub async fn start() -> Redis {
        let dir = tempfile::tempdir().expect("a temporary directory for redis");
        let addr = ports::loopback();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server` (tests/run.sh does)")
            });
        let redis = Redis {
            child,
            addr,
            _dir: dir,
        };
        eventually(
            "redis-server to answer PING",
            Duration::from_secs(10),
            async || match redis.command(&["PING"]).await {
                Ok(r) if r.starts_with("+PONG") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        redis
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Sends one command in RESP and returns the raw reply.
    pub async fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(self.addr).await?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no reply"))??;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Stops the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
