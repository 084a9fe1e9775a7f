#!/usr/bin/env bash
# demo.sh - the README's first command: the three programs of the suite beside sample
# services, on loopback, without root.
#
#   bash samples/demo.sh                  runs until Ctrl-C
#   DEMO_SECONDS=5 bash samples/demo.sh   stops by itself 5 s after its checks (the CI run)
#   DEMO_BUILD=0 bash samples/demo.sh     runs the binaries already built (tests/run.sh: the
#                                         profile-guided ones deploy/pgo-build.sh made)
#   DEMO_BUILD=1 bash samples/demo.sh     always builds (cargo build --release --bins)
# Unset, DEMO_BUILD builds unless deploy/pgo-build.sh's binaries are in place and no source
# changed since they were built: a plain build would link slower ones over them.
#
# What runs (ports on 127.0.0.1; configs in samples/, logs in target/demo/logs/):
#   order 18081 ─► sidecar 18101 (admin 18100) ─mTLS─► sidecar 18201 (admin 18200)
#       ─► payment-a 18091 / payment-b 18092
#   adapter (admin 18300) wrapping legacy 18301: its Apache + Java log as JSON lines
#   api-caller 18501 ─► ambassador 18401 (admin 18400) ─TLS + OAuth2 token─► external API
#       stand-in 18443; token server (npm oauth2-mock-server, Node 20) 18600
#
# Its checks: an order goes through both sidecars (mTLS identity seen by payment); after the
# demo kills payment-b, every order still succeeds, with retries and an ejection in the
# payment sidecar's metrics; the adapter emits parsed JSON for access lines and one record
# for a whole stack trace; the API answers the caller only thanks to the token the
# ambassador injected, and the client secret appears in no log. Any failed check exits 1.
# Ctrl-C (or the end of DEMO_SECONDS) stops every process it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_SECONDS=${DEMO_SECONDS:-}
DEMO=target/demo
LOGS=$DEMO/logs
H=127.0.0.1

say() { printf '[demo] %s\n' "$*"; }
die() { say "FAILED: $*" >&2; exit 1; }

[[ -z $DEMO_SECONDS || $DEMO_SECONDS =~ ^[0-9]+$ ]] || die "DEMO_SECONDS must be a whole number of seconds"
command -v curl >/dev/null || die "curl is missing: apt-get install -y curl"
# .cargo/config.toml names the build target `host-tuple`, which cargo knows from 1.92 on.
rust_minor=$(rustc --version | sed -nE 's/^rustc 1\.([0-9]+)\..*/\1/p')
[ "${rust_minor:-0}" -ge 92 ] || die "Rust 1.92 or newer is needed, this is $(rustc --version): rustup update stable"
# The OAuth2 token server is the npm package oauth2-mock-server 8 (tests/oauth), a real
# token endpoint rather than one written for the demo.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  die "the demo's OAuth2 token server needs Node.js 20 or newer and npm: apt-get install -y nodejs npm (Debian 13), or Node 20 from https://nodejs.org/en/download (Debian 12 ships Node 18)"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] ||
  die "Node.js $(node --version) is too old for oauth2-mock-server 8: install Node 20 or newer (https://nodejs.org/en/download)"

# shellcheck source=tests/listening.sh
. tests/listening.sh
PORTS=(18081 18091 18092 18100 18101 18200 18201 18300 18301 18400 18401 18443 18501 18600)
for port in "${PORTS[@]}"; do
  listening "$H:$port" && die "$H:$port is already in use; stop what listens there (an earlier demo?) and retry"
done

# .cargo/config.toml builds for the named host tuple, so the binaries are under it; on PATH,
# the adapter's config can start `sample` by name.
BIN=target/$(rustc --print host-tuple)/release

# Whether the binaries are deploy/pgo-build.sh's (the checksums it recorded still match) and
# nothing they are built from is newer than that build.
pgo_current() {
  [ -f "$BIN/pgo-build.sha256" ] || return 1
  (cd "$BIN" && sha256sum --quiet --check pgo-build.sha256) >/dev/null 2>&1 || return 1
  [ -x "$BIN/demo-app" ] && [ -x "$BIN/sample" ] || return 1
  [ -z "$(find Cargo.toml Cargo.lock .cargo proxy-core ambassador adapter samples -newer "$BIN/pgo-build.sha256" \
    -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.yaml' -o -name Cargo.lock \) -print -quit 2>/dev/null)" ]
}
case "${DEMO_BUILD:-auto}" in
  1) build=1 ;;
  0) build=0 ;;
  auto)
    build=1
    if pgo_current; then
      build=0
      say "using the profile-guided binaries deploy/pgo-build.sh built (no source changed since; DEMO_BUILD=1 builds anyway)"
    fi
    ;;
  *) die "DEMO_BUILD must be 0, 1 or unset, not '$DEMO_BUILD'" ;;
esac
if [ "$build" = 1 ]; then
  say "building release binaries (cargo build --release --bins)"
  cargo build --release --bins
fi
export PATH="$PWD/$BIN:$PATH"
for b in sidecar ambassador adapter demo-app sample; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing: cargo build --release --bins (or run without DEMO_BUILD=0)"
done
if [ ! -d tests/oauth/node_modules/oauth2-mock-server ]; then
  say "installing the token server (npm ci --prefix tests/oauth)"
  npm ci --prefix tests/oauth --no-audit --no-fund
fi

declare -A PID=()
# shellcheck source=tests/stop-pids.sh
. tests/stop-pids.sh
stop_all() { [ "${#PID[@]}" = 0 ] || stop_pids 100 "${PID[@]}"; }
cleanup() {
  stop_all
  PID=()
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'say "stopping (SIGINT)"; exit 130' INT
trap 'exit 141' PIPE
trap 'say "stopping (SIGTERM)"; exit 143' TERM

rm -rf "$DEMO"
mkdir -p "$LOGS"

say "making certificates: a mesh CA and two workload identities (sidecar certs), the API's test CA (sample api-certs)"
{
  $BIN/sidecar certs ca --out $DEMO/mesh/ca --trust-domain demo.local
  for sa in order payment; do
    $BIN/sidecar certs issue --ca $DEMO/mesh/ca --spiffe-id "spiffe://demo.local/ns/shop/sa/$sa" --out "$DEMO/mesh/$sa"
  done
  $BIN/sample api-certs --out $DEMO/api-tls
} >"$LOGS/certs.log" 2>&1 || die "making certificates failed: $(cat "$LOGS/certs.log")"

# start NAME COMMAND...: run in the background, output to target/demo/logs/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PID[$name]=$!
}
# wait_ready NAME URL: poll until URL answers 200, up to 20 s, failing early if NAME exits.
wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 200); do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited before it was ready; its log, $LOGS/$name.log:
$(tail -n 20 "$LOGS/$name.log")"
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url")" = 200 ] && return 0
    sleep 0.1
  done
  die "$name not ready: $url did not answer 200 within 20 s (see $LOGS/$name.log)"
}
# wait_listening NAME ADDR: poll until ADDR accepts connections, up to 20 s.
wait_listening() {
  for _ in $(seq 1 200); do
    kill -0 "${PID[$1]}" 2>/dev/null || die "$1 exited before it was ready; see $LOGS/$1.log"
    listening "$2" && return 0
    sleep 0.1
  done
  die "$1 not listening on $2 within 20 s (see $LOGS/$1.log)"
}

# A fresh client secret each run: only the token server and the ambassador know it.
SECRET="demo-secret-$RANDOM$RANDOM$RANDOM"

start payment-a $BIN/sample payment --listen $H:18091 --replica payment-a
start payment-b $BIN/sample payment --listen $H:18092 --replica payment-b
start payment-sidecar $BIN/sidecar run --config samples/payment-sidecar.yaml
start order-sidecar $BIN/sidecar run --config samples/order-sidecar.yaml
start order $BIN/sample order --listen $H:18081 --sidecar http://$H:18101 --payment-host payment
start token-server env PORT=18600 EXPECT_CLIENT_SECRET="$SECRET" node tests/oauth/server.mjs
start external-api $BIN/sample external-api --listen $H:18443 --issuer http://localhost:18600
start ambassador env WEATHER_CLIENT_SECRET="$SECRET" $BIN/ambassador run --config samples/ambassador.yaml
start api-caller $BIN/sample api-caller --listen $H:18501 --ambassador http://$H:18401 --prefix /weather
start adapter $BIN/adapter run --config samples/adapter-legacy.yaml

wait_ready payment-a http://$H:18091/
wait_ready payment-b http://$H:18092/
wait_ready payment-sidecar http://$H:18200/ready
wait_ready order-sidecar http://$H:18100/ready
wait_ready order http://$H:18081/
wait_ready token-server http://$H:18600/.well-known/openid-configuration
wait_listening external-api $H:18443
wait_ready ambassador http://$H:18400/ready
wait_ready api-caller http://$H:18501/
wait_ready adapter http://$H:18300/ready
wait_listening adapter $H:18301
say "all ${#PID[@]} processes are ready (logs in $LOGS/)"

problems=()
fail() { say "check failed: $*" >&2; problems+=("$1"); }
# metric URL NAME LABEL-REGEX: the sum of the samples of NAME whose labels match.
metric() {
  curl -s -m 2 "$1" | awk -v name="$2" -v labels="$3" '
    index($0, name "{") == 1 && $0 ~ labels { s += $NF } END { print s + 0 }'
}
order() { curl -sS -m 10 -o "$DEMO/answer.json" -w '%{http_code}' -X POST "http://$H:18081/orders?item=$1"; }

echo
say "1. order -> sidecar -> mTLS -> sidecar -> payment"
say "   curl -X POST 'http://$H:18081/orders?item=book'"
replicas=""
for i in 1 2 3 4; do
  code=$(order "book-$i") || code=000
  answer=$(cat "$DEMO/answer.json" 2>/dev/null || true)
  [ "$i" = 1 ] && printf '    %s %s\n' "$code" "$answer"
  [ "$code" = 201 ] || { fail "order $i through the sidecars: status $code: $answer"; continue; }
  [[ $answer == *'"status":"paid"'* ]] || fail "order $i is not paid: $answer"
  [[ $answer == *'URI=spiffe://demo.local/ns/shop/sa/order'* ]] ||
    fail "payment did not see the order service's mTLS identity: $answer"
  [[ $answer =~ \"replica\":\"(payment-[ab])\" ]] && replicas+=" ${BASH_REMATCH[1]}"
done
[[ $replicas == *payment-a* && $replicas == *payment-b* ]] ||
  fail "the payment sidecar did not balance over both replicas (answered by:$replicas)"
say "   answered by:$replicas; payment saw the caller's SPIFFE ID (x-forwarded-client-cert)"

say "2. killing payment-b (pid ${PID[payment-b]}, SIGKILL), then 10 more orders"
# Braces: bash reports a job killed by a signal ("Killed") on the group's stderr.
{
  kill -KILL "${PID[payment-b]}"
  wait "${PID[payment-b]}" || true
} 2>/dev/null
unset 'PID[payment-b]'
failed=0
for i in $(seq 1 10); do
  code=$(order "after-kill-$i") || code=000
  [ "$code" = 201 ] || { failed=$((failed + 1)); say "   order $i: $code $(cat "$DEMO/answer.json" 2>/dev/null)"; }
done
retries=$(metric http://$H:18200/metrics sidecar_upstream_retries_total 'cluster="payment"')
ejections=$(metric http://$H:18200/metrics sidecar_outlier_ejections_total 'cluster="payment"')
say "   orders failed: $failed of 10; retries: $retries; ejections: $ejections (payment sidecar /metrics)"
[ "$failed" = 0 ] || fail "$failed of 10 orders failed after a replica was killed"
[ "${retries%.*}" -ge 1 ] || fail "no retry counted in sidecar_upstream_retries_total{cluster=\"payment\"}"
[ "${ejections%.*}" -ge 1 ] || fail "payment-b was not ejected (sidecar_outlier_ejections_total)"
curl -s -m 2 http://$H:18200/clusters | tr -d ' \n' | grep -o '"address":"127.0.0.1:18092"[^}]*' |
  sed 's/^/    \/clusters: /' || true
say "   restarting payment-b: the health check lets it back in once its ejection ends"
start payment-b $BIN/sample payment --listen $H:18092 --replica payment-b
wait_ready payment-b http://$H:18092/
say "   payment-b is back (pid ${PID[payment-b]})"

say "3. the legacy service's log through the adapter"
for path in / /catalog /cart /report /catalog; do
  curl -s -m 2 -o /dev/null -A 'demo-browser/1.0' "http://$H:18301$path" || true
done
access='"host":"127.0.0.1".*"method":"GET","path":"/catalog".*"status":200.*"agent":"demo-browser/1.0"'
trace='"level":"error".*ledger is locked.*Caused by: java.io.IOException'
for _ in $(seq 1 50); do
  grep -qE "$access" "$LOGS/adapter.log" && grep -qE "$trace" "$LOGS/adapter.log" && break
  sleep 0.1
done
grep -E "$access" "$LOGS/adapter.log" | head -n 1 | sed 's/^/    /' ||
  fail "no parsed Apache access record in the adapter's output ($LOGS/adapter.log)"
grep -E "$trace" "$LOGS/adapter.log" | head -n 1 | cut -c 1-300 | sed 's/^/    /; s/$/ .../' ||
  fail "no single record joining the ERROR line and its stack trace in $LOGS/adapter.log"
# The log is stdout; stderr has the service's own start-up line, kept raw with its reason.
unparsed=$(grep '"parse_error"' "$LOGS/adapter.log" | grep -c '"stream":"stdout"' || true)
[ "$unparsed" = 0 ] || fail "$unparsed records of the legacy log did not parse (see $LOGS/adapter.log)"

say "4. api-caller -> ambassador (OAuth2 token) -> HTTPS API"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --cacert $DEMO/api-tls/ca.pem "https://$H:18443/v1/forecast?city=oslo") || true
say "   the API without a token: $code"
[ "$code" = 401 ] || fail "the API stand-in answered $code without a token (want 401)"
code=$(curl -sS -m 15 -o "$DEMO/answer.json" -w '%{http_code}' "http://$H:18501/forecast?city=oslo") || code=000
answer=$(cat "$DEMO/answer.json" 2>/dev/null || true)
printf '    %s %s\n' "$code" "$answer"
[ "$code" = 200 ] || fail "the call through the ambassador: status $code: $answer"
# oauth2-mock-server names itself http://localhost:PORT in the tokens it issues.
[[ $answer == *'"token_seen":{'*'"iss":"http://localhost:18600"'* ]] ||
  fail "the API did not see a token from the token server: $answer"
injected=$(metric http://$H:18400/metrics ambassador_credentials_injected_total 'route="weather"')
fetches=$(metric http://$H:18400/metrics ambassador_token_fetches_total 'route="weather".*result="success"')
say "   tokens fetched: $fetches; credentials injected: $injected (ambassador /metrics)"
[ "${injected%.*}" -ge 1 ] || fail "ambassador_credentials_injected_total{route=\"weather\"} is 0"
[ "${fetches%.*}" -ge 1 ] || fail "no successful token fetch in ambassador_token_fetches_total"
if grep -rqF "$SECRET" "$LOGS"; then
  fail "the client secret appears in a log: $(grep -rlF "$SECRET" "$LOGS" | tr '\n' ' ')"
fi
if curl -s -m 2 http://$H:18400/config_dump | grep -qF "$SECRET"; then
  fail "the client secret appears in the ambassador's /config_dump"
fi

if [ "${#problems[@]}" -gt 0 ]; then
  die "${#problems[@]} check(s) failed (see above); the processes' logs are in $LOGS/"
fi
say "all checks passed"

# The same list as README.md's "Then try", with this run's PIDs.
echo
echo "  The demo is running. Try (from the repository root):"
# Each command, padded so that the comments line up whatever the paths and PIDs expand to.
try() { printf '    %-54s # %s\n' "$1" "$2"; }
echo "    export PATH=\"\$PWD/$BIN:\$PATH\""
try "curl -X POST 'http://$H:18081/orders?item=book'" "through both sidecars"
try "curl http://$H:18200/clusters" "replicas: healthy, counters, ejected_until while ejected"
try "curl -s http://$H:18200/metrics | grep -E 'retries|outlier|circuit'" "retries, ejections, breakers"
try "sidecar status clusters --admin $H:18200" "the same as a table"
try "kill ${PID[payment-a]}" "payment-a"
try "curl -X POST 'http://$H:18081/orders?item=book'" "payment-b (restarted by the demo) still answers"
try "kill ${PID[payment-b]}" "payment-b too: no replica left ..."
try "curl -X POST 'http://$H:18081/orders?item=book'" "... the order fails with the proxy's reason"
try "curl http://$H:18301/report" "the legacy service throws ..."
try "tail -n 3 $LOGS/adapter.log" "... and the trace is one JSON record"
echo "    adapter tail --multiline-start '^(\S+ \S+ \S+ \[\d{2}/\w{3}/\d{4}:|\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})' \\"
try "    $DEMO/legacy/access.log" "the same log, followed from its file (Ctrl-C ends it)"
try "curl 'http://$H:18501/forecast?city=bergen'" "a third-party API call, token added"
try "curl -s http://$H:18400/metrics | grep token" "token fetches, issue and expiry times, age"
try "curl http://$H:18400/config_dump" "the ambassador's config: the secret's source, not its value"
try "curl http://$H:18100/config_dump" "order's sidecar: the running config"
try "curl -s http://$H:18100/metrics" "order's sidecar: Prometheus metrics"
try "tail -f $LOGS/*.log" "every process's log (access logs are JSON lines)"
echo "  Admin APIs: order sidecar $H:18100, payment sidecar $H:18200, adapter $H:18300, ambassador $H:18400."
echo

if [ -z "$DEMO_SECONDS" ]; then
  say "press Ctrl-C to stop"
else
  say "stopping by itself in $DEMO_SECONDS s (DEMO_SECONDS)"
fi
deadline=$((SECONDS + ${DEMO_SECONDS:-0}))
while [ -z "$DEMO_SECONDS" ] || [ "$SECONDS" -lt "$deadline" ]; do
  for name in "${!PID[@]}"; do
    kill -0 "${PID[$name]}" 2>/dev/null && continue
    # A replica killed to watch the proxies react is part of the demo; anything else is not.
    if [[ $name == payment-? ]]; then
      say "$name exited; the demo keeps running"
      unset "PID[$name]"
      continue
    fi
    die "$name exited while the demo was running (see $LOGS/$name.log)"
  done
  sleep 0.5
done

# A timed run also checks the proxies' clean stop: SIGTERM drains, then exit status 0.
say "time is up: sending SIGTERM"
declare -A proxies=([order-sidecar]=${PID[order-sidecar]} [payment-sidecar]=${PID[payment-sidecar]} [ambassador]=${PID[ambassador]})
stop_all
PID=()
for name in "${!proxies[@]}"; do
  status=0
  wait "${proxies[$name]}" || status=$?
  [ "$status" = 0 ] || die "$name exited with status $status after SIGTERM (want 0 after its drain)"
done
say "the proxies drained and exited 0; demo done"
