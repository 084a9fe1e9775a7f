#!/usr/bin/env bash
# per-request.sh - what one proxied request costs in calls, where CPU time alone cannot say why:
# system calls and context switches for the sidecar and for nginx proxying the same way, and,
# inside the sidecar, memcpy calls and bytes, allocations by size and clock reads.
#
#   bash tests/benches/per-request.sh                   as root: both targets, the release sidecar
#   TARGETS=sidecar DUR=2 bash tests/benches/per-request.sh
#
# Setup as proxy-bench.sh's: an nginx upstream answering 200 with a small body, the proxy in
# front of it (one worker each, servers on SERVER_CPU, wrk on LOADGEN_CPU, 16 kept-alive
# connections), all on 127.0.0.1. For each target, after a 1 s warm-up:
#   1. `perf stat` counts the proxy's system calls (syscall tracepoints) and context switches
#      while `wrk -c16` runs DUR seconds; each count is divided by the requests wrk made.
#   2. (sidecar) uprobes on its own static glibc (memcpy/memmove, malloc, free, clock_gettime)
#      are recorded one event each while wrk runs UPROBE_DUR seconds; a uprobe costs a trap,
#      so that run is slow (about 1,500 requests/s), but the counts per request do not depend
#      on speed. nginx links glibc dynamically and Debian strips its local symbols (the memcpy
#      variants), so these counts are the sidecar's only.
# Needs root (uprobes, tracepoints) and `perf` (Debian's linux-perf), wrk, nginx, curl. Every
# process the script starts is stopped by PID, and the probes it adds are removed, when it exits.
#
# Env (defaults): TARGETS="sidecar nginx" DUR=4 UPROBE_DUR=2 BASE_PORT=18580 LOADGEN_CPU=0
#   SERVER_CPU=1 SIDECAR_BIN=target/<host>/release/sidecar KEEP=1 (keep the temp dir)
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGETS=${TARGETS:-"sidecar nginx"}; DUR=${DUR:-4}; UPROBE_DUR=${UPROBE_DUR:-2}
BASE_PORT=${BASE_PORT:-18580}; LOADGEN_CPU=${LOADGEN_CPU:-0}; SERVER_CPU=${SERVER_CPU:-1}
REL=target/$(rustc --print host-tuple)/release
SIDECAR_BIN=${SIDECAR_BIN:-$REL/sidecar}
HOST=127.0.0.1
UP=$BASE_PORT
declare -A PORT=([sidecar]=$((BASE_PORT + 1)) [nginx]=$((BASE_PORT + 2)))
ADMIN=$((BASE_PORT + 3))
BODY="hello from the upstream"
SYSCALLS="read recvfrom write writev sendto epoll_wait epoll_ctl accept4 getsockopt setsockopt"

fail() { echo "per-request: $*" >&2; exit 2; }
for n in DUR UPROBE_DUR BASE_PORT LOADGEN_CPU SERVER_CPU; do
  [[ ${!n} =~ ^[0-9]+$ ]] || fail "$n must be a whole number, not '${!n}'"
done
for t in $TARGETS; do [ -n "${PORT[$t]:-}" ] || fail "unknown target '$t' (known: sidecar nginx)"; done
for t in perf wrk nginx curl taskset timeout awk; do
  command -v "$t" >/dev/null || fail "missing $t: apt-get install -y linux-perf wrk nginx curl util-linux"
done
[ "$(id -u)" = 0 ] || fail "uprobes and syscall tracepoints need root"
# (grep reads all of perf's output: with -q it could stop early, and pipefail would see perf's SIGPIPE)
perf list tracepoint 2>/dev/null | grep "syscalls:sys_enter_writev" >/dev/null ||
  fail "this kernel has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS), or tracefs is not mounted"
case " $TARGETS " in *" sidecar "*) [ -x "$SIDECAR_BIN" ] || fail "$SIDECAR_BIN not found: cargo build --release --bins" ;; esac
for port in $UP "${PORT[sidecar]}" "${PORT[nginx]}" $ADMIN; do
  if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
    fail "port $port is in use; pick other ports with BASE_PORT"
  fi
done

TMP=$(mktemp -d /tmp/per-request.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody and must traverse it
PIDS=()
PROBES=()
# shellcheck source=tests/stop-pids.sh
. tests/stop-pids.sh
cleanup() {
  if [ "${#PIDS[@]}" -gt 0 ]; then stop_pids 50 "${PIDS[@]}"; fi
  wait 2>/dev/null || true
  for p in "${PROBES[@]}"; do perf probe -q -d "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=tests/benches/nginx-conf.sh
. tests/benches/nginx-conf.sh
start() { # start NAME CMD...: on SERVER_CPU, in the background; sets LAST_PID
  local name=$1
  shift
  taskset -c "$SERVER_CPU" "$@" </dev/null >>"$TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
serving() { # serving PORT: wait until the port answers with the upstream's body
  for _ in $(seq 1 100); do
    [ "$(curl -sf -m 1 "http://$HOST:$1/" 2>/dev/null || true)" = "$BODY" ] && return 0
    sleep 0.1
  done
  fail "nothing serves on port $1 (logs in $TMP; KEEP=1 keeps them)"
}
load() { # load SECONDS PORT: wrk on LOADGEN_CPU, bounded; prints the requests it made
  timeout -k 2 $(($1 + 10)) taskset -c "$LOADGEN_CPU" wrk -t1 -c16 -d"$1"s "http://$HOST:$2/" |
    awk '/requests in/ { print $1 }'
}

mkdir -p "$TMP/up" "$TMP/ng"
nginx_conf "$TMP/up" "$UP" "default_type text/plain; return 200 \"$BODY\";" >"$TMP/up.conf"
start up nginx -p "$TMP/up" -e "$TMP/up/error.log" -c "$TMP/up.conf" -g 'daemon off;'
serving "$UP"

declare -A WORKER=()
if [[ " $TARGETS " == *" nginx "* ]]; then
  nginx_conf "$TMP/ng" "${PORT[nginx]}" \
    'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";' \
    "upstream up { server $HOST:$UP; keepalive 64; keepalive_requests 10000000; }" >"$TMP/ng.conf"
  start nginx nginx -p "$TMP/ng" -e "$TMP/ng/error.log" -c "$TMP/ng.conf" -g 'daemon off;'
  serving "${PORT[nginx]}"
  # The worker does the proxying; the master only waits.
  WORKER[nginx]=$(pgrep -P "$LAST_PID" -f "nginx: worker" | head -1)
  [ -n "${WORKER[nginx]}" ] || fail "nginx: no worker process"
fi
if [[ " $TARGETS " == *" sidecar "* ]]; then
  # Outside $TMP's top level: the sidecar watches its config's directory, and perf writes there.
  mkdir -p "$TMP/sc"
  cat >"$TMP/sc/sidecar.yaml" <<EOF
admin: { address: "$HOST:$ADMIN" }
runtime: { worker_threads: 1, drain_grace: 0s, drain_deadline: 2s }
listeners:
  - name: bench
    address: "$HOST:${PORT[sidecar]}"
    routes: [{ name: all, cluster: upstream }]
clusters:
  - { name: upstream, endpoints: ["$HOST:$UP"] }
EOF
  start sidecar env SIDECAR_LOG=warn "$SIDECAR_BIN" run --config "$TMP/sc/sidecar.yaml"
  WORKER[sidecar]=$LAST_PID
  serving "${PORT[sidecar]}"
fi

events=""
for s in $SYSCALLS; do events+="syscalls:sys_enter_$s,"; done
events+="context-switches"

# measured_load SECONDS PORT PERF-ARGS...: `perf PERF-ARGS` on a proxy while wrk puts SECONDS of
# load on PORT, then stopped as perf asks (SIGINT); prints the requests wrk made. perf starts
# with its events off and turns them on through its control fifo; the load starts once perf
# acknowledges, so no event of the load is missed.
measured_load() {
  local secs=$1 port=$2 perf_pid n ack
  shift 2
  rm -f "$TMP/ctl" "$TMP/ack"
  mkfifo "$TMP/ctl" "$TMP/ack"
  perf "$@" -D -1 --control "fifo:$TMP/ctl,$TMP/ack" 2>>"$TMP/perf.log" &
  perf_pid=$!
  echo enable >"$TMP/ctl"
  read -r -t 10 ack <"$TMP/ack" || fail "perf did not start (see $TMP/perf.log)"
  [ "$ack" = ack ] || fail "perf answered '$ack' to enable"
  n=$(load "$secs" "$port")
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  [ "${n:-0}" -gt 0 ] || fail "wrk made no requests on port $port"
  echo "$n"
}

per_req() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.2f", (n > 0 ? c / n : 0) }'; }

declare -A ROW=()
for t in $TARGETS; do
  pid=${WORKER[$t]}
  load 1 "${PORT[$t]}" >/dev/null
  n=$(measured_load "$DUR" "${PORT[$t]}" stat -x, -e "$events" -p "$pid" -o "$TMP/$t.stat")
  ROW[$t.n]=$n
  while IFS=, read -r count _ event _; do
    case $event in
      syscalls:sys_enter_*) ROW[$t.${event#syscalls:sys_enter_}]=$(per_req "$count" "$n") ;;
      context-switches) ROW[$t.cs]=$(per_req "$count" "$n") ;;
    esac
  done < <(grep -v '^#' "$TMP/$t.stat" | grep -v '^$')
done

UPROBE_LINES=()
if [[ " $TARGETS " == *" sidecar "* ]]; then
  # The probes: every memmove variant this glibc has (which one runs depends on the CPU; memcpy
  # is the same code), malloc with its size, free, clock_gettime.
  mem_syms=$(nm "$SIDECAR_BIN" | awk '$3 ~ /^__memmove_.*_unaligned(_erms)?$/ { print $3 }' | sort -u)
  [ -n "$mem_syms" ] || fail "no memmove symbols in $SIDECAR_BIN (stripped?)"
  # Named in a group of this run's own: a probe left by a killed run does not clash.
  group="perreq$BASE_PORT"
  uprobes=""
  add_probe() { # add_probe NAME SPEC: a uprobe on the sidecar binary
    perf probe -q -d "$group:$1" >/dev/null 2>&1 || true
    perf probe -q -x "$SIDECAR_BIN" -a "$group:$1=$2" >>"$TMP/probe.log" 2>&1 ||
      fail "perf probe $group:$1=$2: $(tail -2 "$TMP/probe.log")"
    PROBES+=("$group:$1")
    uprobes+="$group:$1,"
  }
  i=0
  for s in $mem_syms; do
    add_probe "mem$i" "$s len=%dx:u64"
    i=$((i + 1))
  done
  add_probe malloc "malloc size=%di:u64"
  add_probe free free
  add_probe clock __clock_gettime
  load 1 "${PORT[sidecar]}" >/dev/null
  n=$(measured_load "$UPROBE_DUR" "${PORT[sidecar]}" record -q -c 1 -e "${uprobes%,}" -p "${WORKER[sidecar]}" -o "$TMP/uprobes.data")
  # Only the runtime's thread (the process's first; with one worker it runs the proxy): the
  # config watcher's thread is left out.
  perf script -i "$TMP/uprobes.data" -F tid,event,trace 2>/dev/null |
    awk -v n="$n" -v pid="${WORKER[sidecar]}" -v grp="$group" '
      $1 != pid { next }
      { ev = $2; sub("^" grp ":", "", ev); sub(/:$/, "", ev) }
      ev ~ /^mem/ { split($NF, a, "="); mem++; bytes += a[2]; next }
      ev == "malloc" { split($NF, a, "="); mal++; size[a[2]]++; next }
      ev == "free" { fre++; next }
      ev == "clock" { clk++; next }
      END {
        printf "memcpy/memmove calls   %6.1f   (%.0f bytes)\n", mem / n, bytes / n
        printf "malloc calls           %6.1f   by size:", mal / n
        for (s in size) if (size[s] / n >= 0.05) printf " %s x%.1f", s, size[s] / n
        printf "\n"
        printf "free calls             %6.1f\n", fre / n
        printf "clock_gettime calls    %6.1f\n", clk / n
        printf "(%d requests under uprobes)\n", n
      }' >"$TMP/uprobes.txt"
  mapfile -t UPROBE_LINES <"$TMP/uprobes.txt"
fi

echo "# per-request: $(date -u +%FT%TZ) wrk -t1 -c16, ${DUR}s counted; servers cpu $SERVER_CPU, wrk cpu $LOADGEN_CPU"
printf '%-14s' "per request"
for t in $TARGETS; do printf '%10s' "$t"; done
printf '\n'
for s in $SYSCALLS cs; do
  label=$s
  [ "$s" = cs ] && label="ctx switches"
  printf '%-14s' "$label"
  for t in $TARGETS; do printf '%10s' "${ROW[$t.$s]:-0.00}"; done
  printf '\n'
done
printf '%-14s' "(requests)"
for t in $TARGETS; do printf '%10s' "${ROW[$t.n]}"; done
printf '\n'
if [ "${#UPROBE_LINES[@]}" -gt 0 ]; then
  echo "# inside the sidecar ($SIDECAR_BIN), per request:"
  printf '%s\n' "${UPROBE_LINES[@]}"
fi
