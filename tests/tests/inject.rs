//! deploy/ and automatic injection, without a cluster: every kustomization renders and
//! validates against the Kubernetes OpenAPI schemas; `sidecar inject` rewrites real-shaped
//! manifests, idempotently, into manifests that validate; `sidecar injector` answers
//! AdmissionReviews over HTTPS with JSONPatches that, applied, give the same pods; malformed
//! reviews are denied with a message; `sidecar wait-ready` waits for a real sidecar.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e_tests::kube::{self, Injector};
use e2e_tests::{Sidecar, ports, process, wait};
use serde_json::{Value, json};

const WORKLOADS: &str = include_str!("../fixtures/inject/workloads.yaml");

fn pod_spec(doc: &Value) -> &Value {
    match doc["kind"].as_str() {
        Some("Pod") => &doc["spec"],
        Some("CronJob") => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &doc["spec"]["template"]["spec"],
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

fn by_name<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the output"))
}

/// Every container of every pod template: requests and limits set, non-root and read-only
/// unless it is the init step, and only the init step holds capabilities.
fn assert_hardened(docs: &[Value]) {
    for doc in docs {
        if !matches!(
            doc["kind"].as_str(),
            Some("Pod" | "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob")
        ) {
            continue;
        }
        let spec = pod_spec(doc);
        for c in spec["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["containers"].as_array().into_iter().flatten())
        {
            let name = c["name"].as_str().unwrap();
            let what = format!(
                "{}/{} container {name}",
                doc["kind"], doc["metadata"]["name"]
            );
            for k in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(
                        c["resources"][k][r].is_string(),
                        "{what}: resources.{k}.{r} unset"
                    );
                }
            }
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
            if name == "sidecar-init" {
                assert_eq!(
                    sc["capabilities"]["add"],
                    json!(["NET_ADMIN", "NET_RAW"]),
                    "{what}"
                );
            } else {
                assert_eq!(sc["runAsNonRoot"], true, "{what}");
                assert!(
                    sc["capabilities"].get("add").is_none(),
                    "{what}: capabilities added"
                );
            }
        }
    }
}

#[test]
fn every_kustomization_renders_validates_and_is_hardened() {
    let deploy = kube::workspace().join("deploy");
    for dir in [
        "base",
        "overlays/ambassador",
        "overlays/adapter",
        "overlays/pre-1.29",
        "injector",
    ] {
        let rendered = kube::kustomize(&deploy.join(dir));
        kube::validate(&rendered, None);
        let docs = kube::documents(&rendered);
        if dir != "injector" {
            assert_hardened(&docs);
            let app = by_name(&docs, "Deployment", "app");
            let spec = pod_spec(app);
            let all: Vec<&Value> = spec["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(spec["containers"].as_array().unwrap())
                .collect();
            let sidecar = all.iter().find(|c| c["name"] == "sidecar").unwrap();
            assert_eq!(
                sidecar["readinessProbe"]["httpGet"]["path"], "/ready",
                "{dir}"
            );
            if dir == "overlays/pre-1.29" {
                assert_eq!(names(&spec["containers"])[0], "sidecar");
                assert_eq!(
                    sidecar["lifecycle"]["postStart"]["exec"]["command"][1],
                    "wait-ready"
                );
                assert!(all.iter().all(|c| c.get("restartPolicy").is_none()));
                // Schemas from before native sidecars accept it too.
                kube::validate(&rendered, Some("1.27.0"));
            } else {
                assert_eq!(sidecar["restartPolicy"], "Always", "{dir}");
                assert_eq!(
                    sidecar["startupProbe"]["httpGet"]["path"], "/ready",
                    "{dir}"
                );
            }
        }
        if dir == "overlays/adapter" {
            let spec = pod_spec(by_name(&docs, "Deployment", "app"));
            let shared = |c: &str| {
                let all = spec["initContainers"].as_array().unwrap().iter();
                let c = all
                    .chain(spec["containers"].as_array().unwrap())
                    .find(|x| x["name"] == c)
                    .unwrap();
                names(&c["volumeMounts"]).contains(&"legacy-logs")
            };
            assert!(shared("adapter") && shared("legacy"));
            let vol = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "legacy-logs")
                .unwrap();
            assert!(vol["emptyDir"].is_object());
        }
        if dir == "injector" {
            let hook = by_name(&docs, "MutatingWebhookConfiguration", "sidecar-injector");
            let w = &hook["webhooks"][0];
            assert_eq!(w["failurePolicy"], "Ignore");
            assert!(w["timeoutSeconds"].as_i64().unwrap() <= 10);
            assert_eq!(
                w["namespaceSelector"]["matchExpressions"][0]["key"],
                "sidecar.suite/injection"
            );
        }
    }
    let init = std::fs::read_to_string(deploy.join("init/sidecar-init.yaml")).unwrap();
    kube::validate(&init, None);
}

#[test]
fn the_shipped_configs_pass_check_config() {
    let deploy = kube::workspace().join("deploy");
    let out = process::cli(
        &[
            "check-config",
            deploy.join("base/sidecar.yaml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let adapter = Command::new(e2e_tests::adapter::binary())
        .args(["check-config"])
        .arg(deploy.join("overlays/adapter/adapter.yaml"))
        .output()
        .unwrap();
    assert!(adapter.status.success(), "{adapter:?}");
}

#[test]
fn inject_rewrites_every_workload_kind_and_the_result_validates() {
    kube::validate(WORKLOADS, None);
    let out = kube::inject(
        WORKLOADS,
        &["--sidecar-image", "registry.example.com/sidecar:9.9"],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    kube::validate(&out.stdout, None);
    let docs = kube::documents(&out.stdout);
    let inputs = kube::documents(WORKLOADS);
    assert_eq!(docs.len(), inputs.len(), "every document is kept, in order");
    for (d, i) in docs.iter().zip(&inputs) {
        assert_eq!(
            (&d["kind"], &d["metadata"]["name"]),
            (&i["kind"], &i["metadata"]["name"])
        );
    }
    assert_hardened(
        &docs
            .iter()
            .filter(|d| d["metadata"]["name"] != "debug")
            .map(|d| {
                // The app containers of the fixtures are not ours to harden: check only
                // what injection added.
                let mut d = d.clone();
                let spec = match d["kind"].as_str() {
                    Some("Pod") => &mut d["spec"],
                    Some("CronJob") => &mut d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                    _ => &mut d["spec"]["template"]["spec"],
                };
                for list in ["initContainers", "containers"] {
                    if let Some(a) = spec[list].as_array_mut() {
                        a.retain(|c| {
                            ["sidecar-init", "sidecar", "ambassador", "adapter"]
                                .contains(&c["name"].as_str().unwrap())
                        });
                    }
                }
                d
            })
            .collect::<Vec<_>>(),
    );

    // Kinds that are not workloads pass through unchanged; so do opted-out and hostNetwork pods.
    for (kind, name) in [
        ("ConfigMap", "shop-settings"),
        ("Service", "orders"),
        ("Pod", "debug"),
        ("DaemonSet", "node-agent"),
    ] {
        assert_eq!(
            by_name(&docs, kind, name),
            by_name(&inputs, kind, name),
            "{kind}/{name}"
        );
    }
    let orders = pod_spec(by_name(&docs, "Deployment", "orders"));
    assert_eq!(
        names(&orders["initContainers"]),
        ["sidecar-init", "sidecar", "migrate"]
    );
    assert_eq!(names(&orders["containers"]), ["orders"]);
    assert_eq!(
        orders["initContainers"][1]["image"],
        "registry.example.com/sidecar:9.9"
    );
    let init_args = &orders["initContainers"][0]["args"];
    let i = init_args
        .as_array()
        .unwrap()
        .iter()
        .position(|a| a == "--outbound-exclude-ports")
        .expect("the exclude annotation reaches the init step");
    assert_eq!(init_args[i + 1], "5432");
    for (kind, name) in [
        ("StatefulSet", "ledger"),
        ("Job", "report"),
        ("CronJob", "nightly-export"),
    ] {
        let spec = pod_spec(by_name(&docs, kind, name));
        assert_eq!(
            names(&spec["initContainers"]),
            ["sidecar-init", "sidecar"],
            "{kind}"
        );
        assert!(
            names(&spec["volumes"]).contains(&"sidecar-config"),
            "{kind}"
        );
    }
    let billing = pod_spec(by_name(&docs, "Pod", "legacy-billing"));
    assert_eq!(
        names(&billing["initContainers"]),
        ["sidecar-init", "sidecar", "ambassador", "adapter"]
    );
    assert_eq!(
        billing["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/log/billing"
    );
    for line in [
        "Deployment/orders: injected sidecar-init, sidecar",
        "DaemonSet/node-agent: skipped: hostNetwork",
        "Pod/debug: skipped: sidecar.suite/inject is \"false\"",
        "Pod/legacy-billing: injected sidecar-init, sidecar, ambassador, adapter",
    ] {
        assert!(out.stderr.contains(line), "{line} not in:\n{}", out.stderr);
    }

    // Idempotent: the output injected again is the same text.
    let again = kube::inject(
        &out.stdout,
        &["--sidecar-image", "registry.example.com/sidecar:9.9"],
    );
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(again.stdout, out.stdout);
    assert!(
        again
            .stderr
            .contains("Deployment/orders: skipped: already injected")
    );
}

#[test]
fn inject_for_old_clusters_holds_the_app_with_wait_ready_and_validates_on_1_27() {
    let out = kube::inject(WORKLOADS, &["--placement", "container"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let docs = kube::documents(&out.stdout);
    let orders = pod_spec(by_name(&docs, "Deployment", "orders"));
    assert_eq!(
        names(&orders["initContainers"]),
        ["sidecar-init", "migrate"]
    );
    assert_eq!(names(&orders["containers"]), ["sidecar", "orders"]);
    assert_eq!(
        orders["containers"][0]["lifecycle"]["postStart"]["exec"]["command"],
        json!([
            "sidecar",
            "wait-ready",
            "--admin",
            "127.0.0.1:15000",
            "--timeout",
            "60s"
        ])
    );
    // The ambassador and the adapter are regular containers too, after the sidecar: an
    // init container with `restartPolicy: Always` would never finish on 1.27.
    let billing = pod_spec(by_name(&docs, "Pod", "legacy-billing"));
    assert_eq!(names(&billing["initContainers"]), ["sidecar-init"]);
    assert_eq!(
        names(&billing["containers"]),
        ["sidecar", "ambassador", "adapter", "billing"]
    );
    for c in billing["containers"].as_array().unwrap() {
        assert!(c.get("restartPolicy").is_none(), "{c}");
    }
    // Every document, that pod included, is valid for 1.27.
    kube::validate(&out.stdout, Some("1.27.0"));
}

#[test]
fn inject_refuses_bad_annotations_and_yaml_with_the_place_and_reason() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidecar.suite/adapter-format: log4j\nspec:\n  containers: [{name: p, image: p}]\n";
    let out = kube::inject(pod, &[]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(
            "document 1 (Pod/p): metadata.annotations[sidecar.suite/adapter-path]: missing"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing half-injected is printed");
    let out = kube::inject("kind: ConfigMap\n---\nkind: [unclosed\n", &[]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("document 2: not valid YAML"),
        "{}",
        out.stderr
    );
}

/// A pod as the API server sends it to a webhook: created by a ReplicaSet, defaults filled,
/// the service account token volume already there.
fn api_server_pod(annotations: Value, init: bool) -> Value {
    let mut pod = json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "orders-7c9d8f5b6-",
            "namespace": "shop",
            "creationTimestamp": null,
            "labels": {"app": "orders", "pod-template-hash": "7c9d8f5b6"},
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "orders-7c9d8f5b6",
                "uid": "5f0c1f44-2b1e-4a0e-9d55-0c6b8f1f2a10", "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "volumes": [{
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
                    ],
                    "defaultMode": 420
                }
            }],
            "containers": [{
                "name": "orders",
                "image": "registry.example.com/orders:2.3.1",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {},
                "volumeMounts": [{
                    "name": "kube-api-access-x7k2p", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"
                }],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    });
    if init {
        pod["spec"]["initContainers"] = json!([{
            "name": "migrate",
            "image": "registry.example.com/orders:2.3.1",
            "args": ["migrate", "--up"],
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"
        }]);
    }
    pod
}

fn decode_patch(review: &Value) -> json_patch::Patch {
    use base64::Engine as _;
    let b64 = review["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("an RFC 6902 patch")
}

/// The pod `sidecar inject` makes of the same input: the webhook must agree with it.
fn injected_offline(pod: &Value) -> Value {
    let yaml = serde_norway::to_string(pod).unwrap();
    let out = kube::inject(&yaml, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    kube::documents(&out.stdout).remove(0)
}

#[tokio::test]
async fn the_injector_patches_pods_like_inject_and_the_result_validates() {
    let injector = Injector::start(&[]).await;
    for (i, (annotations, init)) in [
        (json!({}), false),
        (json!({}), true),
        (json!({"sidecar.suite/adapter-format": "log4j", "sidecar.suite/adapter-path": "/var/log/app/app.log"}), false),
        (json!({"sidecar.suite/ambassador-config": "orders-ambassador"}), true),
    ]
    .into_iter()
    .enumerate()
    {
        let pod = api_server_pod(annotations, init);
        let uid = format!("705ab4f5-6393-11e8-b7cc-42010a80000{i}");
        let (status, review) = injector.review_pod(&uid, &pod).await;
        assert_eq!(status, 200, "{review}");
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["uid"], uid.as_str());
        assert_eq!(review["response"]["allowed"], true, "{review}");
        assert_eq!(review["response"]["patchType"], "JSONPatch");
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &decode_patch(&review)).expect("the patch applies");
        assert_eq!(patched, injected_offline(&pod), "webhook and inject disagree for case {i}");
        let spec = &patched["spec"];
        assert_eq!(names(&spec["initContainers"])[..2], ["sidecar-init", "sidecar"]);
        if init {
            assert_eq!(names(&spec["initContainers"]).last(), Some(&"migrate"));
        }
        // The API server's own fields stay as they were.
        assert_eq!(spec["volumes"][0]["name"], "kube-api-access-x7k2p");
        assert!(
            patched["metadata"]["annotations"]["sidecar.suite/status"]
                .as_str()
                .unwrap()
                .contains("sidecar-init")
        );
        // The API server names a generateName pod after admission; the schema tool needs a name.
        let mut named = patched.clone();
        named["metadata"]["name"] = json!("orders-7c9d8f5b6-x2x9q");
        kube::validate(&serde_norway::to_string(&named).unwrap(), None);

        // The injected pod coming back (a re-invocation) gets no patch.
        let (_, again) = injector.review_pod(&uid, &patched).await;
        assert_eq!(again["response"]["allowed"], true);
        assert!(again["response"].get("patch").is_none(), "{again}");
    }
    let log = injector.log();
    assert!(
        log.contains("shop/orders-7c9d8f5b6-: injected sidecar-init, sidecar"),
        "{log}"
    );
}

#[tokio::test]
async fn the_injector_leaves_opted_out_pods_and_other_objects_alone() {
    let injector = Injector::start(&[]).await;
    let pod = api_server_pod(json!({"sidecar.suite/inject": "false"}), true);
    let (status, review) = injector.review_pod("u-1", &pod).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"], json!({"uid": "u-1", "allowed": true}));

    let mut host = api_server_pod(json!({}), false);
    host["spec"]["hostNetwork"] = json!(true);
    let (_, review) = injector.review_pod("u-2", &host).await;
    assert_eq!(review["response"], json!({"uid": "u-2", "allowed": true}));

    // An update, or another kind, is allowed as it is.
    let update = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-3", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "operation": "UPDATE", "namespace": "shop", "object": pod}
    });
    let (status, review) = injector
        .post_raw(serde_json::to_vec(&update).unwrap())
        .await;
    assert_eq!(status, 200);
    assert_eq!(review["response"], json!({"uid": "u-3", "allowed": true}));
}

#[tokio::test]
async fn the_injector_denies_malformed_input_with_a_message_and_keeps_serving() {
    let injector = Injector::start(&[]).await;
    let (status, review) = injector.post_raw(b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(review["response"]["allowed"], false);
    let msg = review["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("the body is not JSON"), "{msg}");

    let (status, review) = injector
        .post_raw(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("expected apiVersion admission.k8s.io/v1")
    );

    let (status, review) = injector
        .post_raw(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod"}}}"#.to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("request.uid is missing")
    );

    // A pod whose spec is not a mapping, and one with a bad annotation: denied, with the
    // field and the reason, under the request's uid.
    let mut broken = api_server_pod(json!({}), false);
    broken["spec"] = json!("nonsense");
    let (status, review) = injector.review_pod("u-9", &broken).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["uid"], "u-9");
    assert_eq!(review["response"]["allowed"], false);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec: must be a mapping"),
        "{review}"
    );
    let bad = api_server_pod(
        json!({"sidecar.suite/adapter-path": "relative/app.log", "sidecar.suite/adapter-format": "log4j"}),
        false,
    );
    let (_, review) = injector.review_pod("u-10", &bad).await;
    assert_eq!(review["response"]["allowed"], false);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("metadata.annotations[sidecar.suite/adapter-path]: \"relative/app.log\": must be an absolute path"),
        "{review}"
    );

    // Wrong method and path; the server still answers a good review afterwards.
    assert_eq!(
        injector
            .request("GET", "/inject", Vec::new())
            .await
            .unwrap()
            .0,
        405
    );
    assert_eq!(
        injector
            .request("POST", "/mutate", Vec::new())
            .await
            .unwrap()
            .0,
        404
    );
    let (status, review) = injector
        .review_pod("u-11", &api_server_pod(json!({}), false))
        .await;
    assert_eq!(
        (status, &review["response"]["allowed"]),
        (200, &json!(true))
    );
}

fn spawn_wait_ready(admin: &str, timeout: &str, command: &[&str]) -> std::process::Child {
    process::wait_ready_command(&process::binary(), admin, timeout, command)
        .spawn()
        .expect("spawn sidecar wait-ready")
}

#[tokio::test]
async fn wait_ready_holds_the_command_until_the_sidecar_is_ready_and_passes_its_exit_code() {
    let admin = ports::loopback();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("echo ran > {}; exit 7", marker.display());
    let mut waiting = spawn_wait_ready(&admin.to_string(), "30s", &["sh", "-c", &script]);
    // No sidecar yet: the command must not run.
    wait::consistently(
        "wait-ready holding the command",
        Duration::from_millis(800),
        async || match (marker.exists(), waiting.try_wait().unwrap()) {
            (false, None) => Ok(()),
            seen => Err(format!("{seen:?}")),
        },
    )
    .await;
    let _sidecar = Sidecar::start(json!({
        "admin": {"address": admin.to_string()},
        "listeners": [],
        "clusters": [],
    }))
    .await;
    let status = wait::eventually(
        "wait-ready to finish",
        Duration::from_secs(10),
        async || waiting.try_wait().unwrap().ok_or("still waiting"),
    )
    .await;
    assert_eq!(
        status.code(),
        Some(7),
        "the command's exit code is wait-ready's"
    );
    assert!(Path::new(&marker).exists());

    // Without a command: exit 0 at once against a ready sidecar.
    let out = spawn_wait_ready(&admin.to_string(), "5s", &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test]
async fn wait_ready_gives_up_after_its_timeout_with_the_reason() {
    let refusing = ports::refusing();
    let started = std::time::Instant::now();
    let out = spawn_wait_ready(&refusing.addr().to_string(), "1s", &["true"])
        .wait_with_output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "sidecar wait-ready: the admin API at {} was not ready within 1s",
            refusing.addr()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("[not_ready]"), "{stderr}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // A draining sidecar (/ready 503) is not ready either.
    let mut doc = json!({"listeners": [], "clusters": []});
    doc["runtime"] = json!({"drain_grace": "30s"});
    let sidecar = Sidecar::start(doc).await;
    sidecar.admin().post("/drain").await;
    let out = spawn_wait_ready(&sidecar.admin().addr().to_string(), "1s", &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("503"),
        "{out:?}"
    );
}
