#!/usr/bin/env bash
# The release build of the three programs, optimised with a profile of their own hot paths
# (profile-guided optimisation, PGO). What CI tests, what the benchmarks measure and what the
# images ship:
#
#   bash deploy/pgo-build.sh            # binaries in target/$(rustc --print host-tuple)/release/
#   bash deploy/pgo-build.sh --locked   # arguments go to both cargo builds
#
# 1. `cargo build --release` of the three programs with `-Cprofile-generate`: binaries that
#    count how often each branch and call runs;
# 2. training: those binaries carry the benchmarks' loads on loopback for about 40 s
#    (tests/benches/proxy-bench.sh: HTTP/1 requests on kept-alive and on new connections, an
#    mTLS hop between two sidecars, the ambassador injecting a credential;
#    tests/benches/adapter-bench.sh: every log format), and write their counts when they
#    exit;
# 3. `llvm-profdata merge`, with the tool of rustc's own LLVM major (rustup's llvm-tools,
#    installed here when missing; else Debian's llvm-N; or LLVM_PROFDATA=PATH);
# 4. `cargo build --release --bins` with `-Cprofile-use`: LLVM inlines, lays out and orders
#    branches by what ran (the sample services are built too, from no profile of their own).
#
# The sidecar's plain-route request costs 26% fewer instructions than the same code built
# without a profile (callgrind; README, Performance). Paths the training does not run are
# optimised for size, as cold code; they work the same (the whole test suite runs against
# these binaries) but are not faster.
#
# Both builds use the same profile, target and dependency features as a plain `cargo build
# --release --bins`: a profile matches only code compiled identically (the three programs
# alone unify features as the whole workspace does, so step 1 skips the sample services). The flags go through `--config`
# (added to .cargo/config.toml's), so the build is the usual static one. About twice the
# time of a plain release build (two fat-LTO builds). Needs what the benchmarks need: wrk,
# nginx, openssl, curl, taskset, python3, GNU time (`bash tests/run.sh` installs
# them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HOST=$(rustc --print host-tuple)
# llvm-profdata of rustc's own LLVM major version: the raw counts' format changes between
# majors. rustup's llvm-tools first; else Debian's llvm-N of the same major.
LLVM_MAJOR=$(rustc -vV | sed -nE 's/^LLVM version: ([0-9]+).*/\1/p')
find_profdata() {
  local p
  for p in "${LLVM_PROFDATA:-}" "$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata" \
    "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"; do
    [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}
if ! PROFDATA=$(find_profdata); then
  echo "pgo-build: installing rustup's llvm-tools for llvm-profdata" >&2
  if ! rustup component add llvm-tools; then
    echo "pgo-build: rustup could not install llvm-tools; trying Debian's llvm-$LLVM_MAJOR" >&2
    SUDO=()
    [ "$(id -u)" = 0 ] || SUDO=(sudo)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "llvm-$LLVM_MAJOR" ||
      { "${SUDO[@]}" apt-get update && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "llvm-$LLVM_MAJOR"; }
  fi
  PROFDATA=$(find_profdata) || {
    echo "pgo-build: no llvm-profdata for LLVM $LLVM_MAJOR (rustup component add llvm-tools, or apt-get install llvm-$LLVM_MAJOR, or set LLVM_PROFDATA)" >&2
    exit 1
  }
fi
echo "# pgo-build: llvm-profdata: $PROFDATA" >&2

PGO_DIR="$PWD/target/pgo"
rm -rf "$PGO_DIR"
mkdir -p "$PGO_DIR/raw"
with_flags() { # with_flags RUSTFLAG CARGO-ARGS...: cargo with one more rustflag for every target
  local flag=$1
  shift
  cargo "$@" --config "target.'cfg(all())'.rustflags = ['$flag']"
}

echo "# pgo-build: 1/4 instrumented build" >&2
with_flags "-Cprofile-generate=$PGO_DIR/raw" build --release --bin sidecar --bin ambassador --bin adapter "$@"

echo "# pgo-build: 2/4 training on the benchmark loads" >&2
# The benchmark's 14 loopback ports (BASE_PORT to BASE_PORT+13): unless BASE_PORT is set, the
# first such block with nothing listening, so a bench or demo left running does not stop
# the build.
# shellcheck source=tests/listening.sh
. tests/listening.sh
if [ -z "${BASE_PORT:-}" ]; then
  for base in 18380 19380 20380 21380 22380 23380; do
    free=1
    for i in $(seq 0 13); do
      if listening "127.0.0.1:$((base + i))"; then
        free=0
        break
      fi
    done
    if [ "$free" = 1 ]; then
      export BASE_PORT=$base
      break
    fi
  done
fi
# Short runs: the profile needs the hot paths' shape, not precise timings. The tables the
# benchmarks print here describe instrumented binaries and mean nothing.
# (`direct`, the upstream alone, is the benchmark's reference and always runs.)
train=(env BUILD=0 REPEAT=1 WARM=1 DUR=4 C1_DUR=1 HS_DUR=1)
"${train[@]}" TARGETS="direct sidecar mtls amb-cred" bash tests/benches/proxy-bench.sh >/dev/null
"${train[@]}" TARGETS="direct sidecar" CLOSE=1 DUR=2 bash tests/benches/proxy-bench.sh >/dev/null
BUILD=0 REPEAT=1 SIZE_MB=16 bash tests/benches/adapter-bench.sh >/dev/null
# One file per program: runs of one binary add their counts to its file (`%m` in the name).
shopt -s nullglob
raw=("$PGO_DIR"/raw/*.profraw)
[ "${#raw[@]}" -ge 3 ] || {
  echo "pgo-build: only ${#raw[@]} of 3 profiles written under $PGO_DIR/raw (a program did not exit cleanly?)" >&2
  exit 1
}

echo "# pgo-build: 3/4 merging ${#raw[@]} profiles" >&2
"$PROFDATA" merge -o "$PGO_DIR/merged.profdata" "${raw[@]}"

echo "# pgo-build: 4/4 optimised build" >&2
with_flags "-Cprofile-use=$PGO_DIR/merged.profdata" build --release --bins "$@"
# What this build made, so that a benchmark can say whether it measures these binaries or
# plain ones linked over them since (the demo's build, `cargo build --release`).
(cd "target/$HOST/release" && sha256sum sidecar ambassador adapter >pgo-build.sha256)
echo "# pgo-build: done: target/$HOST/release/{sidecar,ambassador,adapter}" >&2
