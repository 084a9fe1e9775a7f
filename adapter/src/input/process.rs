//! `adapter run`: the legacy program as a child whose stdout and stderr become records.
//!
//! SIGTERM and SIGINT sent to the adapter are passed on to the child; the adapter keeps
//! reading until both pipes are closed, so every line the child wrote is delivered, then
//! exits with the child's exit code (128 + the signal number if a signal ended it).

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use thiserror::Error;

use crate::pipeline::{BatchSink, Stream};

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("cannot watch for signals: {0}")]
    Signals(io::Error),
    #[error("reading the child's {stream} failed: {source}")]
    Read {
        stream: &'static str,
        source: io::Error,
    },
    #[error("waiting for the child failed: {0}")]
    Wait(io::Error),
}

/// Runs `program args` to its end; `streams` makes the stdout and stderr streams (each with
/// its own parser state). Returns the exit code the adapter should exit with.
pub fn run(
    program: &OsString,
    args: &[OsString],
    mut streams: impl FnMut(&'static str) -> (Stream, BatchSink),
) -> Result<u8, RunError> {
    let child_pid = Arc::new(AtomicI32::new(0));
    forward_signals(Arc::clone(&child_pid))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    child_pid.store(
        i32::try_from(child.id()).unwrap_or(i32::MAX),
        Ordering::Release,
    );
    let mut readers = Vec::new();
    for (name, pipe) in [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
        ),
    ] {
        let Some(pipe) = pipe else { continue };
        let (stream, sink) = streams(name);
        readers.push((
            name,
            std::thread::Builder::new()
                .name(format!("adapter-{name}"))
                .spawn(move || super::drive(pipe, stream, sink))
                .map_err(|source| RunError::Read {
                    stream: name,
                    source,
                })?,
        ));
    }
    let mut failure = None;
    for (name, reader) in readers {
        match reader.join() {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => {
                failure = Some(RunError::Read {
                    stream: name,
                    source,
                })
            }
            Err(_) => {
                failure = Some(RunError::Read {
                    stream: name,
                    source: io::Error::other("the reader thread panicked"),
                })
            }
        }
    }
    let status = child.wait().map_err(RunError::Wait)?;
    child_pid.store(0, Ordering::Release);
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    })
}

/// Installs SIGTERM and SIGINT handlers that pass the signal on to the child (once it is
/// started); returns once the handlers are in place, so no signal can kill the adapter
/// before the child is there to receive it.
fn forward_signals(child_pid: Arc<AtomicI32>) -> Result<(), RunError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
    std::thread::Builder::new()
        .name("adapter-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            runtime.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (mut term, mut int) = match (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) {
                    (Ok(t), Ok(i)) => (t, i),
                    (Err(err), _) | (_, Err(err)) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    let sig = tokio::select! {
                        _ = term.recv() => Signal::SIGTERM,
                        _ = int.recv() => Signal::SIGINT,
                    };
                    let pid = child_pid.load(Ordering::Acquire);
                    if pid > 0 {
                        // The child may have exited meanwhile; then there is no one to tell.
                        let _ = kill(Pid::from_raw(pid), sig);
                    }
                }
            });
        })
        .map_err(RunError::Signals)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(RunError::Signals(err)),
        Err(_) => Err(RunError::Signals(io::Error::other(
            "the signal thread ended",
        ))),
    }
}
