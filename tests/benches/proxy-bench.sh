#!/usr/bin/env bash
# proxy-bench.sh - the sidecar against nginx, haproxy and no proxy at all, in one run, on loopback.
#
#   bash tests/benches/proxy-bench.sh                       the default targets (direct sidecar nginx haproxy mtls), 3 repeats, medians
#   TARGETS="direct nginx haproxy" REPEAT=1 bash tests/benches/proxy-bench.sh
#   OUT=bench.txt bash tests/benches/proxy-bench.sh         also save the table to bench.txt
#
# Targets (all on 127.0.0.1, each from a config generated in a temp dir, never a system service):
#   direct   the upstream itself: nginx, 1 worker, `return 200` with a small fixed body
#   sidecar  target/<host tuple>/release/sidecar (built first, as released, by deploy/pgo-build.sh
#            unless BUILD=0; SIDECAR_BIN overrides the path, e.g. to a plain `cargo build
#            --release` copy): runtime.worker_threads: 1, metrics on (they always are), no access log
#   nginx    nginx reverse proxy, 1 worker, upstream keep-alive pool
#   haproxy  haproxy reverse proxy, nbthread 1, http-reuse always
#   floor    the `hyper_floor` example of the tests crate (built first unless BUILD=0): a bare
#            hyper HTTP/1 proxy with a keep-alive pool on the sidecar's own stack and release
#            profile, no routing, headers, timeouts or metrics; what the sidecar costs above
#            it is its own per-request work (not in the default TARGETS)
#   mtls     one mTLS hop: sidecar A (plain HTTP listener, meshed cluster) -> mTLS -> sidecar B
#            (mTLS listener) -> the upstream; certificates from `sidecar certs`; upstream
#            connections long-lived (keep-alive pool), so handshakes are not per request.
#            cpu_us/req counts both sidecars; the line under the table gives it per sidecar
#            against nginx, and the handshake rate of B (openssl s_time -new, HS_DUR seconds)
#            per CPU-second of B
# Servers (upstream and proxies) are pinned to SERVER_CPU and wrk to LOADGEN_CPU with taskset,
# so on a 2-core machine a proxy and the upstream share one core and the load generator has
# the other. tests/benches/README.md says what each column of the table means.
#
# Each repeat measures every target in turn (so slow drift in background load spreads over all
# targets alike): a warm-up, `wrk -t1 -c$CONNS -d$DUR --latency` (throughput, latency, CPU),
# then `wrk -t1 -c1 -d$C1_DUR --latency` (serial requests: the latency one hop adds).
# The table shows the median of the REPEAT values of each figure.
#
# Every wait and every load run is bounded in time; every process the script started is
# stopped by PID (with its descendants) when it exits. Exit status 1 if any request failed
# (socket error or non-2xx answer), 2 if a tool is missing or the setup fails.
#
# Env (defaults): REPEAT=3 DUR=8 C1_DUR=4 WARM=1 CONNS=16
#   TARGETS="direct sidecar nginx haproxy"  BASE_PORT=18380 (upstream BASE, nginx +1, haproxy +2,
#   sidecar +3, sidecar admin +4, mtls A +5, mtls B +6, their admins +7 +8, amb +9, amb-cred +10, their admins +11 +12, floor +13)  HS_DUR=4  PIN=1 LOADGEN_CPU=0 SERVER_CPU=1  BUILD=1  SIDECAR_BIN
#   OUT=file (save the table)  KEEP=1 (keep the temp dir with configs, logs and wrk outputs)
#   CLOSE=1 (every request on a new connection: wrk sends `Connection: close`, so the figures
#   include the accept, the connection's set-up and its teardown in each proxy)
set -euo pipefail
cd "$(dirname "$0")/../.."

REPEAT=${REPEAT:-3}; DUR=${DUR:-8}; C1_DUR=${C1_DUR:-4}; WARM=${WARM:-1}; CONNS=${CONNS:-16}
PIN=${PIN:-1}; LOADGEN_CPU=${LOADGEN_CPU:-0}; SERVER_CPU=${SERVER_CPU:-1}
BASE_PORT=${BASE_PORT:-18380}
TARGETS=${TARGETS:-"direct sidecar nginx haproxy mtls"}
HS_DUR=${HS_DUR:-4}
BUILD=${BUILD:-1}
CLOSE=${CLOSE:-0}
# .cargo/config.toml builds for the named host tuple: the binaries are under it.
REL=target/$(rustc --print host-tuple)/release
SIDECAR_BIN=${SIDECAR_BIN:-$REL/sidecar}
AMBASSADOR_BIN=${AMBASSADOR_BIN:-$REL/ambassador}
FLOOR_BIN=${FLOOR_BIN:-$REL/examples/hyper_floor}
HOST=127.0.0.1
UP_PORT=$BASE_PORT

fail() { echo "proxy-bench: $*" >&2; exit 2; }

for n in REPEAT DUR C1_DUR WARM CONNS BASE_PORT HS_DUR; do
  [[ ${!n} =~ ^[0-9]+$ ]] || fail "$n must be a whole number, not '${!n}'"
done
for n in REPEAT DUR C1_DUR CONNS; do [ "${!n}" -ge 1 ] || fail "$n must be at least 1"; done
declare -A PORT=([direct]=$UP_PORT [nginx]=$((BASE_PORT + 1)) [haproxy]=$((BASE_PORT + 2))
                 [sidecar]=$((BASE_PORT + 3)) [mtls]=$((BASE_PORT + 5))
                 [amb]=$((BASE_PORT + 9)) [amb-cred]=$((BASE_PORT + 10)) [floor]=$((BASE_PORT + 13)))
SIDECAR_ADMIN=$((BASE_PORT + 4))
MTLS_B_PORT=$((BASE_PORT + 6)); MTLS_A_ADMIN=$((BASE_PORT + 7)); MTLS_B_ADMIN=$((BASE_PORT + 8))
declare -A AMB_ADMIN=([amb]=$((BASE_PORT + 11)) [amb-cred]=$((BASE_PORT + 12)))
for t in $TARGETS; do [ -n "${PORT[$t]:-}" ] || fail "unknown target '$t' (known: direct sidecar nginx haproxy mtls amb amb-cred floor)"; done
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
# Every column is read against the upstream alone: without it the table cannot be made.
has_target direct || fail "TARGETS must include direct (the ratios and c1_add_us are against it)"

tools="wrk nginx taskset timeout curl awk sort"
has_target haproxy && tools+=" haproxy"
has_target mtls && tools+=" openssl"
for t in $tools; do
  command -v "$t" >/dev/null ||
    fail "missing $t: apt-get install -y wrk nginx haproxy curl util-linux (or run bash tests/run.sh once)"
done

if has_target floor; then
  if [ "$BUILD" = 1 ]; then
    echo "# building: cargo build --release -p e2e-tests --example hyper_floor" >&2
    cargo build --release -p e2e-tests --example hyper_floor >&2
  fi
  [ -x "$FLOOR_BIN" ] || fail "$FLOOR_BIN not found: cargo build --release -p e2e-tests --example hyper_floor"
fi

if has_target sidecar || has_target mtls || has_target amb || has_target amb-cred; then
  if [ "$BUILD" = 1 ]; then
    echo "# building as released: deploy/pgo-build.sh (profile-guided; about twice a plain build)" >&2
    bash deploy/pgo-build.sh >&2
  fi
  if has_target sidecar; then
    [ -x "$SIDECAR_BIN" ] || fail "$SIDECAR_BIN not found: cargo build --release --bins"
  fi
  if has_target amb || has_target amb-cred; then
    [ -x "$AMBASSADOR_BIN" ] || fail "$AMBASSADOR_BIN not found: cargo build --release --bins"
  fi
fi

TMP=$(mktemp -d /tmp/proxy-bench.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody and read nothing here, but must traverse it
PIDS=()
LOADGEN_PID=""

tree_pids() { # PID and all its descendants
  local p=$1 c kids
  echo "$p"
  kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
  for c in $kids; do tree_pids "$c"; done
}
# shellcheck source=tests/stop-pids.sh
. tests/stop-pids.sh
# shellcheck source=tests/listening.sh
. tests/listening.sh
cleanup() { # TERM what we started (with descendants) by PID; KILL what is left after 5 s
  local p all=()
  for p in $LOADGEN_PID "${PIDS[@]}"; do mapfile -t -O "${#all[@]}" all < <(tree_pids "$p"); done
  if [ "${#all[@]}" -gt 0 ]; then stop_pids 50 "${all[@]}"; fi
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

start() { # start NAME CMD...: a server in the background on SERVER_CPU; sets PID[NAME]
  local name=$1 pin=()
  shift
  [ "$PIN" = 1 ] && pin=(taskset -c "$SERVER_CPU")
  # taskset and env exec the server, so $! is the server's own PID.
  "${pin[@]}" "$@" </dev/null >>"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
  PID[$name]=$!
}
loadgen() { # loadgen SECONDS WRK-ARGS...: wrk on LOADGEN_CPU, killed if it overruns by 10 s
  local secs=$1 pin=() close=() rc=0
  shift
  [ "$PIN" = 1 ] && pin=(taskset -c "$LOADGEN_CPU")
  [ "$CLOSE" = 1 ] && close=(-H "Connection: close")
  # In the background with `wait`, so Ctrl-C stops the run at once instead of after wrk ends
  # (`timeout` keeps wrk out of the terminal's process group, and bash runs a trap only
  # after its foreground command is done).
  timeout -k 2 $((secs + 10)) "${pin[@]}" wrk "${close[@]}" "$@" &
  LOADGEN_PID=$!
  wait "$LOADGEN_PID" || rc=$?
  LOADGEN_PID=""
  return "$rc"
}

BODY="hello from the upstream, a small fixed body"
# wait_serving NAME URL: up to 20 s for URL to answer 200 with the upstream's body
wait_serving() {
  local name=$1 url=$2 got
  for _ in $(seq 1 200); do
    kill -0 "${PID[$name]}" 2>/dev/null || { tail -20 "$TMP/$name.log" >&2; fail "$name exited during start-up"; }
    got=$(curl -sf -m 1 "$url" 2>/dev/null || true)
    [ "$got" = "$BODY" ] && return 0
    sleep 0.1
  done
  tail -20 "$TMP/$name.log" >&2
  fail "$name: $url did not answer 200 with the upstream's body within 20 s (last answer: '${got:0:200}')"
}

# A server of someone else's on one of our ports would be measured in place of ours.
ports="$UP_PORT"
for t in $TARGETS; do [ "$t" = direct ] || ports+=" ${PORT[$t]}"; done
has_target sidecar && ports+=" $SIDECAR_ADMIN"
has_target mtls && ports+=" $MTLS_B_PORT $MTLS_A_ADMIN $MTLS_B_ADMIN"
for t in amb amb-cred; do if has_target $t; then ports+=" ${AMB_ADMIN[$t]}"; fi; done
for port in $ports; do
  if listening "$HOST:$port"; then
    fail "port $port is in use; stop what listens there or pick other ports with BASE_PORT"
  fi
done

declare -A PID=()
mkdir -p "$TMP/direct" "$TMP/nginx"
# shellcheck source=tests/benches/nginx-conf.sh
. tests/benches/nginx-conf.sh
nginx_conf "$TMP/direct" "$UP_PORT" "default_type text/plain; return 200 \"$BODY\";" >"$TMP/direct/nginx.conf"
start direct nginx -p "$TMP/direct" -e "$TMP/direct/error.log" -c "$TMP/direct/nginx.conf" -g 'daemon off;'
wait_serving direct "http://$HOST:$UP_PORT/"

if has_target nginx; then
  nginx_conf "$TMP/nginx" "${PORT[nginx]}" \
    'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";' \
    "upstream up { server $HOST:$UP_PORT; keepalive 64; keepalive_requests 10000000; }" >"$TMP/nginx/nginx.conf"
  start nginx nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;'
  wait_serving nginx "http://$HOST:${PORT[nginx]}/"
fi

if has_target haproxy; then
  cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind $HOST:${PORT[haproxy]}
  default_backend be
backend be
  server up $HOST:$UP_PORT
EOF
  start haproxy haproxy -db -f "$TMP/haproxy.cfg"
  wait_serving haproxy "http://$HOST:${PORT[haproxy]}/"
fi

if has_target floor; then
  start floor "$FLOOR_BIN" "$HOST:${PORT[floor]}" "$HOST:$UP_PORT"
  wait_serving floor "http://$HOST:${PORT[floor]}/"
fi

if has_target sidecar; then
  # What a user would write for one upstream, with one worker thread to compare like for like.
  cat >"$TMP/sidecar.yaml" <<EOF
admin:
  address: $HOST:$SIDECAR_ADMIN
runtime:
  worker_threads: 1
  # Nothing routes here but the benchmark: stop at once when it is done.
  drain_grace: 0s
  drain_deadline: 2s
listeners:
  - name: bench
    address: $HOST:${PORT[sidecar]}
    routes:
      - name: all
        cluster: upstream
clusters:
  - name: upstream
    endpoints: ["$HOST:$UP_PORT"]
EOF
  start sidecar env SIDECAR_LOG=warn "$SIDECAR_BIN" run --config "$TMP/sidecar.yaml"
  wait_serving sidecar "http://$HOST:${PORT[sidecar]}/"
  [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$HOST:$SIDECAR_ADMIN/ready")" = 200 ] ||
    fail "sidecar: admin /ready is not 200 while the listener serves"
fi

if has_target mtls; then
  # Two sidecars, one mTLS hop between them, each with one worker thread.
  mesh=$TMP/mesh
  "$SIDECAR_BIN" certs ca --out "$mesh/ca" --trust-domain bench.local >/dev/null
  "$SIDECAR_BIN" certs issue --ca "$mesh/ca" --spiffe-id spiffe://bench.local/ns/bench/sa/client --out "$mesh/a" >/dev/null
  "$SIDECAR_BIN" certs issue --ca "$mesh/ca" --spiffe-id spiffe://bench.local/ns/bench/sa/server --out "$mesh/b" >/dev/null
  mesh_conf() { # mesh_conf ADMIN-PORT IDENTITY-DIR LISTENER-PORT LISTENER-EXTRA CLUSTER-ENDPOINT CLUSTER-EXTRA
    cat <<EOF
admin:
  address: $HOST:$1
runtime:
  worker_threads: 1
  drain_grace: 0s
  drain_deadline: 2s
identity:
  cert_file: $2/cert.pem
  key_file: $2/key.pem
  bundle_file: $2/bundle.pem
listeners:
  - name: bench
    address: $HOST:$3
$4
    routes:
      - name: all
        cluster: next
clusters:
  - name: next
    endpoints: ["$5"]
$6
EOF
  }
  mesh_conf "$MTLS_B_ADMIN" "$mesh/b" "$MTLS_B_PORT" '    mtls: { mode: strict, allow: ["spiffe://bench.local/ns/bench/*"] }' \
    "$HOST:$UP_PORT" "" >"$TMP/mtls-b.yaml"
  mesh_conf "$MTLS_A_ADMIN" "$mesh/a" "${PORT[mtls]}" "" "$HOST:$MTLS_B_PORT" \
    '    mtls: { identity: "spiffe://bench.local/ns/bench/sa/server" }' >"$TMP/mtls-a.yaml"
  start mtls_b env SIDECAR_LOG=warn "$SIDECAR_BIN" run --config "$TMP/mtls-b.yaml"
  start mtls env SIDECAR_LOG=warn "$SIDECAR_BIN" run --config "$TMP/mtls-a.yaml"
  wait_serving mtls "http://$HOST:${PORT[mtls]}/"
fi
# The ambassador in front of the same plain-HTTP upstream (allow_plain_http, to measure the
# proxy path, not TLS), once without a credential and once injecting a static header: the
# difference in CPU per request is what a credential costs.
for t in amb amb-cred; do
  has_target $t || continue
  cred=""
  [ "$t" = amb-cred ] && cred='    credential: {type: header, prefix: "Bearer ", secret: {value: bench-secret-value}}'
  cat >"$TMP/$t.yaml" <<EOF
admin: {address: "$HOST:${AMB_ADMIN[$t]}"}
runtime: {worker_threads: 1, drain_grace: 0s, drain_deadline: 2s}
listeners:
  - {name: bench, address: "$HOST:${PORT[$t]}"}
routes:
  - name: all
    match: {prefix: /}
    upstream: http://$HOST:$UP_PORT
    allow_plain_http: true
$cred
EOF
  start "$t" env AMBASSADOR_LOG=warn "$AMBASSADOR_BIN" run --config "$TMP/$t.yaml"
  wait_serving "$t" "http://$HOST:${PORT[$t]}/"
done

# ---------- readings from /proc ----------
sum_status_kib() { # sum_status_kib PID FIELD: a /proc/PID/status field summed over the process tree
  local s=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk -v f="$2:" '$1 == f { print $2 }' /proc/"$p"/status 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
cpu_ticks() { # cpu_ticks PID: "TOTAL USER", utime+stime and utime of every thread, summed over the process tree
  local s=0 u=0 p v w
  for p in $(tree_pids "$1"); do
    # Fields after "(comm)": state is 1st, utime 12th, stime 13th.
    read -r v w < <(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{ print $12 + $13, $12 }' || true)
    s=$((s + ${v:-0})); u=$((u + ${w:-0}))
  done
  echo "$s $u"
}
to_us() { # wrk's "87.00us" / "1.20ms" / "1.01s" -> whole microseconds
  awk -v x="$1" 'BEGIN { v = x + 0; m = 1
    if (x ~ /us$/) m = 1; else if (x ~ /ms$/) m = 1000; else if (x ~ /s$/) m = 1000000
    printf "%.0f", v * m }'
}
wrk_field() { # wrk_field FILE rps|p50|p99|reqs|errs
  case $2 in
    rps) awk '/^Requests\/sec:/ { print $2 }' "$1" ;;
    p50) to_us "$(awk '$1 == "50%" { print $2 }' "$1")" ;;
    p99) to_us "$(awk '$1 == "99%" { print $2 }' "$1")" ;;
    reqs) awk '/ requests in / { print $1 }' "$1" ;;
    errs) awk '/Socket errors/ { gsub(",", ""); e += $4 + $6 + $8 + $10 } /Non-2xx/ { e += $NF } END { print e + 0 }' "$1" ;;
  esac
}
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
fmt() { awk -v d="$1" -v x="$2" 'BEGIN { if (x == "-" || x == "") print "-"; else printf "%.*f", d, x }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# The processes of a target: the mtls target is two sidecars.
target_pids() { echo "${PID[$1]}"; if [ "$1" = mtls ]; then echo "${PID[mtls_b]}"; fi; }
target_cpu() { # "TOTAL USER" ticks of a target's processes
  local s=0 u=0 p v w
  for p in $(target_pids "$1"); do read -r v w < <(cpu_ticks "$p"); s=$((s + v)); u=$((u + w)); done
  echo "$s $u"
}
per_req() { awk -v d="$1" -v n="${2:-0}" -v hz="$CLK" 'BEGIN { if (n > 0) printf "%.2f", d / hz * 1e6 / n }'; } # per_req TICKS REQUESTS: µs of CPU per request
target_kib() { local s=0 p; for p in $(target_pids "$1"); do s=$((s + $(sum_status_kib "$p" "$2"))); done; echo "$s"; }
declare -A IDLE=()
for t in $TARGETS; do IDLE[$t]=$(target_kib "$t" VmRSS); done

CLK=$(getconf CLK_TCK)
per_target=$((WARM + DUR + C1_DUR))
echo "# proxy-bench: $(date -u +%FT%TZ) repeat=$REPEAT conns=$CONNS dur=${DUR}s c1=${C1_DUR}s warm=${WARM}s $([ "$PIN" = 1 ] && echo "pinned: wrk cpu $LOADGEN_CPU, servers cpu $SERVER_CPU" || echo "not pinned")"
versions="$(nginx -v 2>&1 | sed 's/.*: //') $({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print "wrk/" $2 }')"
has_target haproxy && versions+=" $(haproxy -v | awk 'NR == 1 { print "haproxy/" $3 }')"
# Whether the sidecar measured is what deploy/pgo-build.sh made (it records its checksums):
# a plain build linked over it since (the demo's, `cargo build --release`) is slower.
build_of() {
  local sum
  sum=$(sha256sum "$1" | cut -d' ' -f1)
  if grep -qs "^$sum " "$REL/pgo-build.sha256"; then
    echo "profile-guided by deploy/pgo-build.sh"
  else
    echo "NOT from deploy/pgo-build.sh: a plain build, or rebuilt since"
  fi
}
has_target sidecar && versions+=" $("$SIDECAR_BIN" --version 2>/dev/null | tr ' ' /) ($SIDECAR_BIN, $(build_of "$SIDECAR_BIN"))"
echo "# $versions"
echo "# load before the run: loadavg $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (other work on the machine widens p99)"
echo "# about $((REPEAT * $(wc -w <<<"$TARGETS") * per_target)) s of load" >&2

declare -A V=()
for r in $(seq 1 "$REPEAT"); do
  for t in $TARGETS; do
    url="http://$HOST:${PORT[$t]}/"
    echo "# repeat $r/$REPEAT: $t" >&2
    [ "$WARM" -gt 0 ] && loadgen "$WARM" -t1 -c"$CONNS" -d"${WARM}s" "$url" >/dev/null
    read -r c0 u0 < <(target_cpu "$t")
    loadgen "$DUR" -t1 -c"$CONNS" -d"${DUR}s" --latency "$url" >"$TMP/$t.$r.load.txt"
    read -r c1 u1 < <(target_cpu "$t")
    loadgen "$C1_DUR" -t1 -c1 -d"${C1_DUR}s" --latency "$url" >"$TMP/$t.$r.c1.txt"
    reqs=$(wrk_field "$TMP/$t.$r.load.txt" reqs)
    V[$t.rps]+=" $(wrk_field "$TMP/$t.$r.load.txt" rps)"
    V[$t.p50]+=" $(wrk_field "$TMP/$t.$r.load.txt" p50)"
    V[$t.p99]+=" $(wrk_field "$TMP/$t.$r.load.txt" p99)"
    V[$t.c1p50]+=" $(wrk_field "$TMP/$t.$r.c1.txt" p50)"
    V[$t.cpu]+=" $(per_req $((c1 - c0)) "$reqs")"
    V[$t.usr]+=" $(per_req $((u1 - u0)) "$reqs")"
    V[$t.errs]=$((${V[$t.errs]:-0} + $(wrk_field "$TMP/$t.$r.load.txt" errs) + $(wrk_field "$TMP/$t.$r.c1.txt" errs)))
    for p in $(target_pids "$t"); do
      kill -0 "$p" 2>/dev/null || { tail -20 "$TMP/$t.log" >&2; fail "$t died under load"; }
    done
  done
done

row() { printf '%-8s %9s %8s %7s %7s %7s %9s %9s %8s %8s %5s\n' "$@"; }
{
  row target req/s x_direct p50_us p99_us c1_p50 c1_add_us cpu_us/req peak_MiB idle_MiB errs
  direct_c1=$(median <<<"${V[direct.c1p50]:-}")
  direct_rps=$(median <<<"${V[direct.rps]:-}")
  for t in $TARGETS; do
    rps=$(median <<<"${V[$t.rps]}")
    c1p50=$(median <<<"${V[$t.c1p50]}")
    ratio=$(awk -v a="$rps" -v b="$direct_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    add=$(awk -v a="$c1p50" -v b="$direct_c1" 'BEGIN { if (b != "-") printf "%.0f", a - b; else print "-" }')
    row "$t" "$(fmt 0 "$rps")" "$ratio" "$(fmt 0 "$(median <<<"${V[$t.p50]}")")" \
      "$(fmt 0 "$(median <<<"${V[$t.p99]}")")" "$(fmt 0 "$c1p50")" "$add" \
      "$(fmt 1 "$(median <<<"${V[$t.cpu]}")")" "$(mib "$(target_kib "$t" VmHWM)")" \
      "$(mib "${IDLE[$t]}")" "${V[$t.errs]}"
  done
  # Where a proxy's CPU goes: its own code (user) or the kernel's TCP work for it.
  split=""
  for t in $TARGETS; do
    split+=" $t $(fmt 1 "$(median <<<"${V[$t.usr]}")")"
  done
  echo "# cpu_us/req in user space (the rest is the kernel's), medians:$split"
} >"$TMP/table.txt"
if has_target mtls; then
  # Handshakes: new mTLS connections to B, each a full handshake with a client certificate
  # and one small request (with TLS 1.3 the server checks the client's certificate after the
  # client has finished; without a request s_time would close before that), for HS_DUR
  # seconds; B's CPU time over them gives handshakes per CPU-second (per core).
  pin=(); [ "$PIN" = 1 ] && pin=(taskset -c "$LOADGEN_CPU")
  read -r h0 _ < <(cpu_ticks "${PID[mtls_b]}")
  timeout -k 2 $((HS_DUR + 10)) "${pin[@]}" openssl s_time -connect "$HOST:$MTLS_B_PORT" -new -time "$HS_DUR" -www / \
    -cert "$mesh/a/cert.pem" -key "$mesh/a/key.pem" >"$TMP/s_time.txt" 2>&1 || true
  read -r h1 _ < <(cpu_ticks "${PID[mtls_b]}")
  read -r hs_conns hs_secs < <(awk '/connections in .* real seconds/ { print $1, $4; exit }' "$TMP/s_time.txt") || true
  hs_line="$(awk -v n="${hs_conns:-0}" -v d=$((h1 - h0)) -v hz="$CLK" -v t="${hs_secs:-$HS_DUR}" 'BEGIN {
    if (n > 0 && d > 0) printf "%d handshakes in %d s (%.0f/s); sidecar B used %.2f CPU-s: %.0f handshakes/s per core, %.0f us CPU each", n, t, n / t, d / hz, n / (d / hz), d / hz * 1e6 / n
    else print "no handshake completed: see s_time.txt (KEEP=1)" }')"
  hop_line="$(awk -v m="$(median <<<"${V[mtls.cpu]}")" -v n="$(median <<<"${V[nginx.cpu]:-}")" 'BEGIN {
    printf "%.1f us CPU per request per sidecar (both: %.1f)", m / 2, m
    if (n != "-" && n > 0) printf " = %.2fx nginx proxying plain HTTP (%.1f us; target <= 1.5x)", m / 2 / n, n }')"
  {
    echo "# mtls: client -> sidecar A (plain -> mTLS) -> sidecar B (mTLS -> plain) -> upstream: $hop_line"
    echo "# mtls handshakes (openssl s_time -new -www / to sidecar B, client certificate, one request each): $hs_line"
  } >>"$TMP/table.txt"
fi
cat "$TMP/table.txt"
echo "# medians of $REPEAT; columns: tests/benches/README.md. req/s, p50, p99 at $CONNS connections; c1 = one connection, serial requests."
if [ "$CLOSE" = 1 ]; then echo "# CLOSE=1: a new connection for every request (wrk -H 'Connection: close')"; fi
if [ -n "${OUT:-}" ]; then cp "$TMP/table.txt" "$OUT"; echo "# table saved to $OUT" >&2; fi

errs=0
for t in $TARGETS; do errs=$((errs + ${V[$t.errs]})); done
if [ "$errs" -gt 0 ]; then
  echo "proxy-bench: $errs requests failed (errs column); the figures of those targets are not comparable" >&2
  exit 1
fi
