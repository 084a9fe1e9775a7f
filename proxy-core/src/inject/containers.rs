//! The containers and volumes injection adds, as typed Kubernetes objects.
//!
//! Typed (not hand-built maps) so that every field name is spelled once and the fields come
//! out in the order people write them (`name`, `image`, `args`, ... `securityContext`).

use serde::Serialize;

use super::InjectOptions;

/// Container and volume names injection owns; a pod holding one of the container names is
/// taken as already injected.
pub const INIT_NAME: &str = "sidecar-init";
pub const SIDECAR_NAME: &str = "sidecar";
pub const AMBASSADOR_NAME: &str = "ambassador";
pub const ADAPTER_NAME: &str = "adapter";
pub const CONFIG_VOLUME: &str = "sidecar-config";
pub const AMBASSADOR_CONFIG_VOLUME: &str = "ambassador-config";
pub const AMBASSADOR_SECRET_VOLUME: &str = "ambassador-secret";
pub const ADAPTER_LOGS_VOLUME: &str = "adapter-logs";
pub const ADAPTER_STATE_VOLUME: &str = "adapter-state";

/// Ports of the injected containers' admin servers (also their probes).
pub const SIDECAR_ADMIN_PORT: u16 = 15000;
pub const AMBASSADOR_ADMIN_PORT: u16 = 15100;
pub const ADAPTER_ADMIN_PORT: u16 = 9901;
/// UIDs of the ambassador and the adapter: not the proxy's (its traffic skips interception).
const AMBASSADOR_UID: i64 = 1338;
const ADAPTER_UID: i64 = 1339;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: &'static str,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<&'static str>,
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    pub resources: Resources,
    pub security_context: SecurityContext,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

#[derive(Serialize)]
pub struct EnvVar {
    pub name: &'static str,
    pub value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub name: &'static str,
    pub container_port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub post_start: ExecHandler,
}

#[derive(Serialize)]
pub struct ExecHandler {
    pub exec: ExecCommand,
}

#[derive(Serialize)]
pub struct ExecCommand {
    pub command: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub http_get: HttpGet,
    pub period_seconds: u32,
    pub failure_threshold: u32,
}

#[derive(Serialize)]
pub struct HttpGet {
    pub path: &'static str,
    pub port: &'static str,
}

#[derive(Serialize, Clone)]
pub struct Resources {
    pub requests: Quantities,
    pub limits: Quantities,
}

#[derive(Serialize, Clone)]
pub struct Quantities {
    pub cpu: String,
    pub memory: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext {
    pub run_as_user: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    pub run_as_non_root: bool,
    pub allow_privilege_escalation: bool,
    pub read_only_root_filesystem: bool,
    pub capabilities: Capabilities,
}

#[derive(Serialize)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<&'static str>,
    pub drop: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<NameRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDir>,
}

#[derive(Serialize)]
pub struct NameRef {
    pub name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub secret_name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDir {
    pub size_limit: &'static str,
}

impl Volume {
    pub fn config_map(name: &'static str, config_map: &str) -> Volume {
        Volume {
            name,
            config_map: Some(NameRef {
                name: config_map.to_owned(),
            }),
            secret: None,
            empty_dir: None,
        }
    }

    pub fn secret(name: &'static str, secret: &str) -> Volume {
        Volume {
            name,
            config_map: None,
            secret: Some(SecretRef {
                secret_name: secret.to_owned(),
            }),
            empty_dir: None,
        }
    }

    pub fn empty_dir(name: &'static str, size_limit: &'static str) -> Volume {
        Volume {
            name,
            config_map: None,
            secret: None,
            empty_dir: Some(EmptyDir { size_limit }),
        }
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only,
    }
}

/// A non-root, read-only, capability-free context for one UID.
fn restricted(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_user: uid,
        run_as_group: Some(uid),
        run_as_non_root: true,
        allow_privilege_escalation: false,
        read_only_root_filesystem: true,
        capabilities: Capabilities {
            add: Vec::new(),
            drop: vec!["ALL"],
        },
    }
}

fn http_probe(path: &'static str, port: &'static str, period: u32, failures: u32) -> Probe {
    Probe {
        http_get: HttpGet { path, port },
        period_seconds: period,
        failure_threshold: failures,
    }
}

fn small_resources() -> Resources {
    Resources {
        requests: Quantities {
            cpu: "50m".into(),
            memory: "32Mi".into(),
        },
        limits: Quantities {
            cpu: "500m".into(),
            memory: "128Mi".into(),
        },
    }
}

/// The interception init step: the only container with NET_ADMIN and NET_RAW, as root.
pub fn init(opts: &InjectOptions, extra_args: Vec<String>) -> Container {
    let mut args = vec![
        "iptables".to_owned(),
        "--proxy-uid".to_owned(),
        opts.proxy_uid.to_string(),
        "--admin-port".to_owned(),
        SIDECAR_ADMIN_PORT.to_string(),
    ];
    args.extend(extra_args);
    Container {
        name: INIT_NAME,
        image: opts.sidecar_image.clone(),
        restart_policy: None,
        args,
        env: Vec::new(),
        ports: Vec::new(),
        lifecycle: None,
        startup_probe: None,
        readiness_probe: None,
        liveness_probe: None,
        resources: Resources {
            requests: Quantities {
                cpu: "10m".into(),
                memory: "16Mi".into(),
            },
            limits: Quantities {
                cpu: "100m".into(),
                memory: "64Mi".into(),
            },
        },
        security_context: SecurityContext {
            run_as_user: 0,
            run_as_group: None,
            run_as_non_root: false,
            allow_privilege_escalation: false,
            read_only_root_filesystem: true,
            capabilities: Capabilities {
                add: vec!["NET_ADMIN", "NET_RAW"],
                drop: vec!["ALL"],
            },
        },
        volume_mounts: Vec::new(),
    }
}

/// The sidecar itself. `native`: an init container with `restartPolicy: Always` whose
/// startupProbe holds the app back; else a regular container whose postStart hook
/// (`sidecar wait-ready`) does.
pub fn sidecar(opts: &InjectOptions, native: bool) -> Container {
    let admin = format!("127.0.0.1:{SIDECAR_ADMIN_PORT}");
    Container {
        name: SIDECAR_NAME,
        image: opts.sidecar_image.clone(),
        restart_policy: native.then_some("Always"),
        args: [
            "run",
            "--config",
            "/etc/sidecar/sidecar.yaml",
            "--log-format",
            "json",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: vec![EnvVar {
            name: "SIDECAR_ADMIN_ADDRESS",
            value: format!("0.0.0.0:{SIDECAR_ADMIN_PORT}"),
        }],
        ports: vec![Port {
            name: "sidecar-admin",
            container_port: SIDECAR_ADMIN_PORT,
        }],
        lifecycle: (!native).then(|| Lifecycle {
            post_start: ExecHandler {
                exec: ExecCommand {
                    command: vec![
                        "sidecar".into(),
                        "wait-ready".into(),
                        "--admin".into(),
                        admin,
                        "--timeout".into(),
                        "60s".into(),
                    ],
                },
            },
        }),
        startup_probe: native.then(|| http_probe("/ready", "sidecar-admin", 1, 60)),
        readiness_probe: Some(http_probe("/ready", "sidecar-admin", 5, 2)),
        liveness_probe: Some(http_probe("/live", "sidecar-admin", 10, 3)),
        resources: opts.sidecar_resources(),
        security_context: restricted(opts.proxy_uid),
        volume_mounts: vec![mount(CONFIG_VOLUME, "/etc/sidecar", true)],
    }
}

/// The ambassador, its config from a ConfigMap (key `ambassador.yaml`) and, when given, a
/// Secret mounted at /var/run/secrets/ambassador. `native`: an init container with
/// `restartPolicy: Always` whose startupProbe holds the app back; else a regular container
/// whose postStart hook (`ambassador wait-ready`) does: a startupProbe does not hold back
/// the next regular container, so the app's first calls could find nothing listening.
pub fn ambassador(opts: &InjectOptions, with_secret: bool, native: bool) -> Container {
    let mut volume_mounts = vec![mount(AMBASSADOR_CONFIG_VOLUME, "/etc/ambassador", true)];
    if with_secret {
        volume_mounts.push(mount(
            AMBASSADOR_SECRET_VOLUME,
            "/var/run/secrets/ambassador",
            true,
        ));
    }
    Container {
        name: AMBASSADOR_NAME,
        image: opts.ambassador_image.clone(),
        restart_policy: native.then_some("Always"),
        args: [
            "run",
            "--config",
            "/etc/ambassador/ambassador.yaml",
            "--log-format",
            "json",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: vec![EnvVar {
            name: "AMBASSADOR_ADMIN_ADDRESS",
            value: format!("0.0.0.0:{AMBASSADOR_ADMIN_PORT}"),
        }],
        ports: vec![Port {
            name: "amb-admin",
            container_port: AMBASSADOR_ADMIN_PORT,
        }],
        lifecycle: (!native).then(|| Lifecycle {
            post_start: ExecHandler {
                exec: ExecCommand {
                    command: vec![
                        "ambassador".into(),
                        "wait-ready".into(),
                        "--admin".into(),
                        format!("127.0.0.1:{AMBASSADOR_ADMIN_PORT}"),
                        "--timeout".into(),
                        "60s".into(),
                    ],
                },
            },
        }),
        startup_probe: Some(http_probe("/ready", "amb-admin", 1, 60)),
        readiness_probe: Some(http_probe("/ready", "amb-admin", 5, 2)),
        liveness_probe: Some(http_probe("/live", "amb-admin", 10, 3)),
        resources: small_resources(),
        security_context: restricted(AMBASSADOR_UID),
        volume_mounts,
    }
}

/// The adapter following `path` (a glob in the file name) in the log volume `logs_volume`
/// mounted at `dir`, checkpointing in its own emptyDir. `native`: an init container with
/// `restartPolicy: Always`; else a regular container.
pub fn adapter(
    opts: &InjectOptions,
    format: &str,
    path: &str,
    dir: &str,
    logs_volume: &str,
    native: bool,
) -> Container {
    Container {
        name: ADAPTER_NAME,
        image: opts.adapter_image.clone(),
        restart_policy: native.then_some("Always"),
        args: vec![
            "tail".into(),
            "--format".into(),
            format.into(),
            "--state-dir".into(),
            "/var/lib/adapter".into(),
            "--admin".into(),
            format!("0.0.0.0:{ADAPTER_ADMIN_PORT}"),
            path.into(),
        ],
        env: Vec::new(),
        ports: vec![Port {
            name: "adapter-admin",
            container_port: ADAPTER_ADMIN_PORT,
        }],
        lifecycle: None,
        startup_probe: Some(http_probe("/ready", "adapter-admin", 1, 60)),
        readiness_probe: Some(http_probe("/ready", "adapter-admin", 5, 2)),
        liveness_probe: None,
        resources: small_resources(),
        security_context: restricted(ADAPTER_UID),
        volume_mounts: vec![
            mount(logs_volume, dir, true),
            mount(ADAPTER_STATE_VOLUME, "/var/lib/adapter", false),
        ],
    }
}

/// The mount that puts the shared log volume into an app container.
pub fn app_log_mount(dir: &str) -> VolumeMount {
    mount(ADAPTER_LOGS_VOLUME, dir, false)
}
