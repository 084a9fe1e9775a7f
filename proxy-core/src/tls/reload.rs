//! The live workload identity: loaded at start, watched, and reloaded when its files change,
//! without touching established connections.
//!
//! Handshakes read the credentials through resolvers and verifiers that look at one
//! `ArcSwap` each time, so a new certificate or trust bundle applies to the next handshake
//! while connections already open keep the session they have. Issuers replace files in
//! several ways (in place, by rename, or by Kubernetes' `..data` symlink swap in a projected
//! volume), so the file directories are watched as a whole, events are settled briefly, and
//! the files are compared by content before anything is reloaded. A rescan every
//! `RESCAN` catches a change whose event was missed (some volume types send none). A
//! change that does not load (a half-written set, a key that does not match) keeps the
//! running credentials and says why.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::mpsc;

use super::identity::{self, Credentials, IdentityError, IdentityFiles};
use super::metrics::TlsMetrics;

const RESCAN: Duration = Duration::from_secs(30);
/// Writers replace the three files one after the other: wait for the burst to end.
const SETTLE: Duration = Duration::from_millis(100);

/// Tells identities apart in the metrics (see `TlsMetrics::certificate`).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The workload's credentials as they are now.
pub struct WorkloadIdentity {
    id: u64,
    files: IdentityFiles,
    current: ArcSwap<Credentials>,
    /// A hash of the three files' bytes when they were last loaded (or last failed to).
    fingerprint: Mutex<u64>,
    metrics: TlsMetrics,
}

impl std::fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("files", &self.files)
            .field("current", &self.current.load().facts)
            .finish()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn fingerprint(files: &IdentityFiles) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for f in [&files.cert, &files.key, &files.bundle] {
        // An unreadable file hashes as empty: it still differs from a readable one.
        h.update(&std::fs::read(f).unwrap_or_default());
        h.update(&[0xff]);
    }
    h.digest()
}

impl WorkloadIdentity {
    /// Load the files and start watching them (for as long as the value lives).
    pub fn start(files: IdentityFiles, metrics: TlsMetrics) -> Result<Arc<Self>, IdentityError> {
        let print = fingerprint(&files);
        let creds = identity::load(&files)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        metrics.certificate(id, &creds.facts, now_unix());
        tracing::info!(
            spiffe_id = %creds.facts.id,
            serial = %creds.facts.serial,
            not_after = %identity::rfc3339(creds.facts.not_after),
            "workload certificate loaded"
        );
        let me = Arc::new(WorkloadIdentity {
            id,
            files,
            current: ArcSwap::from_pointee(creds),
            fingerprint: Mutex::new(print),
            metrics,
        });
        let files = vec![
            me.files.cert.clone(),
            me.files.key.clone(),
            me.files.bundle.clone(),
        ];
        tokio::spawn(watch(Arc::downgrade(&me), files));
        Ok(me)
    }

    pub fn files(&self) -> &IdentityFiles {
        &self.files
    }

    /// The credentials for the next handshake.
    pub fn current(&self) -> Arc<Credentials> {
        self.current.load_full()
    }

    /// Load the files again if their bytes changed; keep the running credentials if the new
    /// ones do not load.
    pub fn reload_if_changed(&self) {
        let print = fingerprint(&self.files);
        {
            let Ok(mut last) = self.fingerprint.lock() else {
                return;
            };
            if *last == print {
                return;
            }
            *last = print;
        }
        match identity::load(&self.files) {
            Ok(creds) => {
                let old = self.current.load();
                tracing::info!(
                    spiffe_id = %creds.facts.id,
                    serial = %creds.facts.serial,
                    previous_serial = %old.facts.serial,
                    not_after = %identity::rfc3339(creds.facts.not_after),
                    "workload certificate reloaded; new handshakes use it"
                );
                drop(old);
                // An identity a config reload has replaced keeps serving its old connections
                // but no longer speaks for the process in the metrics.
                let current = self.metrics.owns(self.id);
                if current {
                    self.metrics.certificate(self.id, &creds.facts, now_unix());
                    self.metrics.reload(true);
                }
                self.current.store(Arc::new(creds));
            }
            Err(e) => {
                if self.metrics.owns(self.id) {
                    self.metrics.reload(false);
                }
                tracing::warn!(error = %e, "workload certificate files changed but do not load; keeping the running certificate");
            }
        }
    }

    /// Refresh the time-left gauge; while the certificate is expired, say so at once and
    /// then once a minute (`expired_ticks` counts the seconds it has been).
    fn tick(&self, expired_ticks: &mut u64) {
        let creds = self.current.load();
        let now = now_unix();
        self.metrics.tick(self.id, &creds.facts, now);
        if creds.facts.not_after > now {
            *expired_ticks = 0;
            return;
        }
        *expired_ticks += 1;
        if *expired_ticks % 60 == 1 {
            tracing::error!(
                spiffe_id = %creds.facts.id,
                file = %self.files.cert.display(),
                not_after = %identity::rfc3339(creds.facts.not_after),
                "the workload certificate has expired and no valid replacement was written; peers will refuse handshakes"
            );
        }
    }
}

/// Watch the directories; reload on a change that may be one of `files`, on the rescan timer;
/// refresh the expiry gauge.
/// Ends when the identity is dropped (a config reload replaced it).
async fn watch(me: Weak<WorkloadIdentity>, files: Vec<PathBuf>) {
    // Our own reads of the files are events too: only changes that may be theirs count.
    let mut rx = match crate::watch::files(files) {
        Ok(rx) => Some(rx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the certificate files; rescanning every 30s instead");
            None
        }
    };
    let mut expiry_tick = tokio::time::interval(Duration::from_secs(1));
    let mut rescan = tokio::time::interval(RESCAN);
    let mut expired_ticks = 0u64;
    loop {
        tokio::select! {
            Some(()) = changed(&mut rx) => {
                tokio::time::sleep(SETTLE).await;
                if let Some(rx) = &mut rx {
                    while rx.try_recv().is_ok() {}
                }
                let Some(me) = me.upgrade() else { return };
                me.reload_if_changed();
            }
            _ = rescan.tick() => {
                let Some(me) = me.upgrade() else { return };
                me.reload_if_changed();
            }
            _ = expiry_tick.tick() => {
                let Some(me) = me.upgrade() else { return };
                me.tick(&mut expired_ticks);
            }
        }
    }
}

/// The next change, or never without a watch.
async fn changed(rx: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Presents the current certificate to clients (inbound handshakes).
#[derive(Debug)]
pub struct CurrentServerCert(pub Arc<WorkloadIdentity>);

impl ResolvesServerCert for CurrentServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }
}

/// Presents the current certificate to servers (outbound handshakes).
#[derive(Debug)]
pub struct CurrentClientCert(pub Arc<WorkloadIdentity>);

impl ResolvesClientCert for CurrentClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
