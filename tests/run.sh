#!/usr/bin/env bash
# run.sh - the README's second command: the whole test suite, on a fresh Debian machine with Rust.
#
#   bash tests/run.sh
#
# 1. installs the peers the end-to-end tests start (nginx, haproxy, wrk, h2load, promtool, Redis,
#    iptables, ip, tcpdump, curl; openssl and GNU time for the build's training run) with
#    apt-get when any of them is missing;
#    kubernetes-validate (PyPI, into target/venv) and checks for kubectl (kustomize);
# 2. cargo fmt --check, cargo clippy -D warnings, the release build as it ships
#    (deploy/pgo-build.sh: instrumented build, training run, optimised build; one clean,
#    non-incremental build: about 4 GB under target/);
# 3. the tests: cargo nextest when it is installed (plus the doc tests, which nextest does not
#    run), cargo test otherwise;
# 4. samples/demo.sh for 5 s as a smoke check of the README's first command.
# Any failure stops the run with a non-zero exit status and says which step failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian keeps nginx, tcpdump, ip and iptables in sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

T0=$SECONDS
CURRENT=""
step() {
  CURRENT=$1
  printf '\n==> %s  (%d s in)\n' "$1" $((SECONDS - T0))
}
on_exit() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    printf '\nrun.sh: FAILED at step "%s" (exit status %d) after %d s\n' "$CURRENT" "$rc" $((SECONDS - T0)) >&2
  fi
}
trap on_exit EXIT

# .cargo/config.toml names the build target `host-tuple`, which cargo knows from 1.92 on;
# an older one fails with a puzzling "could not find specification for target".
rust_minor=$(rustc --version | sed -nE 's/^rustc 1\.([0-9]+)\..*/\1/p')
[ "${rust_minor:-0}" -ge 92 ] || {
  echo "Rust 1.92 or newer is needed, this is $(rustc --version): rustup update stable" >&2
  exit 1
}

# command -> the Debian package that provides it
declare -A PKG=(
  [nginx]=nginx [haproxy]=haproxy [wrk]=wrk [h2load]=nghttp2-client [promtool]=prometheus [prometheus]=prometheus
  [redis-server]=redis-server [iptables]=iptables [ip]=iproute2 [tcpdump]=tcpdump [curl]=curl
  [python3]=python3 [openssl]=openssl [/usr/bin/time]=time
)
step "test peers: ${!PKG[*]}"
missing=()
for cmd in "${!PKG[@]}"; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "missing: ${missing[*]}; installing with apt-get"
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" apt-get install -y --no-install-recommends \
    nginx haproxy wrk nghttp2-client prometheus redis-server iptables iproute2 tcpdump curl python3 \
    openssl time
  for cmd in "${!PKG[@]}"; do
    command -v "$cmd" >/dev/null || { echo "still missing after apt-get: $cmd (${PKG[$cmd]})" >&2; exit 1; }
  done
else
  echo "all present"
fi

step "npm ci --prefix tests/oauth (the OAuth2 token server of the ambassador tests)"
command -v npm >/dev/null || { echo "npm is missing: install Node 20 and npm" >&2; exit 1; }
npm ci --prefix tests/oauth --no-audit --no-fund

step "kubernetes-validate in target/venv and kubectl (the deploy/ and injection tests)"
# The Kubernetes OpenAPI schemas, offline: a venv under target/ made once.
if [ ! -x target/venv/bin/kubernetes-validate ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    as_root=()
    [ "$(id -u)" = 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get install -y --no-install-recommends python3 python3-venv
  fi
  python3 -m venv target/venv || { echo "python3 -m venv failed: apt-get install python3-venv" >&2; exit 1; }
  target/venv/bin/pip install --quiet kubernetes-validate
fi
target/venv/bin/kubernetes-validate --version
# kustomize renders offline through kubectl (1.27 or newer: `labels` and `patches` in
# kustomization.yaml). Debian's own kubernetes-client is 1.20, too old: install kubectl from
# pkgs.k8s.io or as a static binary.
command -v kubectl >/dev/null || { echo "kubectl is missing: install kubectl 1.27 or newer (https://kubernetes.io/docs/tasks/tools/)" >&2; exit 1; }
kubectl version --client

# One clean build, as CI makes it: incremental caches would only add ~1.5 GB of disk that
# nothing reads again. A developer's own `cargo test` keeps them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The build needs about 4 GB under target/ (debug: line tables only; see Cargo.toml). Say so
# before starting rather than fail at a linker's "Bus error" when the disk runs out.
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((5 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kb / 1024)) MiB free on $(df -P . | awk 'NR == 2 { print $6 }'); the build needs about 4 GB" >&2
fi

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The tests run the binaries as they ship: built with a profile of their hot paths.
step "deploy/pgo-build.sh (cargo build --release --bins, profile-guided)"
bash deploy/pgo-build.sh

LOG=$(mktemp /tmp/run-tests.XXXXXX)
trap 'on_exit; rm -f "$LOG"' EXIT
if cargo nextest --version >/dev/null 2>&1; then
  step "cargo nextest run --workspace"
  # One retry: an end-to-end test that fails once and then passes is reported FLAKY (its
  # first failure printed in full, and counted below) instead of failing the run; a test
  # that fails twice fails it.
  cargo nextest run --workspace --no-fail-fast --retries 1 2>&1 | tee "$LOG"
  step "cargo test --workspace --doc"
  cargo test --workspace --doc --no-fail-fast 2>&1 | tee -a "$LOG"
else
  step "cargo test --workspace (cargo-nextest is not installed)"
  cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG"
fi
# Both runners' summaries: nextest "N tests run: N passed, ..." and libtest "N passed; N failed".
read -r passed failed < <(awk '
  /tests? run: [0-9]+ passed/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^passed/) p += $i
                                for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^failed/) f += $i }
  /^test result: / { for (i = 1; i <= NF; i++) { if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } }
  END { print p + 0, f + 0 }' "$LOG")
[ "$passed" -gt 0 ] || { echo "run.sh: the test runner ran no test" >&2; exit 1; }

step "samples/demo.sh (DEMO_SECONDS=5)"
DEMO_SECONDS=5 DEMO_BUILD=0 bash samples/demo.sh

CURRENT=finished
printf '\nrun.sh: every step passed in %d s\n' $((SECONDS - T0))
flaky=$(grep -cE '^ *FLAKY ' "$LOG" || true)
echo "tests: $passed passed, $failed failed, $flaky flaky (passed on retry)"
[ "$flaky" = 0 ] || grep -E '^ *FLAKY ' "$LOG"
