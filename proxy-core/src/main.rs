//! `sidecar`: parse the command line, set up logging, load the config, run.
//! Everything else lives in the proxy-core library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use proxy_core::config::{self, Config};
use proxy_core::inspect;
use proxy_core::runtime;
use proxy_core::telemetry::logging::{self, LogFormat};
use proxy_core::tls::certs;

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
    /// Convert an Envoy v3 static bootstrap to a sidecar config on stdout; every field that
    /// could not be converted is reported on stderr with its path.
    ImportEnvoy {
        /// The Envoy bootstrap (YAML or JSON).
        file: PathBuf,
    },
    /// Show a running sidecar's listeners, routes, clusters or recent failures as a table.
    Status {
        view: inspect::View,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the requests passing through a running sidecar now, one line each.
    Tap {
        #[command(flatten)]
        filters: inspect::TapArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// A development mesh CA: make a CA, issue workload certificates (SPIFFE X.509-SVIDs).
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Install (or print, or remove) the nat rules that redirect the pod's TCP traffic to
    /// the intercepting listeners; run by an init container with NET_ADMIN.
    Iptables(proxy_core::intercept::iptables::Args),
    /// Wait until a sidecar's admin /ready answers 200, then exit 0 or run COMMAND (as an
    /// app's entrypoint prefix or in a postStart hook, for clusters without native sidecars).
    WaitReady {
        /// The sidecar's admin address.
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: String,
        /// Give up (exit 1) after this long.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// The command to run once ready; it replaces this process (exit status, signals).
        #[arg(last = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Add the sidecar (and, by annotation, the ambassador or the adapter) to the pods of
    /// Kubernetes manifests, offline; the result goes to stdout.
    Inject {
        /// The manifests (multi-document YAML); `-` reads stdin.
        #[arg(long, short = 'f')]
        filename: PathBuf,
        #[command(flatten)]
        options: proxy_core::inject::InjectOptions,
    },
    /// Serve the mutating admission webhook that injects pods as they are created (HTTPS).
    Injector(proxy_core::inject::server::InjectorArgs),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make a self-signed CA for a trust domain: DIR/ca.pem and DIR/ca-key.pem.
    Ca {
        /// Directory to write to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The trust domain, like `cluster.local`.
        #[arg(long)]
        trust_domain: String,
        /// How long the CA is valid.
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        lifetime: Duration,
        /// Replace an existing CA in DIR.
        #[arg(long)]
        force: bool,
    },
    /// Issue a workload certificate: DIR/cert.pem, DIR/key.pem and DIR/bundle.pem.
    Issue {
        /// The CA's directory (from `certs ca`).
        #[arg(long)]
        ca: PathBuf,
        /// The workload's SPIFFE ID, like spiffe://cluster.local/ns/shop/sa/cart.
        #[arg(long)]
        spiffe_id: String,
        /// How long the certificate is valid.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        lifetime: Duration,
        /// Start the validity this long ago (clock skew; longer than --lifetime makes an
        /// already expired certificate, for testing).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        backdate: Duration,
        /// Directory to write to (created if missing); the files are replaced atomically.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The running sidecar's admin address.
    #[arg(long, env = "SIDECAR_ADMIN_ADDRESS", default_value = "127.0.0.1:15000")]
    admin: String,
    /// `table` for people, `json` for scripts (what the admin API answered).
    #[arg(long, short = 'o', value_enum, default_value_t = inspect::Output::Table)]
    output: inspect::Output,
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
        Command::Iptables(args) => {
            match proxy_core::intercept::iptables::command(&args, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidecar iptables: {e} [{}]", e.reason());
                    ExitCode::FAILURE
                }
            }
        }
        Command::ImportEnvoy { file } => proxy_core::import::envoy::run_cli(&file),
        Command::Status { view, admin } => {
            match inspect::status(&admin.admin, view, admin.output) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sidecar status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tap { filters, admin } => match inspect::tap(&admin.admin, &filters, admin.output)
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sidecar tap: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Certs { command } => certs(command),
        Command::WaitReady {
            admin,
            timeout,
            command,
        } => proxy_core::wait_ready::command_line("sidecar", &admin, timeout, &command),
        Command::Inject { filename, options } => inject(&filename, &options),
        Command::Injector(args) => {
            logging::init(
                cli.run.log_format,
                std::env::var("SIDECAR_LOG").ok().as_deref(),
            );
            match proxy_core::inject::server::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidecar injector: {e} [{}]", e.reason());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => run(cli.run),
    }
}

fn certs(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Ca {
            out,
            trust_domain,
            lifetime,
            force,
        } => certs::create_ca(&out, &trust_domain, lifetime, force).map(|made| {
            println!("wrote {} and {}", made.cert.display(), made.key.display());
        }),
        CertsCommand::Issue {
            ca,
            spiffe_id,
            lifetime,
            backdate,
            out,
        } => certs::issue(&ca, &spiffe_id, lifetime, backdate, &out).map(|issued| {
            let f = &issued.files;
            println!(
                "wrote {}, {} and {}: {spiffe_id}, serial {}, valid until {}",
                f.cert.display(),
                f.key.display(),
                f.bundle.display(),
                issued.serial,
                issued.not_after
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidecar certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inject(file: &std::path::Path, options: &proxy_core::inject::InjectOptions) -> ExitCode {
    use std::io::Read as _;
    let read = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(file)
    };
    let input = match read {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sidecar inject: {}: cannot read: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match proxy_core::inject::manifest::inject_yaml(&input, options) {
        Ok((out, reports)) => {
            print!("{out}");
            for r in reports {
                eprintln!("{}: {}", r.object, r.outcome);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sidecar inject: {}: {e} [{}]", file.display(), e.reason());
            ExitCode::FAILURE
        }
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
