//! `adapter`: reads log lines and writes one JSON record per line. This file only parses
//! the command line into [`Settings`]; the work is in the library.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use adapter::app::{self, EXIT_CONFIG, InputConfig, MultilineConfig, Settings};
use adapter::input::tail::TailConfig;
use adapter::output::OutputConfig;
use adapter::output::http::{BodyShape, HttpConfig};
use adapter::parse::key_value::KeyValueOptions;
use adapter::parse::multiline::Rule;
use adapter::parse::timestamp::TimeZone;
use adapter::parse::{DEFAULT_MAX_LINE_BYTES, Format, ParserConfig};
use clap::{Args, Parser as _, Subcommand, ValueEnum};

#[derive(clap::Parser)]
#[command(
    name = "adapter",
    version,
    about = "Turns legacy log lines into JSON records, one per line, never dropping a line."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Whitespace {
    /// Ignore whitespace around the key-value delimiter.
    Lenient,
    /// Whitespace is part of keys and values.
    Strict,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shape {
    Ndjson,
    Elasticsearch,
    Loki,
}

#[derive(Args)]
struct ParserArgs {
    /// The line format (see the README for each format's fields).
    #[arg(long, short, default_value = "auto")]
    format: Format,
    /// Zone for timestamps written without an offset: UTC, +02:00, or an IANA name.
    #[arg(long, default_value = "UTC")]
    timezone: TimeZone,
    /// Longer lines are cut to this many bytes and flagged `truncated`.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Grok pattern for `--format grok`, e.g. '%{IP:client} %{NUMBER:bytes:int}'.
    #[arg(long)]
    pattern: Option<String>,
    /// key_value: the delimiter between a key and its value.
    #[arg(long, default_value = "=")]
    key_value_delimiter: String,
    /// key_value: the delimiter between pairs.
    #[arg(long, default_value = " ")]
    field_delimiter: String,
    /// key_value: how whitespace around the key-value delimiter is treated.
    #[arg(long, value_enum, default_value = "lenient")]
    whitespace: Whitespace,
    /// key_value: reject keys without a value instead of recording them as `true`.
    #[arg(long)]
    no_standalone_keys: bool,
    /// Join stack traces into one record: java, python or go.
    #[arg(long)]
    multiline: Option<String>,
    /// Custom joining: a line matching this regex starts a record.
    #[arg(long)]
    multiline_start: Option<String>,
    /// Custom joining: a line matching this regex continues the record before it.
    #[arg(long)]
    multiline_continue: Option<String>,
    /// A joined record is emitted after this long without a further line.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    multiline_flush: Duration,
}

#[derive(Args)]
struct OutputArgs {
    /// Append records to this file instead of standard output.
    #[arg(long, conflicts_with = "http")]
    output_file: Option<PathBuf>,
    /// POST records to this http:// URL.
    #[arg(long)]
    http: Option<String>,
    /// Body shape of the HTTP output.
    #[arg(long, value_enum, default_value = "ndjson", requires = "http")]
    http_body: Shape,
    /// Elasticsearch index for `--http-body elasticsearch`.
    #[arg(long, default_value = "logs", requires = "http")]
    http_index: String,
    /// Gzip the HTTP request bodies.
    #[arg(long, requires = "http")]
    http_gzip: bool,
    /// Most records in one HTTP request.
    #[arg(long, default_value_t = 1000, requires = "http")]
    http_max_records: usize,
    /// Most bytes of records in one HTTP request.
    #[arg(long, default_value_t = 1 << 20, requires = "http")]
    http_max_bytes: usize,
    /// Longest a record waits for its HTTP request to fill.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration, requires = "http")]
    http_max_wait: Duration,
    /// A request without an answer within this long is retried.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "http")]
    http_timeout: Duration,
    /// Longest pause between retries of a failing request (backoff doubles up to it).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "http")]
    http_max_backoff: Duration,
    /// Serve /ready and /metrics on this address.
    #[arg(long)]
    admin: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse lines from stdin and write JSON lines, until end of input.
    Parse {
        #[command(flatten)]
        parser: ParserArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run a program and turn its stdout and stderr into records; exits with its exit code.
    Run {
        /// Take everything from this YAML config file (a command after `--` replaces its input).
        #[arg(long, conflicts_with_all = ["format", "output_file", "http", "admin", "multiline"])]
        config: Option<PathBuf>,
        #[command(flatten)]
        parser: ParserArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// The program and its arguments.
        #[arg(last = true)]
        command: Vec<OsString>,
    },
    /// Follow files (paths or globs in the file name) like `tail -F`, with checkpoints.
    Tail {
        /// Keep checkpoints in this directory; without it every start reads files from the beginning.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// How often the paths are checked for new data, new files and rotation.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        poll_interval: Duration,
        /// How long a rotated or deleted file stays open for late writes.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        rotate_wait: Duration,
        #[command(flatten)]
        parser: ParserArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Check a YAML config file and exit: 0 when valid, 64 with the field path otherwise.
    CheckConfig { path: PathBuf },
}

fn parser_config(args: &ParserArgs) -> (ParserConfig, Result<Option<MultilineConfig>, String>) {
    let mut config = ParserConfig::new(args.format);
    config.timezone = args.timezone;
    config.max_line_bytes = args.max_line_bytes;
    config.pattern = args.pattern.clone();
    config.key_value = KeyValueOptions {
        key_value_delimiter: args.key_value_delimiter.clone(),
        field_delimiter: args.field_delimiter.clone(),
        lenient_whitespace: matches!(args.whitespace, Whitespace::Lenient),
        accept_standalone_key: !args.no_standalone_keys,
    };
    let rule = match (
        &args.multiline,
        &args.multiline_start,
        &args.multiline_continue,
    ) {
        (None, None, None) => Ok(None),
        (Some(preset), None, None) => Rule::preset(preset).map(Some).map_err(|e| e.to_string()),
        (None, s, c) => Rule::custom(s.as_deref(), c.as_deref())
            .map(Some)
            .map_err(|e| e.to_string()),
        (Some(_), _, _) => {
            Err("--multiline and --multiline-start/--multiline-continue exclude each other".into())
        }
    };
    let multiline = rule.map(|r| {
        r.map(|rule| MultilineConfig {
            rule,
            flush_timeout: args.multiline_flush,
        })
    });
    (config, multiline)
}

fn output_config(args: &OutputArgs) -> Result<OutputConfig, String> {
    if let Some(path) = &args.output_file {
        return Ok(OutputConfig::File(path.clone()));
    }
    let Some(url) = &args.http else {
        return Ok(OutputConfig::Stdout);
    };
    let uri = adapter::config::parse_http_url(url).map_err(|e| format!("--http: {e}"))?;
    let mut cfg = HttpConfig::new(uri);
    cfg.shape = match args.http_body {
        Shape::Ndjson => BodyShape::Ndjson,
        Shape::Elasticsearch => BodyShape::ElasticsearchBulk {
            index: args.http_index.clone(),
        },
        Shape::Loki => BodyShape::Loki {
            labels: vec![("job".into(), "adapter".into())],
        },
    };
    cfg.gzip = args.http_gzip;
    cfg.max_records = args.http_max_records.max(1);
    cfg.max_bytes = args.http_max_bytes.max(1);
    cfg.max_wait = args.http_max_wait;
    cfg.request_timeout = args.http_timeout;
    cfg.max_backoff = args.http_max_backoff;
    cfg.base_backoff = cfg.base_backoff.min(cfg.max_backoff);
    Ok(OutputConfig::Http(Box::new(cfg)))
}

fn settings(
    input: InputConfig,
    parser: &ParserArgs,
    output: &OutputArgs,
) -> Result<Settings, String> {
    let (parser_cfg, multiline) = parser_config(parser);
    Ok(Settings {
        input,
        parser: parser_cfg,
        multiline: multiline?,
        output: output_config(output)?,
        admin: output.admin,
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout and succeed; a bad option is a bad configuration.
            let code = if err.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let settings = match cli.command {
        Command::Parse { parser, output } => settings(InputConfig::Stdin, &parser, &output),
        Command::Run {
            config: Some(path),
            command,
            ..
        } => adapter::config::load(&path, Some(command)).map_err(|e| e.to_string()),
        Command::Run {
            config: None,
            parser,
            output,
            mut command,
        } => {
            if command.is_empty() {
                Err("run: name the program to run after `--` (or give --config)".into())
            } else {
                let program = command.remove(0);
                settings(
                    InputConfig::Run {
                        program,
                        args: command,
                    },
                    &parser,
                    &output,
                )
            }
        }
        Command::Tail {
            state_dir,
            poll_interval,
            rotate_wait,
            parser,
            output,
            paths,
        } => settings(
            InputConfig::Tail {
                tail: TailConfig {
                    patterns: paths,
                    poll_interval,
                    rotate_wait,
                },
                state_dir,
            },
            &parser,
            &output,
        ),
        Command::CheckConfig { path } => {
            return match adapter::config::load(&path, None) {
                Ok(_) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("adapter: {err}");
                    ExitCode::from(EXIT_CONFIG)
                }
            };
        }
    };
    match settings {
        Ok(settings) => ExitCode::from(app::run(settings)),
        Err(err) => {
            eprintln!("adapter: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
