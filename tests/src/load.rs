//! A steady, bounded stream of requests running beside a test, counting every failure: the
//! witness that a reload or a drain dropped nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::Client;
use crate::wait::eventually;

/// Requests sent on one connection before the loop opens a new one, so that both reused and
/// fresh connections see whatever the test changes.
const REQUESTS_PER_CONNECTION: u64 = 25;

/// Pause between requests: enough traffic to catch a gap, not enough to starve the proxy of
/// the two shared cores.
const PACE: Duration = Duration::from_millis(2);

/// What a load loop saw.
#[derive(Debug)]
pub struct Report {
    pub sent: u64,
    /// One line per failed request: transport error or unexpected status.
    pub failures: Vec<String>,
}

/// A running load loop; see [`start`].
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: JoinHandle<Report>,
}

/// Sends `GET path` to `addr` until stopped, at most `max_requests` times and for at most
/// `max_duration`; every answer must be 200.
pub fn start(addr: SocketAddr, path: &str, max_requests: u64, max_duration: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let progress = sent.clone();
    let path = path.to_owned();
    let task = tokio::spawn(async move {
        let deadline = Instant::now() + max_duration;
        let mut report = Report {
            sent: 0,
            failures: Vec::new(),
        };
        let mut client: Option<Client> = None;
        while !flag.load(Ordering::Relaxed)
            && report.sent < max_requests
            && Instant::now() < deadline
        {
            if report.sent.is_multiple_of(REQUESTS_PER_CONNECTION) {
                client = None;
            }
            let c = match &mut client {
                Some(c) => c,
                None => match Client::try_http1(addr).await {
                    Ok(c) => client.insert(c),
                    Err(e) => {
                        report.sent += 1;
                        report
                            .failures
                            .push(format!("request {}: {e}", report.sent));
                        continue;
                    }
                },
            };
            report.sent += 1;
            progress.store(report.sent, Ordering::Relaxed);
            match c.get(&path).try_send().await {
                Ok(r) if r.status == 200 => {}
                Ok(r) => {
                    report.failures.push(format!(
                        "request {}: status {} {:?}",
                        report.sent,
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                Err(e) => {
                    report
                        .failures
                        .push(format!("request {}: {e}", report.sent));
                    client = None;
                }
            }
            tokio::time::sleep(PACE).await;
        }
        report
    });
    Load { stop, sent, task }
}

impl Load {
    /// Stops the loop and returns what it saw.
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load loop does not panic")
    }

    /// Waits until the loop has sent `n` more requests, so that a test's change happens
    /// between requests, not before the first or after the last.
    pub async fn run_for(&self, n: u64) {
        let target = self.sent.load(Ordering::Relaxed) + n;
        eventually(
            &format!("the load loop to send {n} more requests"),
            Duration::from_secs(10),
            async || match self.sent.load(Ordering::Relaxed) {
                s if s >= target || self.task.is_finished() => Ok(()),
                s => Err(s),
            },
        )
        .await;
    }

    /// Lets the loop run to its bounds and returns what it saw.
    pub async fn stop_when_done(self) -> Report {
        self.task.await.expect("the load loop does not panic")
    }
}
