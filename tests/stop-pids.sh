# shellcheck shell=bash
# stop-pids.sh: sourced by samples/demo.sh and tests/benches/proxy-bench.sh.
# stop_pids TENTHS PID...: SIGTERM each PID, wait up to TENTHS tenths of a second for all to
# exit (a sidecar drains first), then SIGKILL whatever is left.
stop_pids() {
  local tenths=$1 p alive
  shift
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 "$tenths"); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}
