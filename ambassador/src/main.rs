//! `ambassador`: parse the command line, set up logging, load the config, run.
//! Everything else lives in the ambassador library and proxy-core.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ambassador::config::Config;
use ambassador::metrics::AmbassadorMetrics;
use clap::{Parser, Subcommand};
use proxy_core::config::ConfigErrors;
use proxy_core::runtime;
use proxy_core::telemetry::logging::{self, LogFormat};
use proxy_core::telemetry::metrics::Metrics;

/// Exit code for a config that does not validate (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "ambassador",
    version,
    about = "An egress proxy that puts credentials on your service's calls to third-party APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (YAML).
    #[arg(long, short = 'c', env = "AMBASSADOR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Process log format.
    #[arg(long, env = "AMBASSADOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate a config file: print every problem with its path, exit 64 if any.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Wait until an ambassador's admin /ready answers 200 (its listeners are up), then exit
    /// 0 or run COMMAND: the postStart hook that holds the app back on clusters without
    /// native sidecars.
    WaitReady {
        /// The ambassador's admin address.
        #[arg(long, default_value = "127.0.0.1:15100")]
        admin: String,
        /// Give up (exit 1) after this long.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// The command to run once ready; it replaces this process (exit status, signals).
        #[arg(last = true)]
        command: Vec<std::ffi::OsString>,
    },
}

fn report(file: &std::path::Path, errs: &ConfigErrors) -> ExitCode {
    eprintln!("{}: {} problem(s)", file.display(), errs.0.len());
    eprintln!("{errs}");
    ExitCode::from(EXIT_CONFIG)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig { file } => match Config::from_file(&file) {
            Ok(cfg) => match cfg.hooks(&AmbassadorMetrics::default()) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(errs) => report(&file, &errs),
            },
            Err(errs) => report(&file, &errs),
        },
        Command::Run => run(cli.config, cli.log_format),
        Command::WaitReady {
            admin,
            timeout,
            command,
        } => proxy_core::wait_ready::command_line("ambassador", &admin, timeout, &command),
    }
}

fn run(config: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
    logging::init(log_format, std::env::var("AMBASSADOR_LOG").ok().as_deref());
    let Some(path) = config else {
        eprintln!("ambassador: --config FILE is required (or AMBASSADOR_CONFIG)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let cfg = match Config::from_file(&path) {
        Ok(c) => c,
        Err(errs) => return report(&path, &errs),
    };
    let own = AmbassadorMetrics::default();
    let hooks = match cfg.hooks(&own) {
        Ok(h) => h,
        Err(errs) => return report(&path, &errs),
    };
    let proxy = match cfg.proxy_config() {
        Ok(p) => p,
        Err(errs) => return report(&path, &errs),
    };
    let metrics = Metrics::with_extra("ambassador", |r| own.register(r));
    let opts = runtime::Options {
        config: proxy,
        // The file is the ambassador's, not a proxy-core document: no reload from it.
        config_path: None,
        admin_address: std::env::var("AMBASSADOR_ADMIN_ADDRESS").ok(),
        metrics_prefix: "ambassador",
        metrics: Some(metrics),
        hooks: Some(Arc::new(hooks)),
        config_dump: serde_json::to_value(&cfg).ok(),
    };
    match runtime::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ambassador: {e}");
            ExitCode::FAILURE
        }
    }
}
