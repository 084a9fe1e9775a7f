//! `adapter`: reads log lines and writes one JSON record per line. This file only parses
//! the command line and wires stdin to the parser and stdout; the work is in the library.

#![forbid(unsafe_code)]

use std::io;
use std::process::ExitCode;

use adapter::input;
use adapter::parse::key_value::KeyValueOptions;
use adapter::parse::timestamp::TimeZone;
use adapter::parse::{DEFAULT_MAX_LINE_BYTES, Format, Parser, ParserConfig};
use clap::{Parser as _, Subcommand, ValueEnum};

/// Exit code for a configuration the program cannot start with (sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for a failed read or write (sysexits' EX_IOERR).
const EXIT_IO: u8 = 74;

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

#[derive(Subcommand)]
enum Command {
    /// Parse lines from stdin and write JSON lines to stdout, until end of input.
    Parse {
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
    },
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
    let Command::Parse {
        format,
        timezone,
        max_line_bytes,
        pattern,
        key_value_delimiter,
        field_delimiter,
        whitespace,
        no_standalone_keys,
    } = cli.command;

    let mut config = ParserConfig::new(format);
    config.timezone = timezone;
    config.max_line_bytes = max_line_bytes;
    config.pattern = pattern;
    config.key_value = KeyValueOptions {
        key_value_delimiter,
        field_delimiter,
        lenient_whitespace: matches!(whitespace, Whitespace::Lenient),
        accept_standalone_key: !no_standalone_keys,
    };
    let mut parser = match Parser::new(config) {
        Ok(parser) => parser,
        Err(err) => {
            eprintln!("adapter: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let stdout = io::stdout().lock();
    let output = io::BufWriter::with_capacity(256 << 10, stdout);
    match input::pump(io::stdin().lock(), &mut parser, output) {
        Ok(_) => ExitCode::SUCCESS,
        // The reader went away (`adapter parse | head`): nothing left to deliver to.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("adapter: {err}");
            ExitCode::from(EXIT_IO)
        }
    }
}
