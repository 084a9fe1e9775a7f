#!/usr/bin/env bash
# demo.sh - the README's first command: demo-app behind the sidecar, on loopback only.
#
#   bash samples/demo.sh                  runs until Ctrl-C
#   DEMO_SECONDS=5 bash samples/demo.sh   stops by itself after 5 s (the CI smoke check)
#
# Builds the release binaries, starts demo-app on 127.0.0.1:18080 and
# `sidecar run --config samples/sidecar-demo.yaml` (listener 127.0.0.1:18006, admin
# 127.0.0.1:18000), waits until both are ready, sends one request through the proxy and checks
# the answer, then prints what to try. The sidecar's access log (JSON lines) and its own log
# appear in this terminal. Every process the script started is stopped when it exits.
#
# Exit status: 0 when the check request passed (and, with DEMO_SECONDS, the sidecar then
# stopped cleanly on SIGTERM); non-zero on any failure; 130 on Ctrl-C after a passed check.
set -euo pipefail
cd "$(dirname "$0")/.."

# These match samples/sidecar-demo.yaml (the samples crate's tests hold the two together).
APP=127.0.0.1:18080
PROXY=127.0.0.1:18006
ADMIN=127.0.0.1:18000
CONFIG=samples/sidecar-demo.yaml
DEMO_SECONDS=${DEMO_SECONDS:-}

say() { printf '[demo] %s\n' "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

[[ -z $DEMO_SECONDS || $DEMO_SECONDS =~ ^[0-9]+$ ]] || die "DEMO_SECONDS must be a whole number of seconds"
command -v curl >/dev/null || die "curl is missing: apt-get install -y curl"

say "building release binaries (cargo build --release --bins)"
cargo build --release --bins

declare -A PID=()
# Stop what we started: SIGTERM, up to 10 s to exit (the sidecar drains), then SIGKILL.
# shellcheck source=tests/stop-pids.sh
. tests/stop-pids.sh
stop_all() { stop_pids 100 "${PID[@]}"; }
cleanup() {
  if [ "${#PID[@]}" -gt 0 ]; then stop_all; fi
  PID=()
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$APP" "$PROXY" "$ADMIN"; do
  if listening "$addr"; then
    die "$addr is already in use; stop what listens there (an earlier demo?) and retry"
  fi
done

target/release/demo-app --listen "$APP" &
PID[demo-app]=$!
target/release/sidecar run --config "$CONFIG" &
PID[sidecar]=$!

# wait_ready NAME URL: poll until URL answers 200, up to 20 s, failing early if NAME exits.
wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 200); do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited before it was ready (see its log above)"
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url")" = 200 ] && return 0
    sleep 0.1
  done
  die "$name not ready: $url did not answer 200 within 20 s"
}
wait_ready demo-app "http://$APP/"
wait_ready sidecar "http://$ADMIN/ready"
say "demo-app (pid ${PID[demo-app]}) and sidecar (pid ${PID[sidecar]}) are ready"

# The check request: through the proxy, with a request id that the app and the response echo.
say "check request: curl -i -H 'x-request-id: demo-check-1' http://$PROXY/hello"
answer=$(curl -sS -i -m 5 -H 'x-request-id: demo-check-1' "http://$PROXY/hello" | tr -d '\r') ||
  die "the request through the sidecar failed"
printf '%s\n' "$answer" | sed 's/^/    /'
problems=()
check() {  # check DESCRIPTION EXTENDED-REGEX: some line of the answer must match
  printf '%s\n' "$answer" | grep -qiE "$2" || problems+=("$1")
}
check "status 200" '^HTTP/[0-9.]+ 200'
check "response header x-served-by added by the route" '^x-served-by: sidecar-demo$'
check "x-request-id returned on the response" '^x-request-id: demo-check-1$'
check "demo-app received the request id" '"x_request_id":"demo-check-1"'
check "demo-app received x-forwarded-for from the proxy" '"x_forwarded_for":"127\.0\.0\.1"'
if [ "${#problems[@]}" -gt 0 ]; then
  for p in "${problems[@]}"; do say "check failed: $p" >&2; done
  die "the answer through the sidecar is not what the demo expects"
fi
say "check passed: proxied, route header added, request id kept, x-forwarded-for added"

try() { printf '    %-46s %s\n' "$1" "$2"; }
echo
echo "  The demo is running. Try:"
try "curl -i http://$PROXY/hello" "proxied to demo-app (a JSON echo of what it received)"
try "curl -i 'http://$PROXY/slow?ms=3000'" "past the route's 2s timeout: the proxy's 504 upstream_timeout"
try "curl http://$ADMIN/metrics" "Prometheus metrics"
try "curl http://$ADMIN/clusters" "endpoints and their counters"
try "curl http://$ADMIN/config_dump" "the running config as JSON"
echo "  Edit $CONFIG and save it (or kill -HUP ${PID[sidecar]}): the sidecar reloads it."
echo

if [ -z "$DEMO_SECONDS" ]; then
  say "press Ctrl-C to stop"
else
  say "stopping by itself in $DEMO_SECONDS s (DEMO_SECONDS)"
fi
deadline=$((SECONDS + ${DEMO_SECONDS:-0}))
while [ -z "$DEMO_SECONDS" ] || [ "$SECONDS" -lt "$deadline" ]; do
  for name in "${!PID[@]}"; do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited while the demo was running (see its log above)"
  done
  sleep 0.5
done

# A timed run also checks the contract's clean stop: SIGTERM drains, then exit status 0.
say "time is up: sending SIGTERM"
sidecar_pid=${PID[sidecar]}
stop_all
status=0
wait "$sidecar_pid" || status=$?
PID=()
[ "$status" = 0 ] || die "the sidecar exited with status $status after SIGTERM (want 0 after its drain)"
say "sidecar drained and exited 0; demo done"
