//! The config document a test gives the sidecar, and the file it lives in.
//!
//! Tests write documents with `serde_json::json!`, in the same shape as the YAML an operator
//! writes. A listener without an `address` gets a free loopback port, kept by name across
//! rewrites so a reloaded config listens where the old one did; `admin.address` is filled the
//! same way. The file is written as YAML, either plainly or in the layout Kubernetes gives a
//! mounted ConfigMap (a `..data` symlink swapped atomically on every update).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::ports;
use crate::upstream::Upstream;

/// One listener `in` on a free port whose every request goes to cluster `backend` = `upstream`.
pub fn single_route(upstream: &Upstream) -> Value {
    json!({
        "listeners": [{
            "name": "in",
            "routes": [{ "name": "all", "cluster": "backend" }],
        }],
        "clusters": [cluster("backend", [upstream.addr()])],
    })
}

/// A static cluster over the servers at `endpoints`.
pub fn cluster(name: &str, endpoints: impl IntoIterator<Item = SocketAddr>) -> Value {
    let endpoints: Vec<String> = endpoints.into_iter().map(|a| a.to_string()).collect();
    json!({ "name": name, "endpoints": endpoints })
}

/// Listener and admin addresses handed out to a document, by listener name.
#[derive(Debug)]
pub(crate) struct Addresses {
    pub admin: SocketAddr,
    pub listeners: BTreeMap<String, SocketAddr>,
}

impl Addresses {
    pub fn new() -> Self {
        Addresses {
            admin: ports::loopback(),
            listeners: BTreeMap::new(),
        }
    }

    /// Fills in missing addresses and learns the ones the document sets itself.
    pub fn assign(&mut self, doc: &mut Value) {
        let obj = doc
            .as_object_mut()
            .expect("a config document is a JSON object");
        let admin = obj.entry("admin").or_insert_with(|| json!({}));
        match admin.get("address").and_then(Value::as_str) {
            Some(a) => {
                if let Ok(a) = a.parse() {
                    self.admin = a;
                }
            }
            None => admin["address"] = json!(self.admin.to_string()),
        }
        let Some(listeners) = obj.get_mut("listeners").and_then(Value::as_array_mut) else {
            return;
        };
        for l in listeners {
            let Some(name) = l.get("name").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            match l.get("address").and_then(Value::as_str) {
                Some(a) => {
                    if let Ok(a) = a.parse() {
                        self.listeners.insert(name, a);
                    }
                }
                None => {
                    let a = *self.listeners.entry(name).or_insert_with(ports::loopback);
                    l["address"] = json!(a.to_string());
                }
            }
        }
    }
}

/// How the config file is laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `config.yaml`, replaced by an atomic rename on every write. A truncating write would
    /// show a watcher an empty file in between; rejecting that is right, but not what a test
    /// of reloading means to exercise.
    Plain,
    /// As kubelet mounts a ConfigMap: `config.yaml -> ..data/config.yaml`,
    /// `..data -> ..<version>/`; an update writes a new version directory and renames a fresh
    /// `..data` symlink over the old one.
    ConfigMap,
}

/// The config file of one sidecar, in its own directory.
#[derive(Debug)]
pub struct ConfigFile {
    layout: Layout,
    dir: PathBuf,
    version: u32,
}

const FILE: &str = "config.yaml";

impl ConfigFile {
    pub fn new(dir: &Path, layout: Layout) -> Self {
        let dir = dir.join("config");
        std::fs::create_dir_all(&dir).expect("create the config directory");
        if layout == Layout::ConfigMap {
            std::os::unix::fs::symlink(Path::new("..data").join(FILE), dir.join(FILE))
                .expect("link config.yaml into ..data");
        }
        ConfigFile {
            layout,
            dir,
            version: 0,
        }
    }

    /// The path the sidecar is told to read.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn write(&mut self, text: &str) {
        self.version += 1;
        match self.layout {
            Layout::Plain => {
                let tmp = self.dir.join(format!(".{FILE}.{}", self.version));
                std::fs::write(&tmp, text).expect("write the config file");
                std::fs::rename(&tmp, self.path()).expect("rename the config file into place");
            }
            Layout::ConfigMap => {
                let version = format!("..{}", self.version);
                std::fs::create_dir(self.dir.join(&version)).expect("create a ConfigMap version");
                std::fs::write(self.dir.join(&version).join(FILE), text)
                    .expect("write the config file");
                let tmp = self.dir.join("..data_tmp");
                std::os::unix::fs::symlink(&version, &tmp).expect("link ..data_tmp");
                std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
                if self.version > 1 {
                    // kubelet removes the old version once the swap is done.
                    let old = self.dir.join(format!("..{}", self.version - 1));
                    std::fs::remove_dir_all(old).expect("remove the old ConfigMap version");
                }
            }
        }
    }
}

/// A document as the YAML an operator would write (what the file holds and failure dumps show).
pub fn to_yaml(doc: &Value) -> String {
    serde_norway::to_string(doc).expect("a JSON document converts to YAML")
}
