//! Automatic injection: put the sidecar (and, by annotation, the ambassador or the adapter)
//! into a pod spec.
//!
//! One function, [`inject_pod`], does it for both front ends: `sidecar inject` rewriting
//! manifests offline ([`manifest`]), and `sidecar injector`, the mutating admission webhook
//! ([`webhook`], [`server`]). It adds the interception init container, the sidecar as a
//! native sidecar (or, for clusters before 1.29, as the first container held back by
//! `wait-ready`), their volumes, and a status annotation. It is idempotent: a pod that
//! carries the status annotation or an injected container's name is left as it is.

pub mod containers;
pub mod manifest;
pub mod server;
pub mod webhook;

use serde_norway::{Mapping, Value};

use containers::{
    ADAPTER_LOGS_VOLUME, ADAPTER_NAME, ADAPTER_STATE_VOLUME, AMBASSADOR_CONFIG_VOLUME,
    AMBASSADOR_NAME, AMBASSADOR_SECRET_VOLUME, CONFIG_VOLUME, INIT_NAME, Quantities, Resources,
    SIDECAR_NAME, Volume,
};

/// Pod annotations that steer injection.
pub const ANNOTATION_INJECT: &str = "sidecar.suite/inject";
pub const ANNOTATION_STATUS: &str = "sidecar.suite/status";
pub const ANNOTATION_CONFIG: &str = "sidecar.suite/config";
pub const ANNOTATION_AMBASSADOR_CONFIG: &str = "sidecar.suite/ambassador-config";
pub const ANNOTATION_AMBASSADOR_SECRET: &str = "sidecar.suite/ambassador-secret";
pub const ANNOTATION_ADAPTER_FORMAT: &str = "sidecar.suite/adapter-format";
pub const ANNOTATION_ADAPTER_PATH: &str = "sidecar.suite/adapter-path";
pub const ANNOTATION_INBOUND_EXCLUDE_PORTS: &str = "sidecar.suite/inbound-exclude-ports";
pub const ANNOTATION_OUTBOUND_EXCLUDE_PORTS: &str = "sidecar.suite/outbound-exclude-ports";
pub const ANNOTATION_OUTBOUND_EXCLUDE_CIDRS: &str = "sidecar.suite/outbound-exclude-cidrs";

/// Where the sidecar goes in the pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// A native sidecar (init container with `restartPolicy: Always`), Kubernetes 1.29+.
    #[default]
    Native,
    /// The first regular container with a `sidecar wait-ready` postStart hook, for older
    /// clusters.
    Container,
}

/// What is injected and with which images and resources; the flags of `sidecar inject` and
/// `sidecar injector`.
#[derive(Clone, Debug, clap::Args)]
pub struct InjectOptions {
    /// Image of the sidecar and of the init container.
    #[arg(long, default_value = "sidecar-suite/sidecar:0.1.0")]
    pub sidecar_image: String,
    /// Image of the ambassador (added by the `sidecar.suite/ambassador-config` annotation).
    #[arg(long, default_value = "sidecar-suite/ambassador:0.1.0")]
    pub ambassador_image: String,
    /// Image of the adapter (added by the `sidecar.suite/adapter-*` annotations).
    #[arg(long, default_value = "sidecar-suite/adapter:0.1.0")]
    pub adapter_image: String,
    /// The ConfigMap holding the sidecar's `sidecar.yaml` (a pod's `sidecar.suite/config`
    /// annotation overrides it).
    #[arg(long, default_value = "sidecar-config")]
    pub config_map: String,
    /// The UID the sidecar runs as, exempted from interception.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: i64,
    /// The sidecar's CPU request.
    #[arg(long, default_value = "100m")]
    pub cpu_request: String,
    /// The sidecar's CPU limit.
    #[arg(long, default_value = "1")]
    pub cpu_limit: String,
    /// The sidecar's memory request.
    #[arg(long, default_value = "64Mi")]
    pub memory_request: String,
    /// The sidecar's memory limit.
    #[arg(long, default_value = "256Mi")]
    pub memory_limit: String,
    /// `native` sidecars (Kubernetes 1.29+) or a regular `container` held by wait-ready.
    #[arg(long, value_enum, default_value_t = Placement::Native)]
    pub placement: Placement,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            sidecar_image: "sidecar-suite/sidecar:0.1.0".into(),
            ambassador_image: "sidecar-suite/ambassador:0.1.0".into(),
            adapter_image: "sidecar-suite/adapter:0.1.0".into(),
            config_map: "sidecar-config".into(),
            proxy_uid: 1337,
            cpu_request: "100m".into(),
            cpu_limit: "1".into(),
            memory_request: "64Mi".into(),
            memory_limit: "256Mi".into(),
            placement: Placement::Native,
        }
    }
}

impl InjectOptions {
    fn sidecar_resources(&self) -> Resources {
        Resources {
            requests: Quantities {
                cpu: self.cpu_request.clone(),
                memory: self.memory_request.clone(),
            },
            limits: Quantities {
                cpu: self.cpu_limit.clone(),
                memory: self.memory_limit.clone(),
            },
        }
    }
}

/// What injection did to one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Containers were added; their names.
    Injected(Vec<&'static str>),
    /// `sidecar.suite/inject: "false"`.
    OptedOut,
    /// Injected before: nothing changed.
    AlreadyInjected,
    /// `hostNetwork: true`: interception rules would land in the node's namespace.
    HostNetwork,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Injected(names) => write!(f, "injected {}", names.join(", ")),
            Outcome::OptedOut => write!(f, "skipped: {ANNOTATION_INJECT} is \"false\""),
            Outcome::AlreadyInjected => write!(f, "skipped: already injected"),
            Outcome::HostNetwork => write!(f, "skipped: hostNetwork pods are not intercepted"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl InjectError {
    pub fn reason(&self) -> &'static str {
        match self {
            InjectError::Invalid { .. } => "invalid_pod",
        }
    }
}

/// `field` is a path from the object (`spec.template.spec...`, or `spec...` for a Pod, whose
/// pod template is at the empty path and so starts with a dot here).
fn invalid(field: impl Into<String>, message: impl Into<String>) -> InjectError {
    InjectError::Invalid {
        field: field.into().trim_start_matches('.').to_owned(),
        message: message.into(),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Serializing plain structs of strings and numbers into a YAML value cannot fail.
    serde_norway::to_value(v).unwrap_or(Value::Null)
}

/// The string annotations of a pod's metadata (absent → empty).
fn annotation<'a>(metadata: &'a Value, key: &str) -> Option<&'a str> {
    metadata.get("annotations")?.get(key)?.as_str()
}

/// `map[key]` as a sequence, created when missing; `at` names the field in errors.
fn sequence<'a>(
    map: &'a mut Mapping,
    key: &str,
    at: &str,
) -> Result<&'a mut Vec<Value>, InjectError> {
    let slot = map
        .entry(Value::String(key.to_owned()))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if slot.is_null() {
        *slot = Value::Sequence(Vec::new());
    }
    slot.as_sequence_mut()
        .ok_or_else(|| invalid(format!("{at}.{key}"), "must be a list"))
}

fn names(list: Option<&Value>) -> Vec<&str> {
    list.and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Inject into one pod (`metadata` and `spec` of a Pod or of a workload's pod template).
/// `at` is the path of the pod template in its document, for error messages.
pub fn inject_pod(
    metadata: &mut Value,
    spec: &mut Value,
    opts: &InjectOptions,
    at: &str,
) -> Result<Outcome, InjectError> {
    if metadata.is_null() {
        *metadata = Value::Mapping(Mapping::new());
    }
    if !metadata.is_mapping() {
        return Err(invalid(format!("{at}.metadata"), "must be a mapping"));
    }
    if let Some(a) = metadata.get("annotations")
        && !a.is_null()
        && !a.is_mapping()
    {
        return Err(invalid(
            format!("{at}.metadata.annotations"),
            "must be a mapping",
        ));
    }
    match annotation(metadata, ANNOTATION_INJECT) {
        None | Some("true") => {}
        Some("false") => return Ok(Outcome::OptedOut),
        Some(other) => {
            return Err(invalid(
                format!("{at}.metadata.annotations[{ANNOTATION_INJECT}]"),
                format!("\"{other}\": expected \"true\" or \"false\""),
            ));
        }
    }
    let spec_at = format!("{at}.spec");
    let Some(spec_map) = spec.as_mapping_mut() else {
        return Err(invalid(spec_at, "must be a mapping"));
    };
    if spec_map.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Ok(Outcome::HostNetwork);
    }
    let present: Vec<String> = names(spec_map.get("initContainers"))
        .into_iter()
        .chain(names(spec_map.get("containers")))
        .map(str::to_owned)
        .collect();
    if annotation(metadata, ANNOTATION_STATUS).is_some()
        || present.iter().any(|n| n == INIT_NAME || n == SIDECAR_NAME)
    {
        return Ok(Outcome::AlreadyInjected);
    }
    if names(spec_map.get("containers")).is_empty() {
        return Err(invalid(
            format!("{spec_at}.containers"),
            "a pod needs at least one container with a name",
        ));
    }
    let plan = Plan::read(metadata, at)?;

    let mut volumes_added: Vec<&'static str> = vec![CONFIG_VOLUME];
    let mut new_init = vec![to_value(&containers::init(
        opts,
        plan.iptables_args.clone(),
    ))];
    let native = opts.placement == Placement::Native;
    // Natively all helpers are init containers with `restartPolicy: Always`, after the
    // interception init container. Before 1.29 an init container must run to completion,
    // so there they are the first regular containers, the sidecar first (its postStart
    // hook holds back every container after it until it is ready).
    let mut helpers = vec![to_value(&containers::sidecar(opts, native))];
    let mut added = vec![INIT_NAME, SIDECAR_NAME];
    let mut new_volumes = vec![to_value(&Volume::config_map(
        CONFIG_VOLUME,
        plan.config_map.as_deref().unwrap_or(&opts.config_map),
    ))];
    if let Some(amb) = &plan.ambassador {
        helpers.push(to_value(&containers::ambassador(
            opts,
            amb.secret.is_some(),
            native,
        )));
        new_volumes.push(to_value(&Volume::config_map(
            AMBASSADOR_CONFIG_VOLUME,
            &amb.config_map,
        )));
        volumes_added.push(AMBASSADOR_CONFIG_VOLUME);
        if let Some(secret) = &amb.secret {
            new_volumes.push(to_value(&Volume::secret(AMBASSADOR_SECRET_VOLUME, secret)));
            volumes_added.push(AMBASSADOR_SECRET_VOLUME);
        }
        added.push(AMBASSADOR_NAME);
    }
    if let Some(adapter) = &plan.adapter {
        let existing = log_volume_at(spec_map, &adapter.dir);
        let logs_volume = existing.clone().unwrap_or(ADAPTER_LOGS_VOLUME.to_owned());
        if existing.is_none() {
            new_volumes.push(to_value(&Volume::empty_dir(ADAPTER_LOGS_VOLUME, "1Gi")));
            volumes_added.push(ADAPTER_LOGS_VOLUME);
            // The app writes its log files into the shared volume at the same directory.
            let app_mount = to_value(&containers::app_log_mount(&adapter.dir));
            for (i, c) in sequence(spec_map, "containers", &spec_at)?
                .iter_mut()
                .enumerate()
            {
                let Some(c) = c.as_mapping_mut() else {
                    return Err(invalid(
                        format!("{spec_at}.containers[{i}]"),
                        "must be a mapping",
                    ));
                };
                sequence(c, "volumeMounts", &format!("{spec_at}.containers[{i}]"))?
                    .push(app_mount.clone());
            }
        }
        new_volumes.push(to_value(&Volume::empty_dir(ADAPTER_STATE_VOLUME, "16Mi")));
        volumes_added.push(ADAPTER_STATE_VOLUME);
        helpers.push(to_value(&containers::adapter(
            opts,
            &adapter.format,
            &adapter.path,
            &adapter.dir,
            &logs_volume,
            native,
        )));
        added.push(ADAPTER_NAME);
    }
    for name in &added {
        if present.iter().any(|p| p == name) {
            return Err(invalid(
                format!("{spec_at}.containers"),
                format!("a container is already named \"{name}\", the name injection needs"),
            ));
        }
    }

    // The injected init containers run first, so the app's own init containers already
    // have the mesh (and, natively, the sidecar) in place.
    if native {
        new_init.extend(helpers);
    } else {
        sequence(spec_map, "containers", &spec_at)?.splice(0..0, helpers);
    }
    let init = sequence(spec_map, "initContainers", &spec_at)?;
    init.splice(0..0, new_init);
    let volumes = sequence(spec_map, "volumes", &spec_at)?;
    let taken: Vec<String> = names(Some(&Value::Sequence(volumes.clone())))
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(clash) = volumes_added.iter().find(|v| taken.iter().any(|t| t == *v)) {
        return Err(invalid(
            format!("{spec_at}.volumes"),
            format!("a volume is already named \"{clash}\", the name injection needs"),
        ));
    }
    volumes.extend(new_volumes);

    let status = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "containers": added,
        "volumes": volumes_added,
        "placement": if native { "native" } else { "container" },
    });
    let Some(meta) = metadata.as_mapping_mut() else {
        return Err(invalid(format!("{at}.metadata"), "must be a mapping"));
    };
    let annotations = meta
        .entry(Value::String("annotations".into()))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if annotations.is_null() {
        *annotations = Value::Mapping(Mapping::new());
    }
    if let Some(a) = annotations.as_mapping_mut() {
        a.insert(
            Value::String(ANNOTATION_STATUS.into()),
            Value::String(status.to_string()),
        );
    }
    Ok(Outcome::Injected(added))
}

/// The name of the volume an app container already mounts at `dir`, if any.
fn log_volume_at(spec: &Mapping, dir: &str) -> Option<String> {
    spec.get("containers")?
        .as_sequence()?
        .iter()
        .filter_map(|c| c.get("volumeMounts")?.as_sequence())
        .flatten()
        .find(|m| m.get("mountPath").and_then(Value::as_str) == Some(dir))
        .and_then(|m| m.get("name")?.as_str())
        .map(str::to_owned)
}

/// What a pod's annotations ask for, checked before anything is changed.
struct Plan {
    config_map: Option<String>,
    ambassador: Option<AmbassadorPlan>,
    adapter: Option<AdapterPlan>,
    iptables_args: Vec<String>,
}

struct AmbassadorPlan {
    config_map: String,
    secret: Option<String>,
}

struct AdapterPlan {
    format: String,
    path: String,
    dir: String,
}

/// A Kubernetes object name (RFC 1123 subdomain), as ConfigMap and Secret names must be.
fn valid_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Plan {
    fn read(metadata: &Value, at: &str) -> Result<Plan, InjectError> {
        let field = |key: &str| format!("{at}.metadata.annotations[{key}]");
        let object_name = |key: &str| -> Result<Option<String>, InjectError> {
            match annotation(metadata, key) {
                None => Ok(None),
                Some(v) if valid_object_name(v) => Ok(Some(v.to_owned())),
                Some(v) => Err(invalid(
                    field(key),
                    format!("\"{v}\" is not a valid ConfigMap or Secret name"),
                )),
            }
        };
        let config_map = object_name(ANNOTATION_CONFIG)?;
        let ambassador = match (
            object_name(ANNOTATION_AMBASSADOR_CONFIG)?,
            object_name(ANNOTATION_AMBASSADOR_SECRET)?,
        ) {
            (Some(config_map), secret) => Some(AmbassadorPlan { config_map, secret }),
            (None, Some(_)) => {
                return Err(invalid(
                    field(ANNOTATION_AMBASSADOR_SECRET),
                    format!("needs {ANNOTATION_AMBASSADOR_CONFIG} too"),
                ));
            }
            (None, None) => None,
        };
        let adapter = match (
            annotation(metadata, ANNOTATION_ADAPTER_FORMAT),
            annotation(metadata, ANNOTATION_ADAPTER_PATH),
        ) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    field(ANNOTATION_ADAPTER_PATH),
                    format!("missing: {ANNOTATION_ADAPTER_FORMAT} needs the log file path"),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    field(ANNOTATION_ADAPTER_FORMAT),
                    format!("missing: {ANNOTATION_ADAPTER_PATH} needs the log format"),
                ));
            }
            (Some(format), Some(path)) => Some(AdapterPlan::read(format, path, &field)?),
        };
        let mut iptables_args = Vec::new();
        for (key, flag, check) in [
            (
                ANNOTATION_INBOUND_EXCLUDE_PORTS,
                "--inbound-exclude-ports",
                valid_ports as fn(&str) -> bool,
            ),
            (
                ANNOTATION_OUTBOUND_EXCLUDE_PORTS,
                "--outbound-exclude-ports",
                valid_ports,
            ),
            (
                ANNOTATION_OUTBOUND_EXCLUDE_CIDRS,
                "--outbound-exclude-cidrs",
                valid_cidrs,
            ),
        ] {
            if let Some(v) = annotation(metadata, key) {
                let v = v.replace(' ', "");
                if !check(&v) {
                    return Err(invalid(
                        field(key),
                        format!("\"{v}\": expected a comma-separated list"),
                    ));
                }
                iptables_args.push(flag.to_owned());
                iptables_args.push(v);
            }
        }
        Ok(Plan {
            config_map,
            ambassador,
            adapter,
            iptables_args,
        })
    }
}

fn valid_ports(s: &str) -> bool {
    s.split(',').all(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

fn valid_cidrs(s: &str) -> bool {
    s.split(',').all(|c| {
        let (ip, len) = c.split_once('/').unwrap_or((c, "32"));
        ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 128)
    })
}

impl AdapterPlan {
    fn read(
        format: &str,
        path: &str,
        field: &dyn Fn(&str) -> String,
    ) -> Result<AdapterPlan, InjectError> {
        if format.is_empty()
            || !format
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(invalid(
                field(ANNOTATION_ADAPTER_FORMAT),
                format!("\"{format}\" is not a format name (like apache_combined or log4j)"),
            ));
        }
        let bad_path =
            |why: &str| invalid(field(ANNOTATION_ADAPTER_PATH), format!("\"{path}\": {why}"));
        let p = std::path::Path::new(path);
        if !p.is_absolute() {
            return Err(bad_path("must be an absolute path"));
        }
        let dir = p
            .parent()
            .and_then(|d| d.to_str())
            .filter(|d| *d != "/")
            .ok_or_else(|| bad_path("must name a file inside a directory"))?;
        if dir.contains(['*', '?', '[']) {
            return Err(bad_path("wildcards are allowed in the file name only"));
        }
        Ok(AdapterPlan {
            format: format.to_owned(),
            path: path.to_owned(),
            dir: dir.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
