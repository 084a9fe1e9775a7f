//! `adapter tail` against a writer that appends continuously while the test rotates the
//! file (rename + create, then copytruncate) and restarts the adapter with SIGTERM and with
//! SIGKILL: every line arrives; none twice after SIGTERM; after SIGKILL duplicates only from
//! the last unacknowledged batch, with the same id as their first delivery.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use e2e_tests::adapter::{Adapter, Signal, records};
use e2e_tests::admin::Admin;
use e2e_tests::wait::eventually;

const LINES: u64 = 30_000;

/// Appends `seq=N pad=...` lines, rotating at fixed sequence numbers. The rotation happens
/// between two writes, like a logrotate run against a writer that reopens its file.
fn writer(dir: PathBuf, written: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let log = dir.join("app.log");
    let open = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("open log")
    };
    let mut file = open(&log);
    for seq in 0..LINES {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if seq == 8_000 {
            // rename + create
            fs::rename(&log, dir.join("app.log.1")).expect("rename");
            file = open(&log);
        }
        if seq == 18_000 {
            // copytruncate
            fs::copy(&log, dir.join("app.log.2")).expect("copy");
            file.set_len(0).expect("truncate");
        }
        writeln!(
            file,
            "seq={seq} pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        )
        .expect("write");
        written.store(seq + 1, Ordering::Release);
        if seq % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn start(dir: &Path, out: &Path) -> Adapter {
    let pattern = dir.join("app.log*");
    let state = dir.join("state");
    Adapter::start(
        &[
            "tail",
            "--format",
            "logfmt",
            "--state-dir",
            state.to_str().expect("utf8"),
            "--poll-interval",
            "20ms",
            "--rotate-wait",
            "1s",
            pattern.to_str().expect("utf8"),
        ],
        out,
    )
}

fn seqs(out: &Path) -> Vec<(u64, String)> {
    records(out)
        .into_iter()
        .filter_map(|r| {
            let seq = r["seq"].as_str()?.parse().ok()?;
            Some((seq, r["input"]["id"].as_str()?.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_restarts_lose_nothing_and_duplicate_only_the_last_batch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("logs");
    fs::create_dir(&dir).expect("mkdir");
    File::create(dir.join("app.log")).expect("create log");
    let out = tmp.path().join("out.jsonl");
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (dir, written, stop) = (dir.clone(), Arc::clone(&written), Arc::clone(&stop));
        std::thread::spawn(move || writer(dir, written, stop))
    };
    let at = |n: u64| {
        let written = Arc::clone(&written);
        async move {
            eventually(
                "the writer to get further",
                Duration::from_secs(60),
                async || {
                    if written.load(Ordering::Acquire) >= n {
                        Ok(())
                    } else {
                        Err("not yet")
                    }
                },
            )
            .await
        }
    };

    let mut adapter = start(&dir, &out);
    at(5_000).await;
    adapter.signal(Signal::SIGTERM);
    let status = adapter.exited(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    let after_term = seqs(&out);
    let mut seen = HashMap::new();
    for (seq, id) in &after_term {
        assert!(
            seen.insert(*seq, id.clone()).is_none(),
            "seq {seq} twice before any kill"
        );
    }
    drop(adapter);

    let mut adapter = start(&dir, &out);
    at(12_000).await;
    adapter.signal(Signal::SIGTERM);
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    drop(adapter);
    let clean = seqs(&out);
    let mut counts = HashMap::new();
    for (seq, _) in &clean {
        *counts.entry(*seq).or_insert(0u32) += 1;
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "a line arrived twice across SIGTERM restarts (rename rotation included)"
    );
    let before_kill = clean.len();

    let mut adapter = start(&dir, &out);
    at(22_000).await;
    adapter.signal(Signal::SIGKILL);
    adapter.exited(Duration::from_secs(10)).await;
    drop(adapter);

    let mut adapter = start(&dir, &out);
    at(LINES).await;
    w.join().expect("writer");
    eventually(
        "every line to arrive",
        Duration::from_secs(60),
        async || {
            let got: std::collections::HashSet<u64> =
                seqs(&out).into_iter().map(|(s, _)| s).collect();
            if got.len() as u64 == LINES {
                Ok(())
            } else {
                Err(format!("{} of {LINES}", got.len()))
            }
        },
    )
    .await;
    adapter.signal(Signal::SIGTERM);
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    stop.store(true, Ordering::Relaxed);

    let all = seqs(&out);
    let mut first_id: HashMap<u64, String> = HashMap::new();
    let mut dups = Vec::new();
    for (i, (seq, id)) in all.iter().enumerate() {
        match first_id.get(seq) {
            None => {
                first_id.insert(*seq, id.clone());
            }
            Some(first) => {
                assert!(i >= before_kill, "seq {seq} duplicated before the SIGKILL");
                assert_eq!(first, id, "a re-sent record keeps its id");
                dups.push(*seq);
            }
        }
    }
    assert_eq!(first_id.len() as u64, LINES, "every line written arrived");
    eprintln!("{} duplicates after the SIGKILL", dups.len());
    // One unacknowledged output batch is at most 1 MiB of records (about 7,000 of these).
    assert!(
        dups.len() <= 8_000,
        "{} duplicates after one SIGKILL",
        dups.len()
    );
    if let (Some(lo), Some(hi)) = (dups.iter().min(), dups.iter().max()) {
        assert!(hi - lo < 8_000, "duplicates {lo}..{hi} are not one batch");
    }
}

/// SIGKILL while the adapter is busy reading a large file to a file output: after the
/// restart every line is there, and the lines sent twice are one contiguous stretch (the
/// batch that was written but not yet checkpointed) carrying the same ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_busy_resends_at_most_the_unacknowledged_batch() {
    const BIG: u64 = 400_000;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("logs");
    fs::create_dir(&dir).expect("mkdir");
    {
        let mut f = std::io::BufWriter::new(File::create(dir.join("big.log")).expect("create"));
        for seq in 0..BIG {
            writeln!(f, "seq={seq} pad=yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy").expect("write");
        }
    }
    let records_file = tmp.path().join("records.jsonl");
    let run = |out: &Path| {
        Adapter::start(
            &[
                "tail",
                "--format",
                "logfmt",
                "--state-dir",
                tmp.path().join("state").to_str().expect("utf8"),
                "--output-file",
                records_file.to_str().expect("utf8"),
                dir.join("*.log").to_str().expect("utf8"),
            ],
            out,
        )
    };
    let out = tmp.path().join("stdout");
    let mut adapter = run(&out);
    eventually(
        "a good part of the file to be delivered",
        Duration::from_secs(30),
        async || {
            let n = fs::metadata(&records_file).map(|m| m.len()).unwrap_or(0);
            if n > 10 << 20 { Ok(()) } else { Err(n) }
        },
    )
    .await;
    adapter.signal(Signal::SIGKILL);
    adapter.exited(Duration::from_secs(10)).await;
    let before = seqs(&records_file).len();
    assert!((before as u64) < BIG, "killed before the end");
    drop(adapter);

    let mut adapter = run(&out);
    eventually("every line", Duration::from_secs(60), async || {
        let got: std::collections::HashSet<u64> =
            seqs(&records_file).into_iter().map(|(s, _)| s).collect();
        if got.len() as u64 == BIG {
            Ok(())
        } else {
            Err(got.len())
        }
    })
    .await;
    adapter.signal(Signal::SIGTERM);
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(0)
    );

    let all = seqs(&records_file);
    let mut first: HashMap<u64, String> = HashMap::new();
    let mut dups = Vec::new();
    for (seq, id) in all {
        match first.get(&seq) {
            None => {
                first.insert(seq, id);
            }
            Some(f) => {
                assert_eq!(*f, id, "seq {seq} re-sent with another id");
                dups.push(seq);
            }
        }
    }
    eprintln!("{} records re-sent after SIGKILL", dups.len());
    // One output group is at most 1 MiB plus one 256 KiB batch: under 15,000 of these lines.
    assert!(dups.len() < 15_000, "{} re-sent", dups.len());
    if let (Some(lo), Some(hi)) = (dups.first(), dups.last()) {
        assert_eq!(
            (hi - lo + 1) as usize,
            dups.len(),
            "the re-sent records are one stretch"
        );
    }
}

/// The `message` of every record in `out`, in order.
fn messages(out: &Path) -> Vec<String> {
    records(out)
        .iter()
        .filter_map(|r| r["message"].as_str().map(str::to_owned))
        .collect()
}

/// Once `out` holds `n` records (within 10 s), stop the adapter with SIGTERM and expect it
/// to exit 0 (within 10 s).
async fn stop_after(adapter: &mut Adapter, out: &Path, n: usize) {
    eventually(
        &format!("{n} record(s)"),
        Duration::from_secs(10),
        async || {
            let m = messages(out);
            if m.len() == n { Ok(()) } else { Err(m) }
        },
    )
    .await;
    adapter.signal(Signal::SIGTERM);
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(0)
    );
}

/// A stack trace still being written when the adapter stops is not cut: the checkpoint stays
/// at its first line, and after the restart it comes out whole, once.
#[tokio::test]
async fn a_trace_pending_at_sigterm_comes_out_whole_after_the_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("app.log");
    fs::write(&log, "INFO start\nERROR boom\n\tat first.frame\n").expect("write");
    let out = tmp.path().join("out.jsonl");
    let run = || {
        Adapter::start(
            &[
                "tail",
                "--format",
                "json",
                "--multiline",
                "java",
                "--multiline-flush",
                "60s",
                "--poll-interval",
                "20ms",
                "--state-dir",
                tmp.path().join("state").to_str().expect("utf8"),
                log.to_str().expect("utf8"),
            ],
            &out,
        )
    };
    let messages = || messages(&out);
    let mut adapter = run();
    stop_after(&mut adapter, &out, 1).await;
    assert_eq!(
        messages(),
        vec!["INFO start"],
        "the pending trace stays behind"
    );
    drop(adapter);

    let mut f = OpenOptions::new().append(true).open(&log).expect("open");
    writeln!(f, "\tat second.frame\nINFO next").expect("append");
    let mut adapter = run();
    stop_after(&mut adapter, &out, 2).await;
    assert_eq!(
        messages(),
        vec![
            "INFO start".to_owned(),
            "ERROR boom\n\tat first.frame\n\tat second.frame".to_owned()
        ]
    );
    let trace = &records(&out)[1];
    assert_eq!(
        trace["input"]["offset"], 11,
        "the id names the trace's first line"
    );
}

/// A Job's app ends a regular (pre-1.29) adapter container with `POST /shutdown`: the adapter
/// writes what it has read, checkpoints it and exits 0, as on SIGTERM.
#[tokio::test]
async fn post_shutdown_stops_a_tailing_adapter_after_its_lines_are_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("job.log");
    fs::write(&log, "first\nsecond\nthird\n").expect("write");
    let out = tmp.path().join("out.jsonl");
    let admin_addr = e2e_tests::ports::loopback().to_string();
    let state = tmp.path().join("state");
    let tail = |extra: &[&str]| {
        let mut args = vec![
            "tail",
            "--format",
            "json",
            "--poll-interval",
            "20ms",
            "--state-dir",
            state.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        args.push(log.to_str().expect("utf8"));
        Adapter::start(&args, &out)
    };
    let mut adapter = tail(&["--admin", &admin_addr]);
    let admin = Admin::new(admin_addr.parse().expect("address"));
    eventually("the adapter ready", Duration::from_secs(10), async || {
        admin.ready().await
    })
    .await;
    eventually("3 records", Duration::from_secs(10), async || {
        let m = messages(&out);
        if m.len() == 3 { Ok(()) } else { Err(m) }
    })
    .await;

    let wrong = admin.get("/shutdown").await;
    assert_eq!(wrong.status, 405, "{wrong:?}");
    assert!(adapter.try_exit().is_none(), "a GET stops nothing");
    let reply = admin.post("/shutdown").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        adapter.exited(Duration::from_secs(10)).await.code(),
        Some(0)
    );
    assert_eq!(messages(&out), ["first", "second", "third"]);

    // The checkpoint was kept: a restart sends nothing again.
    fs::remove_file(&out).expect("remove");
    let mut again = tail(&[]);
    let mut f = OpenOptions::new().append(true).open(&log).expect("open");
    writeln!(f, "fourth").expect("append");
    stop_after(&mut again, &out, 1).await;
    assert_eq!(messages(&out), ["fourth"]);
}
