#!/usr/bin/env bash
# feature-cost.sh - what a sidecar feature costs per request, against the same sidecar without it.
#
#   bash tests/benches/feature-cost.sh                  every variant, 3 repeats, medians
#   VARIANTS="plain tracing" REPEAT=1 bash tests/benches/feature-cost.sh
#
# Variants (each one sidecar config, one worker thread, metrics on, access log off, in front of
# an nginx upstream that answers 200 with a small body; everything on 127.0.0.1):
#   plain        one route to the upstream
#   tracing      plus `tracing` at 1% sampling, spans posted to a Zipkin stand-in (nginx)
#   ratelimit    plus a local rate limit keyed by a header (never reached)
#   global       plus a global rate limit in a redis-server the script starts (never reached)
# Per variant and repeat:
#   instr/req    user-space instructions per request, counted by valgrind's callgrind: the
#                sidecar runs under callgrind for N1 and then N2 requests (h2load, 4
#                connections), and (I2 - I1) / (N2 - N1) removes start-up. Deterministic, so
#                it is meaningful on a busy machine where CPU time is not.
#   c1 p50       wrk -t1 -c1 for C1_DUR seconds: median latency of serial requests through the
#                sidecar (the upstream's own time included, same for every variant). Noisy
#                when the machine is busy; the difference between variants is what to read.
# The table shows medians of the repeats and each variant's ratio to `plain`.
#
# Every wait and load run is bounded in time; every process the script started is stopped by
# PID when it exits. Exit status 2 if a tool is missing or the setup fails.
#
# Env (defaults): REPEAT=3 C1_DUR=3 N1=2000 N2=6000 BASE_PORT=18480 BUILD=1
#   VARIANTS="plain tracing ratelimit global" SIDECAR_BIN=target/x86_64-unknown-linux-gnu/release/sidecar KEEP=1
set -euo pipefail
cd "$(dirname "$0")/../.."

REPEAT=${REPEAT:-3}; C1_DUR=${C1_DUR:-3}; N1=${N1:-2000}; N2=${N2:-6000}
BASE_PORT=${BASE_PORT:-18480}; BUILD=${BUILD:-1}
VARIANTS=${VARIANTS:-"plain tracing ratelimit global"}
# .cargo/config.toml builds for the named host tuple: the binaries are under it.
REL=target/$(rustc --print host-tuple)/release
SIDECAR_BIN=${SIDECAR_BIN:-$REL/sidecar}
HOST=127.0.0.1
UP=$BASE_PORT; LISTEN=$((BASE_PORT + 1)); ADMIN=$((BASE_PORT + 2)); REDIS=$((BASE_PORT + 3))

fail() { echo "feature-cost: $*" >&2; exit 2; }
for n in REPEAT C1_DUR N1 N2 BASE_PORT; do
  [[ ${!n} =~ ^[0-9]+$ ]] || fail "$n must be a whole number, not '${!n}'"
done
[ "$N2" -gt "$N1" ] || fail "N2 must be more than N1"
for v in $VARIANTS; do
  case $v in plain|tracing|ratelimit|global) ;; *) fail "unknown variant '$v'" ;; esac
done
for t in nginx valgrind h2load wrk curl redis-server timeout awk sort; do
  command -v "$t" >/dev/null ||
    fail "missing $t: apt-get install -y nginx valgrind nghttp2-client wrk curl redis-server"
done
if [ "$BUILD" = 1 ]; then
  echo "# building: cargo build --release --bins" >&2
  cargo build --release --bins >&2
fi
[ -x "$SIDECAR_BIN" ] || fail "$SIDECAR_BIN not found: cargo build --release --bins"
for port in $UP $LISTEN $ADMIN $REDIS; do
  if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
    fail "port $port is in use; pick other ports with BASE_PORT"
  fi
done

TMP=$(mktemp -d /tmp/feature-cost.XXXXXX)
chmod 755 "$TMP"
PIDS=()
# shellcheck source=tests/stop-pids.sh
. tests/stop-pids.sh
cleanup() {
  if [ "${#PIDS[@]}" -gt 0 ]; then stop_pids 50 "${PIDS[@]}"; fi
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BODY="hello from the upstream"
mkdir -p "$TMP/up"
cat >"$TMP/up/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/up/nginx.pid;
error_log $TMP/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/up/body; proxy_temp_path $TMP/up/proxy;
  fastcgi_temp_path $TMP/up/fcgi; uwsgi_temp_path $TMP/up/uwsgi; scgi_temp_path $TMP/up/scgi;
  keepalive_requests 10000000;
  server {
    listen $HOST:$UP backlog=4096;
    location /api/v2/spans { return 202; }
    location / { default_type text/plain; return 200 "$BODY"; }
  }
}
EOF
nginx -p "$TMP/up" -e "$TMP/up/error.log" -c "$TMP/up/nginx.conf" -g 'daemon off;' </dev/null >/dev/null 2>&1 &
PIDS+=("$!")
redis-server --bind $HOST --port $REDIS --save "" --appendonly no --dir "$TMP" </dev/null >/dev/null 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do
  [ "$(curl -sf -m 1 "http://$HOST:$UP/" 2>/dev/null || true)" = "$BODY" ] && break
  sleep 0.1
done
[ "$(curl -sf -m 1 "http://$HOST:$UP/" || true)" = "$BODY" ] || fail "the upstream did not start"

config() { # config VARIANT: the sidecar config of a variant
  local extra="" rules=""
  case $1 in
    tracing) extra="tracing: { sampling: 0.01, collector: { endpoint: \"http://$HOST:$UP/api/v2/spans\" } }" ;;
    ratelimit) rules=", rate_limits: [{ name: per-user, key: { header: x-user }, requests: 1000000000, per: 1s }]" ;;
    global)
      extra="rate_limit_service: { redis: \"redis://$HOST:$REDIS\", timeout: 100ms, key_prefix: bench }"
      rules=", rate_limits: [{ name: all, requests: 1000000000, per: 1h, global: true }]" ;;
  esac
  cat <<EOF
admin: { address: "$HOST:$ADMIN" }
runtime: { worker_threads: 1, drain_grace: 0s, drain_deadline: 2s }
$extra
listeners:
  - name: bench
    address: "$HOST:$LISTEN"
    routes: [{ name: all, cluster: upstream$rules }]
clusters:
  - { name: upstream, endpoints: ["$HOST:$UP"] }
EOF
}

# run_sidecar VARIANT [valgrind args...]: start it (under valgrind when asked), wait until it
# serves; sets SC_PID
run_sidecar() {
  local v=$1
  shift
  config "$v" >"$TMP/$v.yaml"
  SIDECAR_LOG=warn "$@" "$SIDECAR_BIN" run --config "$TMP/$v.yaml" </dev/null >>"$TMP/$v.log" 2>&1 &
  SC_PID=$!
  PIDS+=("$SC_PID")
  for _ in $(seq 1 300); do
    kill -0 "$SC_PID" 2>/dev/null || { tail -20 "$TMP/$v.log" >&2; fail "$v: the sidecar exited"; }
    if [ "$(curl -sf -m 1 -H 'x-user: u' "http://$HOST:$LISTEN/" 2>/dev/null || true)" = "$BODY" ]; then
      # A global rule serves before Redis is connected (fail open): wait for a counted answer.
      if [ "$v" != global ] ||
        curl -sf -m 1 -D - -o /dev/null "http://$HOST:$LISTEN/" | grep -qi '^ratelimit-limit'; then
        return 0
      fi
    fi
    sleep 0.1
  done
  tail -20 "$TMP/$v.log" >&2
  fail "$v: the sidecar did not serve within 30 s"
}
stop_sidecar() {
  curl -s -m 2 -X POST "http://$HOST:$ADMIN/shutdown" >/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$SC_PID" 2>/dev/null || break; sleep 0.1; done
  stop_pids 20 "$SC_PID"
  wait "$SC_PID" 2>/dev/null || true
}

instructions() { # instructions VARIANT N: user-space instructions for start-up plus N requests
  local v=$1 n=$2 out="$TMP/cg.$v.$n"
  run_sidecar "$v" valgrind --tool=callgrind --callgrind-out-file="$out.out"
  timeout 300 h2load -n "$n" -c 4 -t 1 --h1 -H 'x-user: u' "http://$HOST:$LISTEN/" >"$out.h2load" 2>&1 ||
    fail "$v: h2load failed (see $out.h2load)"
  grep -q "status codes: $n 2xx" "$out.h2load" || fail "$v: not every request answered 200 ($out.h2load)"
  stop_sidecar
  awk '/Collected/ { gsub(",", "", $4); print $4 }' "$TMP/$v.log" | tail -1
}

c1_p50() { # c1_p50 VARIANT: median latency in microseconds of serial requests
  local v=$1 out
  run_sidecar "$v"
  out=$(timeout $((C1_DUR + 15)) wrk -t1 -c1 -d"${C1_DUR}s" --latency -H 'x-user: u' "http://$HOST:$LISTEN/")
  stop_sidecar
  echo "$out" | awk '$1 == "50%" { x = $2; v = x + 0
    if (x ~ /us$/) m = 1; else if (x ~ /ms$/) m = 1000; else m = 1000000
    printf "%.0f\n", v * m }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else print a[int((NR + 1) / 2)] }'; }

declare -A INSTR=() P50=()
for r in $(seq 1 "$REPEAT"); do
  for v in $VARIANTS; do
    echo "# repeat $r: $v" >&2
    i1=$(instructions "$v" "$N1")
    i2=$(instructions "$v" "$N2")
    INSTR[$v]+="$(((i2 - i1) / (N2 - N1))) "
    P50[$v]+="$(c1_p50 "$v") "
  done
done

printf '%-10s %12s %8s %10s %8s\n' variant instr/req ratio "c1 p50 us" "+us"
base_i=$(echo "${INSTR[plain]:-}" | tr ' ' '\n' | grep . | median)
base_p=$(echo "${P50[plain]:-}" | tr ' ' '\n' | grep . | median)
for v in $VARIANTS; do
  i=$(echo "${INSTR[$v]}" | tr ' ' '\n' | grep . | median)
  p=$(echo "${P50[$v]}" | tr ' ' '\n' | grep . | median)
  ratio=-; added=-
  if [ "$base_i" != - ] && [ -n "$base_i" ]; then ratio=$(awk -v a="$i" -v b="$base_i" 'BEGIN { printf "%.3f", a / b }'); fi
  if [ "$base_p" != - ] && [ -n "$base_p" ]; then added=$((p - base_p)); fi
  printf '%-10s %12s %8s %10s %8s\n' "$v" "$i" "$ratio" "$p" "$added"
done
