//! Mesh test helpers: a CA and workload certificates made with the real `sidecar certs`
//! subcommand, the `identity` config block, rotation of the files (rewritten in place, or
//! swapped as Kubernetes swaps a projected volume's `..data` symlink), a TCP relay that
//! records the bytes passing between two sidecars, and a TLS client that presents a workload
//! certificate and reports the one the server presented.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use x509_cert::der::Decode;

use crate::process::cli;

/// A trust domain with its CA, in a temporary directory.
pub struct Mesh {
    dir: TempDir,
    pub trust_domain: String,
}

impl Mesh {
    /// `sidecar certs ca --trust-domain TD`.
    pub fn new(trust_domain: &str) -> Mesh {
        let dir = tempfile::Builder::new()
            .prefix("sidecar-mesh-")
            .tempdir()
            .expect("create a temporary directory");
        let out = cli(
            &[
                "certs",
                "ca",
                "--out",
                path_str(&dir.path().join("ca")),
                "--trust-domain",
                trust_domain,
            ],
            &[],
        );
        assert_eq!(out.code, Some(0), "certs ca failed: {}", out.stderr);
        Mesh {
            dir,
            trust_domain: trust_domain.to_owned(),
        }
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// `spiffe://TD/ns/NS/sa/SA`.
    pub fn id(&self, ns: &str, sa: &str) -> String {
        format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain)
    }

    /// Issues a 24 h certificate for `spiffe_id` into a directory named `name`.
    pub fn issue(&self, name: &str, spiffe_id: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        issue_into(&self.ca_dir(), spiffe_id, "24h", "0s", &out);
        out
    }

    /// A directory laid out as kubelet mounts a projected volume: `cert.pem ->
    /// ..data/cert.pem` (and the same for the key and bundle), `..data -> ..v1`.
    pub fn issue_projected(&self, name: &str, spiffe_id: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        std::fs::create_dir_all(&out).expect("create the volume directory");
        issue_into(&self.ca_dir(), spiffe_id, "24h", "0s", &out.join("..v1"));
        std::os::unix::fs::symlink("..v1", out.join("..data")).expect("link ..data");
        for f in ["cert.pem", "key.pem", "bundle.pem"] {
            std::os::unix::fs::symlink(Path::new("..data").join(f), out.join(f))
                .expect("link a credential file");
        }
        out
    }

    /// A path inside the mesh's temporary directory, for the test's own files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `sidecar certs issue --ca CA --spiffe-id ID --lifetime L --backdate B --out OUT`.
pub fn issue_into(ca: &Path, spiffe_id: &str, lifetime: &str, backdate: &str, out: &Path) {
    let o = cli(
        &[
            "certs",
            "issue",
            "--ca",
            path_str(ca),
            "--spiffe-id",
            spiffe_id,
            "--lifetime",
            lifetime,
            "--backdate",
            backdate,
            "--out",
            path_str(out),
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "certs issue failed: {}", o.stderr);
}

/// Re-issues the certificate of a projected volume made by [`Mesh::issue_projected`] and
/// swaps `..data` to it atomically, as kubelet does.
pub fn rotate_projected(mesh: &Mesh, volume: &Path, spiffe_id: &str, version: u32) {
    let v = format!("..v{version}");
    issue_into(&mesh.ca_dir(), spiffe_id, "24h", "0s", &volume.join(&v));
    let tmp = volume.join("..data_tmp");
    std::os::unix::fs::symlink(&v, &tmp).expect("link ..data_tmp");
    std::fs::rename(&tmp, volume.join("..data")).expect("swap ..data");
}

/// The `identity` config block for the files in `dir`.
pub fn identity(dir: &Path) -> Value {
    json!({
        "cert_file": dir.join("cert.pem"),
        "key_file": dir.join("key.pem"),
        "bundle_file": dir.join("bundle.pem"),
    })
}

/// Serial (hex) and SPIFFE ID of the certificate in `dir/cert.pem`.
pub fn cert_in(dir: &Path) -> CertFacts {
    let pem = std::fs::read(dir.join("cert.pem")).expect("read cert.pem");
    let der = CertificateDer::from_pem_slice(&pem).expect("cert.pem holds a certificate");
    CertFacts::of(&der)
}

/// What a test checks about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    pub serial: String,
    pub uri_sans: Vec<String>,
}

impl CertFacts {
    pub fn of(der: &[u8]) -> CertFacts {
        use x509_cert::ext::pkix::SubjectAltName;
        use x509_cert::ext::pkix::name::GeneralName;
        let cert = x509_cert::Certificate::from_der(der).expect("a DER certificate");
        let tbs = &cert.tbs_certificate;
        let mut uri_sans = Vec::new();
        for ext in tbs.extensions.iter().flatten() {
            if ext.extn_id == x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes()).expect("a SAN");
                for n in san.0 {
                    if let GeneralName::UniformResourceIdentifier(u) = n {
                        uri_sans.push(u.to_string());
                    }
                }
            }
        }
        CertFacts {
            serial: tbs
                .serial_number
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect(),
            uri_sans,
        }
    }
}

/// A TCP relay in front of `target` that keeps every byte it passes (up to 4 MiB per
/// direction), so a test can look at what two sidecars said to each other.
pub struct Relay {
    addr: SocketAddr,
    /// Bytes from the connecting side, one buffer per connection, in accept order.
    pub to_target: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Bytes from the target, all connections together.
    pub from_target: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

const RELAY_KEEP: usize = 4 << 20;

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let to_target: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let from_target: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (up, down) = (to_target.clone(), from_target.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let index = {
                    let mut v = up.lock().expect("relay buffer");
                    v.push(Vec::new());
                    v.len() - 1
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = up.clone();
                let down = down.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let mut v = up.lock().expect("relay buffer");
                        if v[index].len() < RELAY_KEEP {
                            v[index].extend_from_slice(&buf[..n]);
                        }
                    }
                    let _ = sw.shutdown().await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let mut v = down.lock().expect("relay buffer");
                        if v.len() < RELAY_KEEP {
                            v.extend_from_slice(&buf[..n]);
                        }
                    }
                    let _ = cw.shutdown().await;
                });
            }
        });
        Relay {
            addr,
            to_target,
            from_target,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The first bytes each connection sent towards the target.
    pub fn openings(&self) -> Vec<Vec<u8>> {
        self.to_target
            .lock()
            .expect("relay buffer")
            .iter()
            .map(|c| c[..c.len().min(8)].to_vec())
            .collect()
    }

    /// Whether `needle` appears in any byte that passed, either way.
    pub fn saw(&self, needle: &[u8]) -> bool {
        let has = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        self.to_target
            .lock()
            .expect("relay buffer")
            .iter()
            .any(|c| has(c))
            || has(&self.from_target.lock().expect("relay buffer"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts any server certificate and keeps it: the test looks at what was presented; the
/// sidecar's own verification is what the other tests check.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("recorder") = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTP/1.1-over-mTLS exchange made by the test itself, presenting the certificate in
/// `client_dir`.
#[derive(Debug)]
pub struct TlsExchange {
    /// The certificate the server presented.
    pub server_cert: CertFacts,
    /// The raw HTTP response (head and body), or the error that ended the exchange.
    pub response: Result<String, String>,
}

/// Connects to `addr` with mTLS as the workload in `client_dir`, sends `GET path`, and reads
/// the response to the connection's close.
pub async fn tls_get(
    addr: SocketAddr,
    client_dir: &Path,
    path: &str,
) -> Result<TlsExchange, String> {
    let read = |f: &str| std::fs::read(client_dir.join(f)).map_err(|e| format!("{f}: {e}"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("cert.pem")?)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(&read("key.pem")?).map_err(|e| e.to_string())?;
    let recorder = Arc::new(Recorder::default());
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .dangerous()
    .with_custom_certificate_verifier(recorder.clone())
    .with_client_auth_cert(chain, key)
    .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let exchange = async {
        let mut tls = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(String::from_utf8_lossy(&out).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("no response within 10s".into()));
    let seen = recorder.seen.lock().expect("recorder").clone();
    let Some(der) = seen else {
        return Err(format!("no server certificate was presented: {response:?}"));
    };
    Ok(TlsExchange {
        server_cert: CertFacts::of(&der),
        response,
    })
}
