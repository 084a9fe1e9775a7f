//! Harness for the ambassador's end-to-end tests: the release-built `ambassador` as a child
//! process, an HTTPS "external API" with a test CA that checks the credential it gets, and
//! the npm `oauth2-mock-server` token server (installed by `tests/run.sh` into tests/oauth).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tempfile::TempDir;

use crate::admin::Admin;
use crate::wait::eventually;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

/// A test CA and a server certificate for 127.0.0.1 signed by it; also a client certificate
/// (`client_cert_file`, `client_key_file`) for mTLS, which `require_client_cert` makes the
/// servers started afterwards demand.
pub struct TestCa {
    pub ca_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    leaf_der: rustls::pki_types::CertificateDer<'static>,
    leaf_key: Vec<u8>,
    client_auth: bool,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "api.test".to_owned()])
            .expect("params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA");
        let client_key = KeyPair::generate().expect("key");
        let client = CertificateParams::new(vec!["client.test".to_owned()])
            .expect("params")
            .signed_by(&client_key, &issuer)
            .expect("client cert");
        let client_cert_file = dir.join("client.pem");
        let client_key_file = dir.join("client-key.pem");
        std::fs::write(&client_cert_file, client.pem()).expect("write client cert");
        std::fs::write(&client_key_file, client_key.serialize_pem()).expect("write client key");
        TestCa {
            ca_file,
            client_cert_file,
            client_key_file,
            ca_der: ca_cert.der().clone(),
            leaf_der: leaf.der().clone(),
            leaf_key: leaf_key.serialize_der(),
            client_auth: false,
        }
    }

    /// Servers started from now on accept only clients with a certificate this CA signed.
    pub fn require_client_cert(&mut self) {
        self.client_auth = true;
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if self.client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(self.leaf_key.clone()).expect("key der");
        let mut server = builder
            .with_single_cert(vec![self.leaf_der.clone()], key)
            .expect("server config");
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(server)
    }
}

/// What the API saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    /// The Host header (HTTP/1) or `:authority` (HTTP/2).
    pub host: String,
    pub path: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Decides whether a request carries the right credential.
pub type Check = Arc<dyn Fn(&Seen) -> bool + Send + Sync>;

/// An HTTPS API on loopback: 200 with `ok` when `check` passes, 401 otherwise.
pub struct HttpsApi {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub check: Arc<Mutex<Check>>,
    pub refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsApi {
    pub async fn start(ca: &TestCa, check: Check) -> HttpsApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let check = Arc::new(Mutex::new(check));
        let refused = Arc::new(AtomicUsize::new(0));
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        let (s, c, r) = (seen.clone(), check.clone(), refused.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, s, c, r) = (acceptor.clone(), s.clone(), c.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (s, c, r) = (s.clone(), c.clone(), r.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let one = Seen {
                                method: parts.method.clone(),
                                host: parts
                                    .headers
                                    .get("host")
                                    .and_then(|h| h.to_str().ok())
                                    .or(parts.uri.authority().map(|a| a.as_str()))
                                    .unwrap_or("")
                                    .to_owned(),
                                body,
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map_or("/".into(), |p| p.to_string()),
                                version: parts.version,
                                headers: parts.headers,
                            };
                            let ok = (c.lock().expect("check").clone())(&one);
                            s.lock().expect("seen").push(one);
                            let mut resp = Response::new(Full::new(Bytes::from_static(if ok {
                                b"ok"
                            } else {
                                b"unauthorized"
                            })));
                            if !ok {
                                r.fetch_add(1, Ordering::Relaxed);
                                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        HttpsApi {
            addr,
            seen,
            check,
            refused,
            task,
        }
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("seen")
            .last()
            .cloned()
            .expect("a request reached the API")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }
}

/// A child process killed when dropped, its output in files.
struct Proc {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command, dir: &Path, name: &str) -> Proc {
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc {
        child,
        stdout,
        stderr,
    }
}

/// The npm oauth2-mock-server, shaped by `tests/oauth/server.mjs`'s environment variables.
pub struct TokenServer {
    proc: Proc,
    pub port: u16,
}

impl TokenServer {
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> TokenServer {
        let script = workspace().join("tests/oauth/server.mjs");
        assert!(
            workspace()
                .join("tests/oauth/node_modules/oauth2-mock-server")
                .is_dir(),
            "oauth2-mock-server is not installed: run `npm ci --prefix tests/oauth` (tests/run.sh does)"
        );
        let mut cmd = Command::new("node");
        cmd.arg(&script);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let name = format!("oauth-{}", fastrand::u32(..));
        let proc = spawn(cmd, dir, &name);
        let out = proc.stdout.clone();
        let port = eventually(
            "the token server to listen",
            Duration::from_secs(15),
            async || {
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                text.lines()
                    .find_map(|l| l.strip_prefix("listening "))
                    .and_then(|u| {
                        u.rsplit(':')
                            .next()?
                            .trim_end_matches('/')
                            .parse::<u16>()
                            .ok()
                    })
                    .ok_or(text)
            },
        )
        .await;
        TokenServer { proc, port }
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// When each token request was answered, in Unix milliseconds.
    pub fn request_times(&self) -> Vec<u64> {
        std::fs::read_to_string(&self.proc.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("token-request ")?
                    .split(' ')
                    .nth(2)?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Token requests answered so far.
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(&self.proc.stdout)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("token-request "))
            .count()
    }
}

/// The ambassador under test.
pub struct Ambassador {
    proc: Proc,
    pub dir: TempDir,
    pub admin: Admin,
    pub listener: SocketAddr,
}

impl Ambassador {
    /// CPU time the process has used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.proc.child.id()))
            .unwrap_or_default();
        // Fields after "(comm)": state is the 1st, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        n(11) + n(12)
    }
}

pub fn binary() -> PathBuf {
    let path = crate::process::release_dir().join("ambassador");
    assert!(
        path.is_file(),
        "the ambassador binary is missing at {}: run `cargo build --release --bins` first",
        path.display()
    );
    path
}

impl Ambassador {
    /// Start with `routes_yaml` (the `routes:` list, indented two spaces) under a listener
    /// and admin on free loopback ports; waits for `/ready`.
    pub async fn start(dir: TempDir, routes_yaml: &str, env: &[(&str, &str)]) -> Ambassador {
        let listener = crate::ports::loopback();
        let admin = crate::ports::loopback();
        let yaml = format!(
            "admin: {{address: \"{admin}\"}}\nruntime: {{worker_threads: 2}}\nlisteners:\n  - {{name: out, address: \"{listener}\"}}\nroutes:\n{routes_yaml}"
        );
        let cfg = dir.path().join("ambassador.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .env("AMBASSADOR_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = spawn(cmd, dir.path(), "ambassador");
        let admin = Admin::new(admin);
        let stderr = proc.stderr.clone();
        eventually(
            "the ambassador to be ready",
            Duration::from_secs(15),
            async || {
                admin.ready().await.map_err(|e| {
                    format!(
                        "{e}; stderr: {}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    )
                })
            },
        )
        .await;
        Ambassador {
            proc,
            dir,
            admin,
            listener,
        }
    }

    /// Everything the process wrote: stdout and stderr.
    pub fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}{}", read(&self.proc.stdout), read(&self.proc.stderr))
    }
}
