//! Kubernetes without a cluster, for the deploy/ and injection tests: the OpenAPI schemas
//! (`kubernetes-validate --strict`, installed by tests/run.sh into target/venv), kustomize
//! rendering (`kubectl kustomize`, offline), `sidecar inject` on manifests, and a running
//! `sidecar injector` spoken to over HTTPS like the API server does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::{ports, process, wait};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_owned()
}

/// `kubernetes-validate`: `$KUBERNETES_VALIDATE`, else the venv tests/run.sh makes.
fn validator() -> PathBuf {
    let path = std::env::var_os("KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/venv/bin/kubernetes-validate"));
    assert!(
        path.is_file(),
        "kubernetes-validate is missing at {}: run `bash tests/run.sh` (it installs it with \
         `python3 -m venv target/venv && target/venv/bin/pip install kubernetes-validate`) \
         or set KUBERNETES_VALIDATE",
        path.display()
    );
    path
}

/// Kinds from CRDs the bundled schemas do not know; everything else must validate.
const CRD_GROUPS: &[&str] = &["cert-manager.io/"];

/// Validates multi-document YAML against the Kubernetes OpenAPI schemas of `version`
/// (`None`: the tool's newest), strictly (unknown fields are errors). Panics with the
/// tool's report when anything does not validate.
pub fn validate(yaml: &str, version: Option<&str>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("manifest.yaml");
    std::fs::write(&file, yaml).expect("write the manifest");
    let mut cmd = Command::new(validator());
    cmd.arg("--strict");
    if let Some(v) = version {
        cmd.args(["--kubernetes-version", v]);
    }
    let out = cmd.arg(&file).output().expect("run kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate rejected:\n{report}\n--- the manifest:\n{yaml}"
    );
    for line in report.lines().filter(|l| l.starts_with("WARN")) {
        assert!(
            CRD_GROUPS.iter().any(|g| line.contains(g)),
            "kubernetes-validate warned: {line}\n--- the manifest:\n{yaml}"
        );
    }
    let passed = report.lines().filter(|l| l.contains(" passed ")).count();
    assert!(passed > 0, "kubernetes-validate checked nothing:\n{report}");
}

/// `kubectl kustomize DIR` (offline). Panics when kubectl is missing or the render fails.
pub fn kustomize(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `kubectl kustomize` ({e}): install kubectl (tests/run.sh checks for it)"
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize prints UTF-8")
}

/// Every YAML document of a multi-document text, as JSON values.
pub fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `sidecar inject -f FILE ARGS...` on `manifest`: what it printed and how it ended.
pub fn inject(manifest: &str, args: &[&str]) -> process::Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("in.yaml");
    std::fs::write(&file, manifest).expect("write the manifest");
    let path = file.to_str().expect("a UTF-8 temp path");
    let mut all = vec!["inject", "-f", path];
    all.extend_from_slice(args);
    process::cli(&all, &[])
}

/// A self-signed serving certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM).
pub fn serving_cert() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("a key pair");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate parameters");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sidecar-injector test");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    (cert.pem(), key.serialize_pem())
}

/// A running `sidecar injector` on loopback with a test certificate; killed when dropped.
pub struct Injector {
    child: Child,
    pub addr: SocketAddr,
    cert_pem: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Injector {
    /// Starts it with `args` added (inject flags) and waits until /healthz answers.
    pub async fn start(args: &[&str]) -> Injector {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (cert_pem, key_pem) = serving_cert();
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        std::fs::write(&cert, &cert_pem).expect("write the certificate");
        std::fs::write(&key, &key_pem).expect("write the key");
        let addr = ports::loopback();
        let log = dir.path().join("injector.log");
        let child = Command::new(process::binary())
            .arg("injector")
            .args(["--listen", &addr.to_string()])
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"))
            .spawn()
            .expect("spawn sidecar injector");
        let mut injector = Injector {
            child,
            addr,
            cert_pem,
            _dir: dir,
            log,
        };
        wait::eventually(
            "the injector's /healthz",
            Duration::from_secs(10),
            async || {
                if let Ok(Some(status)) = injector.child.try_wait() {
                    return Err(format!("exited with {status}: {}", injector.log()));
                }
                match injector.request("GET", "/healthz", Vec::new()).await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(format!("{status} {body}")),
                    Err(e) => Err(e),
                }
            },
        )
        .await;
        injector
    }

    /// What the injector logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTPS request that trusts only the test certificate and checks the host name
    /// `localhost`: (status, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, String), String> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name =
            rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), tx.send_request(req))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Sends an AdmissionReview (v1) for `pod` and returns the HTTP status and the review
    /// that came back.
    pub async fn review_pod(&self, uid: &str, pod: &Value) -> (u16, Value) {
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod,
                "oldObject": null,
                "dryRun": false,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            }
        });
        self.post_raw(serde_json::to_vec(&review).expect("JSON"))
            .await
    }

    /// POSTs any body to /inject: (status, the JSON that came back).
    pub async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let (status, text) = self
            .request("POST", "/inject", body)
            .await
            .unwrap_or_else(|e| panic!("POST /inject: {e}\n{}", self.log()));
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the injector answered non-JSON ({e}): {text}"));
        (status, json)
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
