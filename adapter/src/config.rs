//! The YAML config file: every command-line input and output, in one document.
//!
//! Same conventions as proxy-core's config: unknown keys are errors, and every problem names
//! its field path (`output.http.max_wait: invalid duration`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::app::{InputConfig, MultilineConfig, Settings};
use crate::input::tail::TailConfig;
use crate::output::OutputConfig;
use crate::output::http::{BodyShape, HttpConfig};
use crate::parse::key_value::KeyValueOptions;
use crate::parse::multiline::Rule;
use crate::parse::{DEFAULT_MAX_LINE_BYTES, Format, ParserConfig};

#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {field}: {reason}")]
    Field {
        path: PathBuf,
        field: String,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    input: InputFile,
    #[serde(default)]
    parser: ParserFile,
    multiline: Option<MultilineFile>,
    #[serde(default)]
    output: OutputFile,
    admin: Option<AdminFile>,
}

/// Exactly one of the inputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFile {
    stdin: Option<Empty>,
    run: Option<RunFile>,
    tail: Option<TailFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    command: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TailFile {
    paths: Vec<String>,
    state_dir: Option<PathBuf>,
    #[serde(default = "default_poll", with = "humantime_serde_compat")]
    poll_interval: Duration,
    #[serde(default = "default_rotate_wait", with = "humantime_serde_compat")]
    rotate_wait: Duration,
}

fn default_poll() -> Duration {
    Duration::from_millis(100)
}
fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParserFile {
    #[serde(default = "default_format")]
    format: String,
    #[serde(default = "default_tz")]
    timezone: String,
    #[serde(default = "default_max_line")]
    max_line_bytes: usize,
    pattern: Option<String>,
    #[serde(default)]
    key_value: KeyValueFile,
}

impl Default for ParserFile {
    fn default() -> Self {
        ParserFile {
            format: default_format(),
            timezone: default_tz(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            pattern: None,
            key_value: KeyValueFile::default(),
        }
    }
}

fn default_format() -> String {
    "auto".into()
}
fn default_tz() -> String {
    "UTC".into()
}
fn default_max_line() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyValueFile {
    #[serde(default = "default_kv")]
    key_value_delimiter: String,
    #[serde(default = "default_fd")]
    field_delimiter: String,
    #[serde(default = "default_true")]
    lenient_whitespace: bool,
    #[serde(default = "default_true")]
    standalone_keys: bool,
}

impl Default for KeyValueFile {
    fn default() -> Self {
        KeyValueFile {
            key_value_delimiter: default_kv(),
            field_delimiter: default_fd(),
            lenient_whitespace: true,
            standalone_keys: true,
        }
    }
}

fn default_kv() -> String {
    "=".into()
}
fn default_fd() -> String {
    " ".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultilineFile {
    preset: Option<String>,
    start: Option<String>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
    #[serde(default = "default_flush", with = "humantime_serde_compat")]
    flush_timeout: Duration,
}

/// At most one of the outputs; none means stdout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputFile {
    stdout: Option<Empty>,
    file: Option<FileOutput>,
    http: Option<HttpFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOutput {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    url: String,
    #[serde(default = "default_shape")]
    body: String,
    index: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    gzip: bool,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    max_records: Option<usize>,
    max_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde_compat::option")]
    max_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde_compat::option")]
    request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_compat::option")]
    base_backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde_compat::option")]
    max_backoff: Option<Duration>,
    breaker_failures: Option<u32>,
}

fn default_shape() -> String {
    "ndjson".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    address: SocketAddr,
}

/// Durations as humantime strings (`250ms`, `5s`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| D::Error::custom(format!("invalid duration `{text}`: {e}")))
    }

    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// Reads and checks a config file; `command` (from `adapter run ... -- CMD`) replaces the
/// input with that command.
pub fn load(
    path: &Path,
    command: Option<Vec<std::ffi::OsString>>,
) -> Result<Settings, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, command)
}

fn parse(
    text: &str,
    path: &Path,
    command: Option<Vec<std::ffi::OsString>>,
) -> Result<Settings, ConfigFileError> {
    let field = |field: &str, reason: String| ConfigFileError::Field {
        path: path.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let de = serde_norway::Deserializer::from_str(text);
    let file: File = serde_path_to_error::deserialize(de).map_err(|err| {
        let at = err.path().to_string();
        field(
            if at.is_empty() { "." } else { &at },
            err.into_inner().to_string(),
        )
    })?;

    let format: Format = file
        .parser
        .format
        .parse()
        .map_err(|e: crate::parse::ConfigError| field("parser.format", e.to_string()))?;
    let mut parser = ParserConfig::new(format);
    parser.timezone =
        file.parser
            .timezone
            .parse()
            .map_err(|e: crate::parse::timestamp::TimeZoneError| {
                field("parser.timezone", e.to_string())
            })?;
    parser.max_line_bytes = file.parser.max_line_bytes;
    parser.pattern = file.parser.pattern;
    parser.key_value = KeyValueOptions {
        key_value_delimiter: file.parser.key_value.key_value_delimiter,
        field_delimiter: file.parser.key_value.field_delimiter,
        lenient_whitespace: file.parser.key_value.lenient_whitespace,
        accept_standalone_key: file.parser.key_value.standalone_keys,
    };
    if let Err(err) = crate::parse::Parser::new(parser.clone()) {
        return Err(field("parser", err.to_string()));
    }

    let multiline = match file.multiline {
        None => None,
        Some(m) => {
            let rule = match (&m.preset, &m.start, &m.continue_) {
                (Some(p), None, None) => {
                    Rule::preset(p).map_err(|e| field("multiline.preset", e.to_string()))?
                }
                (None, s, c) => Rule::custom(s.as_deref(), c.as_deref())
                    .map_err(|e| field("multiline", e.to_string()))?,
                (Some(_), _, _) => {
                    return Err(field(
                        "multiline",
                        "give either `preset` or `start`/`continue`, not both".into(),
                    ));
                }
            };
            Some(MultilineConfig {
                rule,
                flush_timeout: m.flush_timeout,
            })
        }
    };

    let inputs = [
        file.input.stdin.is_some(),
        file.input.run.is_some(),
        file.input.tail.is_some(),
    ];
    if inputs.iter().filter(|x| **x).count() != 1 {
        return Err(field(
            "input",
            "give exactly one of `stdin`, `run`, `tail`".into(),
        ));
    }
    let input = if let Some(mut cmd) = command.filter(|c| !c.is_empty()) {
        let program = cmd.remove(0);
        InputConfig::Run { program, args: cmd }
    } else if let Some(run) = file.input.run {
        let mut command = run.command;
        if command.is_empty() {
            return Err(field("input.run.command", "must name a program".into()));
        }
        let program = command.remove(0).into();
        InputConfig::Run {
            program,
            args: command.into_iter().map(Into::into).collect(),
        }
    } else if let Some(tail) = file.input.tail {
        if tail.paths.is_empty() {
            return Err(field(
                "input.tail.paths",
                "must list at least one path".into(),
            ));
        }
        for (i, p) in tail.paths.iter().enumerate() {
            crate::input::tail::Pattern::parse(p)
                .map_err(|e| field(&format!("input.tail.paths[{i}]"), e.to_string()))?;
        }
        InputConfig::Tail {
            tail: TailConfig {
                patterns: tail.paths,
                poll_interval: tail.poll_interval,
                rotate_wait: tail.rotate_wait,
            },
            state_dir: tail.state_dir,
        }
    } else {
        InputConfig::Stdin
    };

    let outputs = [
        file.output.stdout.is_some(),
        file.output.file.is_some(),
        file.output.http.is_some(),
    ];
    if outputs.iter().filter(|x| **x).count() > 1 {
        return Err(field(
            "output",
            "give at most one of `stdout`, `file`, `http`".into(),
        ));
    }
    let output = if let Some(f) = file.output.file {
        OutputConfig::File(f.path)
    } else if let Some(h) = file.output.http {
        OutputConfig::Http(Box::new(http_config(h, &field)?))
    } else {
        OutputConfig::Stdout
    };

    Ok(Settings {
        input,
        parser,
        multiline,
        output,
        admin: file.admin.map(|a| a.address),
    })
}

fn http_config(
    h: HttpFile,
    field: &dyn Fn(&str, String) -> ConfigFileError,
) -> Result<HttpConfig, ConfigFileError> {
    let uri = parse_http_url(&h.url).map_err(|e| field("output.http.url", e))?;
    let mut cfg = HttpConfig::new(uri);
    cfg.shape = match h.body.as_str() {
        "ndjson" => BodyShape::Ndjson,
        "elasticsearch" => BodyShape::ElasticsearchBulk {
            index: h.index.clone().unwrap_or_else(|| "logs".into()),
        },
        "loki" => BodyShape::Loki {
            labels: if h.labels.is_empty() {
                vec![("job".into(), "adapter".into())]
            } else {
                h.labels.clone().into_iter().collect()
            },
        },
        other => {
            return Err(field(
                "output.http.body",
                format!("unknown body shape `{other}`; known: ndjson, elasticsearch, loki"),
            ));
        }
    };
    if h.index.is_some() && !matches!(cfg.shape, BodyShape::ElasticsearchBulk { .. }) {
        return Err(field(
            "output.http.index",
            "only used with body: elasticsearch".into(),
        ));
    }
    cfg.gzip = h.gzip;
    for (k, v) in h.headers {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(&v).is_err()
        {
            return Err(field(
                &format!("output.http.headers.{k}"),
                "not a valid header name and value".into(),
            ));
        }
        cfg.headers.push((k, v));
    }
    if let Some(n) = h.max_records {
        if n == 0 {
            return Err(field(
                "output.http.max_records",
                "must be at least 1".into(),
            ));
        }
        cfg.max_records = n;
    }
    if let Some(n) = h.max_bytes {
        if n == 0 {
            return Err(field("output.http.max_bytes", "must be at least 1".into()));
        }
        cfg.max_bytes = n;
    }
    if let Some(d) = h.max_wait {
        cfg.max_wait = d;
    }
    if let Some(d) = h.request_timeout {
        cfg.request_timeout = d;
    }
    if let Some(d) = h.base_backoff {
        cfg.base_backoff = d;
    }
    if let Some(d) = h.max_backoff {
        cfg.max_backoff = d;
    }
    if cfg.base_backoff > cfg.max_backoff {
        return Err(field(
            "output.http.base_backoff",
            "must not exceed max_backoff".into(),
        ));
    }
    if let Some(n) = h.breaker_failures {
        cfg.breaker_failures = n.max(1);
    }
    Ok(cfg)
}

/// An `http://` URL (the HTTP output does not speak TLS).
pub fn parse_http_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => Ok(uri),
        Some("https") => Err("https is not supported; send to a local TLS-terminating agent or proxy (such as the sidecar)".into()),
        _ => Err("must be an absolute http:// URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, Path::new("a.yaml"), None) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_full_config_is_read() {
        let s = parse(
            "input:\n  tail:\n    paths: [/var/log/a*.log]\n    state_dir: /tmp/st\n    poll_interval: 50ms\n\
parser:\n  format: apache_combined\nmultiline:\n  preset: java\n  flush_timeout: 2s\n\
output:\n  http:\n    url: http://127.0.0.1:9/bulk\n    body: elasticsearch\n    index: web\n    gzip: true\n    max_wait: 200ms\n\
admin:\n  address: 127.0.0.1:0\n",
            Path::new("a.yaml"),
            None,
        )
        .expect("valid");
        assert!(
            matches!(s.input, InputConfig::Tail { ref tail, .. } if tail.poll_interval == Duration::from_millis(50))
        );
        assert!(
            matches!(s.output, OutputConfig::Http(ref h) if h.gzip && h.max_wait == Duration::from_millis(200))
        );
        assert!(s.multiline.is_some());
    }

    #[test]
    fn problems_name_their_field_path() {
        let unknown = err("input:\n  stdin: {}\nparser:\n  formt: x\n");
        assert!(
            unknown.starts_with("a.yaml: parser.formt: ")
                && unknown.contains("unknown field `formt`"),
            "{unknown}"
        );
        assert!(
            err("input:\n  stdin: {}\n  tail:\n    paths: [a]\n")
                .contains("input: give exactly one")
        );
        assert!(
            err("input:\n  stdin: {}\nparser:\n  format: nope\n")
                .starts_with("a.yaml: parser.format: unknown format `nope`")
        );
        assert!(
            err("input:\n  stdin: {}\noutput:\n  http:\n    url: https://x/\n")
                .contains("output.http.url: https is not supported")
        );
        assert!(err("input:\n  tail:\n    paths: [/a/*/b]\n").contains("input.tail.paths[0]: "));
        assert!(
            err("input:\n  stdin: {}\noutput:\n  http:\n    url: http://x/\n    max_wait: soon\n")
                .starts_with("a.yaml: output.http.max_wait: ")
        );
        assert!(
            err("input:\n  stdin: {}\nmultiline:\n  preset: cobol\n")
                .contains("multiline.preset: unknown multiline preset")
        );
    }
}
