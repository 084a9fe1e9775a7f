//! Process logs via `tracing-subscriber`: text for people, JSON for log pipelines, to stderr
//! (stdout may carry the access log). The level comes from the program's `*_LOG` variable.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Install the global subscriber. `filter` is an `EnvFilter` directive like `info` or
/// `proxy_core=debug`; an invalid one falls back to `info` with a warning.
pub fn init(format: LogFormat, filter: Option<&str>) {
    let (filter, bad) = match filter {
        None => (EnvFilter::new("info"), None),
        Some(f) => match EnvFilter::try_new(f) {
            Ok(ef) => (ef, None),
            Err(e) => (
                EnvFilter::new("info"),
                Some(format!("invalid log filter {f:?}: {e}")),
            ),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    if let Some(msg) = bad {
        tracing::warn!("{msg}; using \"info\"");
    }
}
