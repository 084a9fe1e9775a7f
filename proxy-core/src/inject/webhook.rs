//! The mutating admission webhook's decision: an AdmissionReview (admission.k8s.io/v1) in,
//! an AdmissionReview with a JSONPatch (RFC 6902) out.
//!
//! The patch is the difference between the pod as sent and the pod after [`inject_pod`], so
//! the webhook and `sidecar inject` cannot drift apart. Input that is not a well-formed
//! review of a pod is answered with a denial that says what is wrong, never a crash.

use base64::Engine as _;
use http::StatusCode;
use serde_json::{Value as Json, json};

use super::{InjectOptions, Outcome, inject_pod};

/// Requests bigger than this are refused (Kubernetes objects stay under ~1.5 MiB).
pub const MAX_REVIEW_BYTES: usize = 8 << 20;

/// The webhook's answer: HTTP status and the AdmissionReview to send.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub review: Json,
    /// One line for the log: namespace/pod and what happened.
    pub summary: String,
}

fn denial(uid: &str, code: u16, message: String) -> Json {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": uid,
            "allowed": false,
            "status": { "code": code, "message": message },
        },
    })
}

fn allowed(uid: &str, patch: Option<String>) -> Json {
    let mut response = json!({ "uid": uid, "allowed": true });
    if let Some(patch) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(patch);
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

/// A request body that is not an AdmissionReview at all: HTTP 400 with a denial.
pub fn malformed(message: String) -> Answer {
    Answer {
        status: StatusCode::BAD_REQUEST,
        summary: format!("malformed review: {message}"),
        review: denial("", 400, format!("sidecar injector: {message}")),
    }
}

/// Decide on one AdmissionReview request body.
pub fn review(body: &[u8], opts: &InjectOptions) -> Answer {
    let doc: Json = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => return malformed(format!("the body is not JSON: {e}")),
    };
    if doc.get("apiVersion").and_then(Json::as_str) != Some("admission.k8s.io/v1")
        || doc.get("kind").and_then(Json::as_str) != Some("AdmissionReview")
    {
        return malformed("expected apiVersion admission.k8s.io/v1, kind AdmissionReview".into());
    }
    let Some(request) = doc.get("request").filter(|r| r.is_object()) else {
        return malformed("the AdmissionReview has no request".into());
    };
    let Some(uid) = request.get("uid").and_then(Json::as_str) else {
        return malformed("request.uid is missing".into());
    };
    let namespace = request
        .get("namespace")
        .and_then(Json::as_str)
        .unwrap_or("");
    let deny = |message: String| Answer {
        status: StatusCode::OK,
        summary: format!("{namespace}: denied: {message}"),
        review: denial(uid, 400, format!("sidecar injector: {message}")),
    };
    let kind = request.pointer("/kind/kind").and_then(Json::as_str);
    let operation = request.get("operation").and_then(Json::as_str);
    if kind != Some("Pod") || operation.is_some_and(|op| op != "CREATE") {
        return Answer {
            status: StatusCode::OK,
            summary: format!(
                "{namespace}: {} {}: not a pod creation, allowed unchanged",
                operation.unwrap_or("?"),
                kind.unwrap_or("?")
            ),
            review: allowed(uid, None),
        };
    }
    let Some(original) = request.get("object").filter(|o| o.is_object()) else {
        return deny("request.object: missing or not a Pod object".into());
    };
    let pod_name = original
        .pointer("/metadata/name")
        .or_else(|| original.pointer("/metadata/generateName"))
        .and_then(Json::as_str)
        .unwrap_or("?")
        .to_owned();
    let mut pod: serde_norway::Value = match serde_norway::to_value(original) {
        Ok(v) => v,
        Err(e) => return deny(format!("request.object: {e}")),
    };
    let result = {
        let Some(map) = pod.as_mapping_mut() else {
            return deny("request.object: not a mapping".into());
        };
        let mut metadata = map
            .get_mut("metadata")
            .map(std::mem::take)
            .unwrap_or_default();
        let mut spec = map.get_mut("spec").map(std::mem::take).unwrap_or_default();
        let result = inject_pod(&mut metadata, &mut spec, opts, "");
        map.insert(serde_norway::Value::String("metadata".into()), metadata);
        map.insert(serde_norway::Value::String("spec".into()), spec);
        result
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return deny(format!("pod {pod_name}: {e}")),
    };
    let summary = format!("{namespace}/{pod_name}: {outcome}");
    let patch = match &outcome {
        Outcome::Injected(_) => {
            let injected: Json = match serde_json::to_value(&pod) {
                Ok(v) => v,
                Err(e) => return deny(format!("pod {pod_name}: {e}")),
            };
            let ops = json_patch::diff(original, &injected);
            match serde_json::to_vec(&ops) {
                Ok(bytes) => Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                Err(e) => return deny(format!("pod {pod_name}: {e}")),
            }
        }
        Outcome::OptedOut | Outcome::AlreadyInjected | Outcome::HostNetwork => None,
    };
    Answer {
        status: StatusCode::OK,
        summary,
        review: allowed(uid, patch),
    }
}
