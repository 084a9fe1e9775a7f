//! Wiring one run of the adapter: an input, the parser (and joiner) per stream, the output
//! thread, the admin server and the signals, from [`Settings`] that the command line or a
//! config file produced.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::input::checkpoint::Checkpoints;
use crate::input::tail::{TailConfig, Tailer};
use crate::metrics::Stats;
use crate::output::{Committer, OutputConfig};
use crate::parse::multiline::{Joiner, Rule};
use crate::parse::{Parser, ParserConfig};
use crate::pipeline::{Annotation, BatchSink, Stream, channel};

/// Exit code for a configuration the program cannot start with (sysexits' EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a failed read or write (sysexits' EX_IOERR).
pub const EXIT_IO: u8 = 74;
/// Exit code of `adapter run` when the program cannot be started (a shell's 127).
pub const EXIT_CANNOT_RUN: u8 = 127;

#[derive(Debug, Clone)]
pub enum InputConfig {
    Stdin,
    Run {
        program: OsString,
        args: Vec<OsString>,
    },
    Tail {
        tail: TailConfig,
        state_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct MultilineConfig {
    pub rule: Rule,
    pub flush_timeout: Duration,
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub input: InputConfig,
    pub parser: ParserConfig,
    pub multiline: Option<MultilineConfig>,
    pub output: OutputConfig,
    pub admin: Option<SocketAddr>,
}

impl Settings {
    /// Checks what can be checked before starting: the parser configuration compiles.
    pub fn validate(&self) -> Result<(), String> {
        Parser::new(self.parser.clone()).map_err(|e| e.to_string())?;
        if let InputConfig::Tail { tail, .. } = &self.input {
            for p in &tail.patterns {
                crate::input::tail::Pattern::parse(p).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

fn make_stream(
    settings: &Settings,
    stats: &Arc<Stats>,
    input: &'static str,
    annotation: Annotation,
) -> Stream {
    // The configuration was validated before start; should it still fail, lines are not
    // dropped but passed through as `json` (raw with a parse_error when not JSON).
    let parser = Parser::new(settings.parser.clone()).unwrap_or_else(|_| fallback_parser());
    let joiner = settings.multiline.as_ref().map(|m| {
        Joiner::new(
            m.rule.clone(),
            settings.parser.max_line_bytes.saturating_add(1),
            m.flush_timeout,
        )
    });
    let format = settings.parser.format.name();
    Stream::new(parser, joiner, annotation, stats.stream(input, format))
}

fn fallback_parser() -> Parser {
    // `json` with default settings has no configuration to reject.
    match Parser::new(ParserConfig::new(crate::parse::Format::Json)) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("adapter: {err}");
            std::process::exit(i32::from(EXIT_CONFIG));
        }
    }
}

/// Runs to the end and returns the process exit code.
pub fn run(settings: Settings) -> u8 {
    if let Err(err) = settings.validate() {
        eprintln!("adapter: {err}");
        return EXIT_CONFIG;
    }
    let stats = Stats::new(settings.admin.is_some());
    // Tailing ends only when asked: by SIGTERM or SIGINT, or by `POST /shutdown` on the
    // admin API (a Job's app ends a regular adapter container that way).
    let stop = matches!(settings.input, InputConfig::Tail { .. })
        .then(|| Arc::new(AtomicBool::new(false)));
    if let Some(address) = settings.admin {
        match crate::admin::start(address, Arc::clone(&stats), stop.clone()) {
            Ok(local) => eprintln!("adapter: admin server on http://{local}"),
            Err(err) => {
                eprintln!("adapter: cannot serve the admin API on {address}: {err}");
                return EXIT_CONFIG;
            }
        }
    }
    let checkpoints = match &settings.input {
        InputConfig::Tail {
            state_dir: Some(dir),
            ..
        } => match Checkpoints::open(dir) {
            Ok(cp) => Some(cp),
            Err(err) => {
                eprintln!("adapter: {err}");
                return EXIT_CONFIG;
            }
        },
        _ => None,
    };
    let (tx, rx) = channel();
    let committer = Committer::new(checkpoints.clone(), Arc::clone(&stats));
    let output_config = settings.output.clone();
    let output_stats = Arc::clone(&stats);
    let output = match std::thread::Builder::new()
        .name("adapter-output".into())
        .spawn(move || crate::output::run(rx, output_config, committer, output_stats))
    {
        Ok(handle) => handle,
        Err(err) => {
            eprintln!("adapter: cannot start the output: {err}");
            return EXIT_IO;
        }
    };

    let input_code = match &settings.input {
        InputConfig::Stdin => {
            stats.set_ready();
            let stream = make_stream(&settings, &stats, "stdin", Annotation::None);
            let sink = BatchSink::new(tx, Arc::clone(&stats));
            match crate::input::drive(std::io::stdin(), stream, sink) {
                Ok(_) => 0,
                Err(err) => {
                    eprintln!("adapter: reading standard input: {err}");
                    EXIT_IO
                }
            }
        }
        InputConfig::Run { program, args } => {
            stats.set_ready();
            let result = crate::input::process::run(program, args, |name| {
                (
                    make_stream(&settings, &stats, name, Annotation::Stream(name)),
                    BatchSink::new(tx.clone(), Arc::clone(&stats)),
                )
            });
            drop(tx);
            match result {
                Ok(code) => code,
                // As a shell says when it cannot run a command.
                Err(err @ crate::input::process::RunError::Spawn { .. }) => {
                    eprintln!("adapter: {err}");
                    EXIT_CANNOT_RUN
                }
                Err(err) => {
                    eprintln!("adapter: {err}");
                    EXIT_IO
                }
            }
        }
        InputConfig::Tail { tail, .. } => {
            let stop = stop.unwrap_or_default();
            if let Err(err) = stop_on_signal(Arc::clone(&stop)) {
                eprintln!("adapter: cannot watch for signals: {err}");
                return EXIT_IO;
            }
            let factory_settings = settings.clone();
            let factory_stats = Arc::clone(&stats);
            let factory = Box::new(move |annotation| {
                make_stream(&factory_settings, &factory_stats, "file", annotation)
            });
            let mut tailer =
                match Tailer::new(tail.clone(), checkpoints, factory, Arc::clone(&stats)) {
                    Ok(t) => t,
                    Err(err) => {
                        eprintln!("adapter: {err}");
                        return EXIT_CONFIG;
                    }
                };
            let mut sink = BatchSink::new(tx, Arc::clone(&stats));
            tailer.run(&mut sink, &stop);
            drop(sink);
            0
        }
    };
    match output.join() {
        Ok(Ok(())) => input_code,
        Ok(Err(err)) if err.is_broken_pipe() => input_code,
        Ok(Err(err)) => {
            eprintln!("adapter: {err}");
            EXIT_IO
        }
        Err(_) => EXIT_IO,
    }
}

/// Sets `stop` on SIGTERM or SIGINT.
fn stop_on_signal(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("adapter-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            stop.store(true, Ordering::Release);
        })?;
    Ok(())
}
