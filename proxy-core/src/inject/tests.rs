use super::manifest::inject_yaml;
use super::*;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  selector: { matchLabels: { app: shop } }
  template:
    metadata:
      labels: { app: shop }
    spec:
      initContainers:
        - name: migrate
          image: shop:1
      containers:
        - name: shop
          image: shop:1
"#;

fn one(input: &str, opts: &InjectOptions) -> (Value, Vec<manifest::Report>) {
    let (out, reports) = inject_yaml(input, opts).unwrap();
    (serde_norway::from_str(&out).unwrap(), reports)
}

fn container_names(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_deployment_gets_the_init_step_and_a_native_sidecar_before_its_own_init_containers() {
    let (doc, reports) = one(DEPLOYMENT, &InjectOptions::default());
    let spec = &doc["spec"]["template"]["spec"];
    assert_eq!(
        container_names(&spec["initContainers"]),
        ["sidecar-init", "sidecar", "migrate"]
    );
    assert_eq!(container_names(&spec["containers"]), ["shop"]);
    let sidecar = &spec["initContainers"][1];
    assert_eq!(sidecar["restartPolicy"].as_str(), Some("Always"));
    assert_eq!(
        sidecar["startupProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert_eq!(
        sidecar["resources"]["limits"]["memory"].as_str(),
        Some("256Mi")
    );
    assert_eq!(sidecar["securityContext"]["runAsUser"].as_i64(), Some(1337));
    let init = &spec["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        serde_norway::from_str::<Value>("[NET_ADMIN, NET_RAW]").unwrap()
    );
    assert!(
        sidecar["securityContext"]["capabilities"]
            .get("add")
            .is_none()
    );
    assert_eq!(
        spec["volumes"][0]["configMap"]["name"].as_str(),
        Some("sidecar-config")
    );
    let status = doc["spec"]["template"]["metadata"]["annotations"][ANNOTATION_STATUS]
        .as_str()
        .unwrap();
    assert!(status.contains("\"sidecar-init\""), "{status}");
    assert_eq!(reports[0].object, "Deployment/shop");
    assert_eq!(
        reports[0].outcome,
        Outcome::Injected(vec!["sidecar-init", "sidecar"])
    );
}

#[test]
fn injecting_twice_changes_nothing() {
    let opts = InjectOptions::default();
    let (once, _) = inject_yaml(DEPLOYMENT, &opts).unwrap();
    let (twice, reports) = inject_yaml(&once, &opts).unwrap();
    assert_eq!(once, twice);
    assert_eq!(reports[0].outcome, Outcome::AlreadyInjected);
}

#[test]
fn opted_out_and_host_network_pods_and_other_kinds_pass_unchanged() {
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: a
  annotations: { sidecar.suite/inject: "false" }
spec:
  containers: [{ name: a, image: a }]
---
apiVersion: v1
kind: Pod
metadata: { name: b }
spec:
  hostNetwork: true
  containers: [{ name: b, image: b }]
---
apiVersion: v1
kind: Service
metadata: { name: c }
spec:
  ports: [{ port: 80 }]
"#;
    let (out, reports) = inject_yaml(input, &InjectOptions::default()).unwrap();
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let originals: Vec<Value> = serde_norway::Deserializer::from_str(input)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs, originals);
    assert_eq!(reports[0].outcome, Outcome::OptedOut);
    assert_eq!(reports[1].outcome, Outcome::HostNetwork);
    assert_eq!(reports.len(), 2);
}

#[test]
fn a_cronjob_and_the_container_placement() {
    let input = r#"
apiVersion: batch/v1
kind: CronJob
metadata: { name: nightly }
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{ name: job, image: job }]
"#;
    let opts = InjectOptions {
        placement: Placement::Container,
        ..InjectOptions::default()
    };
    let (doc, _) = one(input, &opts);
    let spec = &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(container_names(&spec["initContainers"]), ["sidecar-init"]);
    assert_eq!(container_names(&spec["containers"]), ["sidecar", "job"]);
    let hook = &spec["containers"][0]["lifecycle"]["postStart"]["exec"]["command"];
    assert_eq!(hook[1].as_str(), Some("wait-ready"));
    assert!(spec["containers"][0].get("restartPolicy").is_none());
}

/// Before 1.29 an init container must run to completion: the ambassador and the adapter,
/// like the sidecar, become regular containers before the app's, with no `restartPolicy`.
#[test]
fn the_container_placement_makes_every_helper_a_regular_container() {
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: caller
  annotations:
    sidecar.suite/ambassador-config: caller-ambassador
    sidecar.suite/adapter-format: apache_combined
    sidecar.suite/adapter-path: /var/log/app/*.log
spec:
  initContainers: [{ name: migrate, image: migrate }]
  containers: [{ name: app, image: app }]
"#;
    let opts = InjectOptions {
        placement: Placement::Container,
        ..InjectOptions::default()
    };
    let (doc, _) = one(input, &opts);
    let spec = &doc["spec"];
    assert_eq!(
        container_names(&spec["initContainers"]),
        ["sidecar-init", "migrate"]
    );
    assert_eq!(
        container_names(&spec["containers"]),
        ["sidecar", "ambassador", "adapter", "app"]
    );
    for c in spec["containers"].as_sequence().unwrap() {
        assert!(c.get("restartPolicy").is_none(), "{c:?}");
    }
    // The kubelet starts the next regular container only when a postStart hook returns:
    // the ambassador's holds the app until the ambassador is ready, as the sidecar's does.
    let hook = |i: usize| {
        spec["containers"][i]["lifecycle"]["postStart"]["exec"]["command"]
            .as_sequence()
            .map(|c| c.iter().filter_map(|a| a.as_str()).collect::<Vec<_>>())
    };
    assert_eq!(
        hook(1).as_deref(),
        Some(
            &[
                "ambassador",
                "wait-ready",
                "--admin",
                "127.0.0.1:15100",
                "--timeout",
                "60s"
            ][..]
        )
    );
    assert_eq!(
        hook(0).as_ref().map(|c| c[..2].to_vec()),
        Some(vec!["sidecar", "wait-ready"])
    );
    assert!(
        hook(2).is_none(),
        "the adapter holds nothing back: it reads the logs from their start"
    );
    let status: serde_json::Value = serde_json::from_str(
        doc["metadata"]["annotations"]["sidecar.suite/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(status["placement"], "container");

    // Natively the same helpers are init containers that restart always.
    let (doc, _) = one(input, &InjectOptions::default());
    let spec = &doc["spec"];
    assert_eq!(
        container_names(&spec["initContainers"]),
        [
            "sidecar-init",
            "sidecar",
            "ambassador",
            "adapter",
            "migrate"
        ]
    );
    for c in &spec["initContainers"].as_sequence().unwrap()[1..4] {
        assert_eq!(c["restartPolicy"].as_str(), Some("Always"), "{c:?}");
    }
    assert_eq!(container_names(&spec["containers"]), ["app"]);
}

#[test]
fn the_adapter_shares_a_new_log_volume_or_the_one_the_app_mounts() {
    let fresh = r#"
apiVersion: v1
kind: Pod
metadata:
  name: legacy
  annotations:
    sidecar.suite/adapter-format: apache_combined
    sidecar.suite/adapter-path: /var/log/legacy/*.log
spec:
  containers: [{ name: legacy, image: legacy }]
"#;
    let (doc, _) = one(fresh, &InjectOptions::default());
    let spec = &doc["spec"];
    assert_eq!(
        container_names(&spec["initContainers"]),
        ["sidecar-init", "sidecar", "adapter"]
    );
    let adapter = &spec["initContainers"][2];
    assert_eq!(adapter["args"][2].as_str(), Some("apache_combined"));
    assert_eq!(adapter["args"][7].as_str(), Some("/var/log/legacy/*.log"));
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["mountPath"].as_str(),
        Some("/var/log/legacy")
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["name"].as_str(),
        Some(ADAPTER_LOGS_VOLUME)
    );

    let mounted = fresh.replace(
        "containers: [{ name: legacy, image: legacy }]",
        "containers: [{ name: legacy, image: legacy, volumeMounts: [{ name: logs, mountPath: /var/log/legacy }] }]\n  volumes: [{ name: logs, emptyDir: {} }]",
    );
    let (doc, _) = one(&mounted, &InjectOptions::default());
    let spec = &doc["spec"];
    assert_eq!(
        spec["initContainers"][2]["volumeMounts"][0]["name"].as_str(),
        Some("logs")
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"]
            .as_sequence()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_annotations_are_errors_with_their_path() {
    let pod = |annotations: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {annotations}\nspec:\n  containers: [{{ name: p, image: p }}]\n"
        )
    };
    for (annotations, want) in [
        (
            r#"{ sidecar.suite/adapter-format: log4j }"#,
            "metadata.annotations[sidecar.suite/adapter-path]: missing",
        ),
        (
            r#"{ sidecar.suite/adapter-format: log4j, sidecar.suite/adapter-path: logs/app.log }"#,
            "must be an absolute path",
        ),
        (
            r#"{ sidecar.suite/adapter-format: log4j, sidecar.suite/adapter-path: "/var/*/app.log" }"#,
            "wildcards are allowed in the file name only",
        ),
        (
            r#"{ sidecar.suite/inject: "maybe" }"#,
            "metadata.annotations[sidecar.suite/inject]: \"maybe\"",
        ),
        (
            r#"{ sidecar.suite/ambassador-config: "Not_A_Name" }"#,
            "not a valid ConfigMap or Secret name",
        ),
        (
            r#"{ sidecar.suite/outbound-exclude-ports: "5432,x" }"#,
            "expected a comma-separated list",
        ),
    ] {
        let err = inject_yaml(&pod(annotations), &InjectOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{annotations}: {msg}");
        assert!(msg.starts_with("document 1 (Pod/p): "), "{msg}");
    }
}

#[test]
fn the_ambassador_comes_with_its_config_and_secret() {
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: caller
  annotations:
    sidecar.suite/ambassador-config: caller-ambassador
    sidecar.suite/ambassador-secret: caller-api-key
    sidecar.suite/outbound-exclude-ports: "5432"
spec:
  containers: [{ name: caller, image: caller }]
"#;
    let (doc, _) = one(input, &InjectOptions::default());
    let spec = &doc["spec"];
    assert_eq!(
        container_names(&spec["initContainers"]),
        ["sidecar-init", "sidecar", "ambassador"]
    );
    assert_eq!(
        spec["volumes"][1]["configMap"]["name"].as_str(),
        Some("caller-ambassador")
    );
    assert_eq!(
        spec["volumes"][2]["secret"]["secretName"].as_str(),
        Some("caller-api-key")
    );
    let args = &spec["initContainers"][0]["args"];
    assert!(
        args.as_sequence()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some("--outbound-exclude-ports"))
    );
}

#[test]
fn a_name_clash_is_an_error_not_a_broken_pod() {
    let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{ name: p, image: p }]\n  volumes: [{ name: sidecar-config, emptyDir: {} }]\n";
    let err = inject_yaml(input, &InjectOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.volumes: a volume is already named \"sidecar-config\""),
        "{err}"
    );
}
