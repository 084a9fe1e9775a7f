//! Start-up, signals, hot reload and graceful drain.
//!
//! - Reload (SIGHUP, a change to the config file, including a Kubernetes ConfigMap's
//!   `..data` symlink swap): parse and validate, bind any new listener addresses, then swap
//!   the snapshot. In-flight requests keep the snapshot they started with; clusters whose
//!   config did not change keep their pools. A bad file changes nothing and says why.
//! - Drain (SIGTERM, SIGINT, `POST /drain`): `/ready` turns 503 at once; the proxy keeps
//!   serving for `drain_grace` (the app may still be finishing), then stops accepting, asks
//!   open connections to finish, and waits for them up to `drain_deadline`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState, Control};
use crate::config::{Config, ConfigErrors};
use crate::http::inject::RouteHooks;
use crate::listener::{self, Accept};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// How the process was started.
pub struct Options {
    pub config: Config,
    /// The file to reload from, if any.
    pub config_path: Option<PathBuf>,
    /// Overrides `admin.address` (from the environment).
    pub admin_address: Option<String>,
    /// Metric name prefix: the program's name.
    pub metrics_prefix: &'static str,
    /// Metrics made by the program (with families of its own); `Metrics::new` when unset.
    pub metrics: Option<Metrics>,
    /// Per-attempt hooks for routes, set by programs that edit requests (the ambassador).
    pub hooks: Option<Arc<dyn RouteHooks>>,
    /// The program's own config as `/config_dump` shows it, beside the proxy config it
    /// runs; it must hold no secret.
    pub config_dump: Option<serde_json::Value>,
}

/// Worker threads to use: the configured count, or what the CPU quota allows.
pub fn worker_threads(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Build the async runtime sized to the config and run the proxy until it has drained.
pub fn run(opts: Options) -> Result<(), RunError> {
    let threads = worker_threads(opts.config.runtime.worker_threads);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(RunError::Runtime)?;
    tracing::info!(worker_threads = threads, "starting");
    let result = rt.block_on(serve(opts));
    // Whatever is still running after the drain (a DNS lookup on the blocking pool, an
    // upgraded tunnel) must not hold the exit back.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

struct RunningListener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    drain: watch::Sender<bool>,
}

struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    listeners: HashMap<String, RunningListener>,
    tracker: TaskTracker,
    config_path: Option<PathBuf>,
    admin_address: Option<String>,
    last_text: Option<String>,
    hooks: Option<Arc<dyn RouteHooks>>,
}

impl Proxy {
    /// Bind every listener of `cfg` that is not already running at the same address.
    /// Nothing is started unless all binds succeed.
    fn bind_new(
        &self,
        cfg: &Config,
    ) -> Result<Vec<(String, SocketAddr, tokio::net::TcpListener)>, RunError> {
        let mut bound = Vec::new();
        for l in &cfg.listeners {
            let Ok(addr) = l.address.parse::<SocketAddr>() else {
                continue;
            };
            if self.listeners.get(&l.name).is_some_and(|r| r.addr == addr) {
                continue;
            }
            let sock = listener::bind(addr).map_err(|source| RunError::Bind {
                what: format!("listener {:?}", l.name),
                addr,
                source,
            })?;
            bound.push((l.name.clone(), addr, sock));
        }
        Ok(bound)
    }

    fn start(&mut self, bound: Vec<(String, SocketAddr, tokio::net::TcpListener)>) {
        for (name, addr, sock) in bound {
            let (stop, stop_rx) = watch::channel(false);
            let (drain, drain_rx) = watch::channel(false);
            if let Some(old) = self
                .listeners
                .insert(name.clone(), RunningListener { addr, stop, drain })
            {
                let _ = old.stop.send(true);
                let _ = old.drain.send(true);
            }
            tracing::info!(listener = %name, %addr, "listening");
            tokio::spawn(listener::run(Accept {
                name,
                listener: sock,
                snapshot: self.snapshot.clone(),
                metrics: self.metrics.clone(),
                stop: stop_rx,
                drain: drain_rx,
                tracker: self.tracker.clone(),
            }));
        }
    }

    /// Stop listeners the config no longer has.
    fn stop_removed(&mut self, cfg: &Config) {
        self.listeners.retain(|name, r| {
            let keep = cfg.listeners.iter().any(|l| &l.name == name);
            if !keep {
                tracing::info!(listener = %name, "listener removed; draining its connections");
                let _ = r.stop.send(true);
                let _ = r.drain.send(true);
            }
            keep
        });
    }

    async fn reload(&mut self, forced: bool) {
        let Some(path) = self.config_path.clone() else {
            tracing::warn!(
                "reload asked, but there is no proxy config file to reload (the built-in config, or the ambassador's own file, read at start only)"
            );
            return;
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(file = %path.display(), error = %e, "reload failed: cannot read the config file; keeping the running config");
                return;
            }
        };
        if !forced && self.last_text.as_deref() == Some(text.as_str()) {
            return;
        }
        let result = Config::from_yaml(&text).map(|mut cfg| {
            apply_env(&mut cfg, self.admin_address.as_deref());
            cfg
        });
        let mut cfg = match result {
            Ok(cfg) => cfg,
            Err(errs) => {
                self.metrics.reload(false);
                self.last_text = Some(text);
                log_config_errors(&path, &errs, "reload rejected; keeping the running config");
                return;
            }
        };
        self.last_text = Some(text);
        let old = self.snapshot.load_full();
        keep_start_only_settings(&mut cfg, &old.config);
        let bound = match self.bind_new(&cfg) {
            Ok(b) => b,
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(error = %e, "reload rejected; keeping the running config");
                return;
            }
        };
        let mut next = match Snapshot::build(cfg.clone(), Some(&old), &self.metrics).await {
            Ok(s) => s,
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(error = %e, "reload rejected: cannot open the access log; keeping the running config");
                return;
            }
        };
        if let Some(h) = &self.hooks {
            next.attach_hooks(h.as_ref());
        }
        self.snapshot.store(Arc::new(next));
        self.start(bound);
        self.stop_removed(&cfg);
        self.metrics.reload(true);
        tracing::info!(file = %path.display(), "config reloaded");
    }
}

/// Settings read only at start keep their running values across a reload (so
/// `/config_dump` shows what really runs); a change to one is logged as needing a restart.
fn keep_start_only_settings(next: &mut Config, running: &Config) {
    if next.admin != running.admin {
        tracing::warn!("admin.address changed; it takes effect at the next restart");
        next.admin = running.admin.clone();
    }
    let (n, r) = (&mut next.runtime, &running.runtime);
    if n.worker_threads != r.worker_threads {
        tracing::warn!("runtime.worker_threads changed; it takes effect at the next restart");
        n.worker_threads = r.worker_threads;
    }
    if n.watch_config != r.watch_config {
        tracing::warn!("runtime.watch_config changed; it takes effect at the next restart");
        n.watch_config = r.watch_config;
    }
}

/// Print every problem of a config document, one per line, under a heading.
pub fn log_config_errors(path: &Path, errs: &ConfigErrors, what: &str) {
    for e in &errs.0 {
        tracing::error!(file = %path.display(), "{e}");
    }
    tracing::error!(file = %path.display(), problems = errs.0.len(), "{what}");
}

/// Settings the pod spec gives through the environment win over the file.
pub fn apply_env(cfg: &mut Config, admin_address: Option<&str>) {
    if let Some(a) = admin_address {
        cfg.admin.address = a.to_owned();
    }
}

/// Watch the config file's directory (editors replace files; Kubernetes swaps a `..data`
/// symlink): a change there that may be the file's asks for a reload, which compares
/// content. Reads of the file (ours included) and writes to the directory's other files
/// (an access log kept beside the config) ask for nothing ([`crate::watch::may_change`]).
fn watch_config(path: &Path, control: mpsc::UnboundedSender<Control>) {
    let mut changes = match crate::watch::files(vec![path.to_owned()]) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; SIGHUP still reloads");
            return;
        }
    };
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            if control.send(Control::Reload { forced: false }).is_err() {
                return;
            }
        }
    });
}

async fn serve(opts: Options) -> Result<(), RunError> {
    let metrics = opts
        .metrics
        .unwrap_or_else(|| Metrics::new(opts.metrics_prefix));
    let mut cfg = opts.config;
    apply_env(&mut cfg, opts.admin_address.as_deref());
    let runtime_cfg = cfg.runtime.clone();

    let admin_addr: SocketAddr = cfg.admin.address.parse().map_err(|_| RunError::Bind {
        what: "the admin server".into(),
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source: std::io::Error::other("invalid address"),
    })?;
    let admin_sock = listener::bind(admin_addr).map_err(|source| RunError::Bind {
        what: "the admin server".into(),
        addr: admin_addr,
        source,
    })?;

    let mut snapshot = Snapshot::build(cfg.clone(), None, &metrics)
        .await
        .map_err(RunError::AccessLog)?;
    if let Some(h) = &opts.hooks {
        snapshot.attach_hooks(h.as_ref());
    }
    let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let admin_state = Arc::new(AdminState {
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        ready: false.into(),
        control: control_tx.clone(),
        config_dump: opts.config_dump,
    });
    let admin_task = tokio::spawn(admin::serve(admin_sock, admin_state.clone()));
    tracing::info!(address = %admin_addr, "admin listening");

    let mut proxy = Proxy {
        snapshot,
        metrics,
        listeners: HashMap::new(),
        tracker: TaskTracker::new(),
        last_text: opts
            .config_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok()),
        config_path: opts.config_path,
        admin_address: opts.admin_address,
        hooks: opts.hooks,
    };
    let bound = proxy.bind_new(&cfg)?;
    proxy.start(bound);
    admin_state.ready.store(true, Ordering::Release);

    if let (Some(p), true) = (&proxy.config_path, runtime_cfg.watch_config) {
        watch_config(p, control_tx.clone());
    }
    let mut hup = signal(SignalKind::hangup()).map_err(RunError::Runtime)?;
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Runtime)?;

    let skip_grace = loop {
        tokio::select! {
            _ = hup.recv() => proxy.reload(true).await,
            _ = term.recv() => break false,
            _ = int.recv() => break false,
            Some(c) = control.recv() => match c {
                Control::Reload { forced } => {
                    // Editors and ConfigMap swaps come as bursts of events: settle, then read once.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let mut forced = forced;
                    // Fold the burst into one reload, but keep a drain or shutdown that came
                    // in the middle of it.
                    let mut then = None;
                    while let Ok(next) = control.try_recv() {
                        match next {
                            Control::Reload { forced: f } => forced |= f,
                            other => {
                                then = Some(other);
                                break;
                            }
                        }
                    }
                    proxy.reload(forced).await;
                    match then {
                        Some(Control::Drain) => break false,
                        Some(Control::Shutdown) => break true,
                        _ => {}
                    }
                }
                Control::Drain => break false,
                Control::Shutdown => break true,
            },
        }
    };

    admin_state.ready.store(false, Ordering::Release);
    // The drain settings are read now, from the running config: a reload may have changed them.
    let drain_cfg = proxy.snapshot.load().config.runtime.clone();
    let grace = drain_cfg.drain_grace.get();
    if !skip_grace && !grace.is_zero() {
        tracing::info!(grace = %humantime::format_duration(grace), "draining: /ready is 503; still serving during the grace period");
        let sleep = tokio::time::sleep(grace);
        tokio::pin!(sleep);
        // A second signal or a shutdown request cuts the grace period short.
        tokio::select! {
            _ = &mut sleep => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
            Some(Control::Shutdown) = control.recv() => {}
        }
    }
    tracing::info!("closing listeners; waiting for in-flight requests");
    for r in proxy.listeners.values() {
        let _ = r.stop.send(true);
        let _ = r.drain.send(true);
    }
    proxy.tracker.close();
    let deadline = drain_cfg.drain_deadline.get();
    if tokio::time::timeout(deadline, proxy.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = proxy.tracker.len(),
            "drain deadline passed; closing the remaining connections"
        );
    } else {
        tracing::info!("drained");
    }
    admin_task.abort();
    Ok(())
}
