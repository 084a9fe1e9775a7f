//! `sidecar`: parse the command line, set up logging, load the config, run.
//! Everything else lives in the proxy-core library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use proxy_core::config::{self, Config};
use proxy_core::runtime;
use proxy_core::telemetry::logging::{self, LogFormat};

/// Exit code for a config that does not validate (as linkerd2-proxy: EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "sidecar",
    version,
    about = "A fast, small HTTP/TCP proxy that runs beside your service"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Config file (YAML). Without one, the built-in default config runs.
    #[arg(long, short = 'c', env = "SIDECAR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Process log format.
    #[arg(long, env = "SIDECAR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate a config file: print every problem with its path, exit non-zero if any.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the built-in default config.
    DefaultConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::DefaultConfig => {
            print!("{}", config::DEFAULT_YAML);
            ExitCode::SUCCESS
        }
        Command::CheckConfig { file } => match Config::from_file(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{}: {} problem(s)", file.display(), errs.0.len());
                eprintln!("{errs}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run => run(cli.run),
    }
}

fn run(args: RunArgs) -> ExitCode {
    logging::init(
        args.log_format,
        std::env::var("SIDECAR_LOG").ok().as_deref(),
    );
    let config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(errs) => {
                eprintln!("{}: {} problem(s)", path.display(), errs.0.len());
                eprintln!("{errs}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => Config::default_config(),
    };
    let opts = runtime::Options {
        config,
        config_path: args.config,
        admin_address: std::env::var("SIDECAR_ADMIN_ADDRESS").ok(),
        metrics_prefix: "sidecar",
        metrics: None,
        hooks: None,
        config_dump: None,
    };
    match runtime::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}
