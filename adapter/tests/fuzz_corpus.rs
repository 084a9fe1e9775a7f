//! Runs the body of every fuzz target (`fuzz/fuzz_targets/*.rs`) over its committed seed
//! corpus (`fuzz/corpus/<target>/`), on the stable toolchain: the properties the fuzzers
//! check hold for the seeds, every target has seeds, and the targets and `TARGETS` list
//! agree. Fuzzing itself needs nightly: `cd adapter/fuzz && cargo +nightly fuzz run <target>`.

mod common;

use std::path::Path;

use common::fuzz_check::{TARGETS, check, check_pattern};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let seeds: Vec<Vec<u8>> = entries
        .map(|entry| std::fs::read(entry.expect("corpus entry").path()).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "{target}: no seeds in {}", dir.display());
    seeds
}

#[test]
fn every_parser_target_holds_on_its_seeds_and_every_other_targets_seeds() {
    let all: Vec<Vec<u8>> = TARGETS.iter().flat_map(|(name, _)| seeds(name)).collect();
    for (name, format) in TARGETS {
        for seed in seeds(name) {
            check(*format, &seed);
        }
        // A parser must also survive the other formats' lines: all of them as one stream.
        check(*format, &all.join(&b'\n'));
    }
}

#[test]
fn the_grok_pattern_target_holds_on_its_seeds() {
    for seed in seeds("grok_pattern") {
        check_pattern(&seed);
    }
}

#[test]
fn every_format_has_a_fuzz_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("fuzz_targets")
        .map(|e| {
            e.expect("entry")
                .path()
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_owned)
                .expect("name")
        })
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    expected.push("grok_pattern".to_owned());
    expected.sort();
    assert_eq!(on_disk, expected);
    assert_eq!(
        TARGETS.len(),
        adapter::parse::Format::canonical_names().len(),
        "a format without a fuzz target"
    );
}
