//! `sidecar inject`: rewrite Kubernetes manifests offline, like `istioctl kube-inject`.
//!
//! Reads multi-document YAML, injects into the pod template of every workload kind
//! (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, and `List` items),
//! and writes every document back in its order; other kinds pass through unchanged.
//! Comments are not kept (YAML values carry none).

use serde::Deserialize;
use serde_norway::Value;

use super::{InjectError, InjectOptions, Outcome, inject_pod};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {doc}: not valid YAML: {reason}")]
    Yaml { doc: usize, reason: String },
    #[error("document {doc} ({object}): {source}")]
    Inject {
        doc: usize,
        object: String,
        #[source]
        source: InjectError,
    },
}

impl ManifestError {
    pub fn reason(&self) -> &'static str {
        match self {
            ManifestError::Yaml { .. } => "invalid_yaml",
            ManifestError::Inject { source, .. } => source.reason(),
        }
    }
}

/// What happened to one workload of the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// `Kind/name`.
    pub object: String,
    pub outcome: Outcome,
}

/// The path of the pod template inside an object of this kind.
fn pod_template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

fn object_name(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}

/// Inject into one object (recursing into a `List`'s items); pushes a report per workload.
fn inject_object(
    obj: &mut Value,
    opts: &InjectOptions,
    doc: usize,
    reports: &mut Vec<Report>,
) -> Result<(), ManifestError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" {
        if let Some(items) = obj.get_mut("items").and_then(Value::as_sequence_mut) {
            for item in items {
                inject_object(item, opts, doc, reports)?;
            }
        }
        return Ok(());
    }
    let Some(path) = pod_template_path(kind) else {
        return Ok(());
    };
    let object = object_name(obj);
    let mut template = &mut *obj;
    let mut at = String::new();
    for key in path {
        at.push('.');
        at.push_str(key);
        template = match template.get_mut(*key) {
            Some(v) if v.is_mapping() => v,
            _ => {
                return Err(ManifestError::Inject {
                    doc,
                    object,
                    source: super::invalid(&at, "missing or not a mapping"),
                });
            }
        };
    }
    let Some(map) = template.as_mapping_mut() else {
        return Ok(());
    };
    // Taken out and put back in place, so the keys keep their order in the document.
    let mut metadata = map
        .get_mut("metadata")
        .map(std::mem::take)
        .unwrap_or_default();
    let mut spec = map.get_mut("spec").map(std::mem::take).unwrap_or_default();
    let result = inject_pod(&mut metadata, &mut spec, opts, &at);
    for (key, value) in [("metadata", metadata), ("spec", spec)] {
        match map.get_mut(key) {
            Some(slot) => *slot = value,
            None if !value.is_null() => {
                map.insert(Value::String(key.into()), value);
            }
            None => {}
        }
    }
    let outcome = result.map_err(|source| ManifestError::Inject {
        doc,
        object: object.clone(),
        source,
    })?;
    reports.push(Report { object, outcome });
    Ok(())
}

/// Inject into every workload of a multi-document YAML text; the output has the same
/// documents in the same order, separated by `---`.
pub fn inject_yaml(
    input: &str,
    opts: &InjectOptions,
) -> Result<(String, Vec<Report>), ManifestError> {
    let mut out = String::new();
    let mut reports = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(input).enumerate() {
        let doc = i + 1;
        let mut value = Value::deserialize(de).map_err(|e| ManifestError::Yaml {
            doc,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        inject_object(&mut value, opts, doc, &mut reports)?;
        let text = serde_norway::to_string(&value).map_err(|e| ManifestError::Yaml {
            doc,
            reason: e.to_string(),
        })?;
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&text);
    }
    Ok((out, reports))
}
