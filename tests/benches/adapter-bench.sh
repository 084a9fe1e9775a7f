#!/usr/bin/env bash
# End-to-end throughput of `adapter parse`: a file of realistic log lines in, JSON lines to
# /dev/null, the adapter pinned to one core. Prints, per format, the median over REPEAT runs
# of MiB/s and lines/s (wall clock, and per CPU second, which a noisy shared machine disturbs
# less), and the peak RSS; then the peak RSS for one 10 MiB line.
#
#   bash tests/benches/adapter-bench.sh                     # every format, 256 MiB each, 3 runs
#   FORMATS="apache_combined rfc5424" SIZE_MB=512 REPEAT=5 bash tests/benches/adapter-bench.sh
#   BUILD=0 OUT=bench.txt bash tests/benches/adapter-bench.sh
#
# Inputs are generated (deterministically) into WORK (default: a temp dir removed on exit).
# Needs python3, taskset and GNU time (/usr/bin/time). Vector and Fluent Bit are not packaged in
# Debian 12, so they are not run; their published figures are quoted in adapter/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FORMATS="${FORMATS:-apache_combined nginx_combined rfc5424 rfc3164 klog logfmt json}"
SIZE_MB="${SIZE_MB:-256}"
REPEAT="${REPEAT:-3}"
CPU="${CPU:-0}"
BUILD="${BUILD:-1}"
OUT="${OUT:-}"
# .cargo/config.toml builds for the named host tuple: the binaries are under it.
REL=target/$(rustc --print host-tuple)/release
BIN="${ADAPTER_BIN:-$ROOT/$REL/adapter}"

for tool in python3 taskset /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "adapter-bench: $tool is required" >&2; exit 1; }
done

if [[ -z "${WORK:-}" ]]; then
  WORK="$(mktemp -d /tmp/adapter-bench.XXXXXX)"
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"

if [[ "$BUILD" == 1 ]]; then
  # As released: profile-guided (deploy/pgo-build.sh builds and trains all three programs).
  (cd "$ROOT" && bash deploy/pgo-build.sh)
fi
[[ -x "$BIN" ]] || { echo "adapter-bench: $BIN missing (run with BUILD=1)" >&2; exit 1; }

# One input file per format: a pool of distinct, realistic lines (varied clients, paths,
# user agents, sizes, structured data, quoting) repeated up to SIZE_MB.
generate() {
  python3 - "$1" "$2" "$3" <<'PY'
import random, sys
fmt, path, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(42)
months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
agents = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "curl/8.4.0", "Googlebot/2.1 (+http://www.google.com/bot.html)", "python-requests/2.31.0",
]
paths = ["/", "/index.html", "/api/v1/users/%d", "/static/app.%d.js", "/search?q=term%d&page=2",
         "/images/logo.png", "/api/v2/orders/%d/items", "/favicon.ico"]
refs = ["-", "https://www.google.com/search?q=adapter", "https://example.com/page/%d", "-"]
words = ("reverse mapping checking getaddrinfo failed POSSIBLE BREAK-IN ATTEMPT session opened for user "
         "root by uid connection closed invalid user admin from port ssh2 authentication failure").split()
def ip():
    if rnd.random() < 0.15:
        return "2001:db8::%x:%x" % (rnd.randrange(65536), rnd.randrange(65536))
    return "%d.%d.%d.%d" % (rnd.randrange(1, 224), rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255))
def clf_time():
    return "%02d/%s/2024:%02d:%02d:%02d +0000" % (rnd.randrange(1, 29), rnd.choice(months), rnd.randrange(24), rnd.randrange(60), rnd.randrange(60))
def iso():
    return "2024-%02d-%02dT%02d:%02d:%02d.%06dZ" % (rnd.randrange(1, 13), rnd.randrange(1, 29), rnd.randrange(24), rnd.randrange(60), rnd.randrange(60), rnd.randrange(10**6))
def path_():
    p = rnd.choice(paths)
    return p % rnd.randrange(100000) if "%d" in p else p
def sentence(n):
    return " ".join(rnd.choice(words) for _ in range(n))
def access():
    ref = rnd.choice(refs)
    ref = ref % rnd.randrange(1000) if "%d" in ref else ref
    size = "-" if rnd.random() < 0.05 else str(rnd.randrange(100, 200000))
    user = "-" if rnd.random() < 0.9 else "alice"
    return '%s - %s [%s] "%s %s HTTP/1.1" %d %s "%s" "%s"' % (ip(), user, clf_time(), rnd.choice(["GET", "GET", "POST", "HEAD", "PUT"]), path_(), rnd.choice([200, 200, 200, 304, 404, 500]), size, ref, rnd.choice(agents))
def line():
    if fmt in ("apache_combined", "nginx_combined"):
        return access()
    if fmt == "rfc5424":
        sd = "-" if rnd.random() < 0.66 else '[origin@32473 ip="%s" software="app" swVersion="1.%d"][meta sequenceId="%d"]' % (ip(), rnd.randrange(9), rnd.randrange(10**6))
        return "<%d>1 %s host%d.example.com %s %d ID%d %s %s" % (rnd.randrange(192), iso(), rnd.randrange(50), rnd.choice(["sshd", "cron", "app", "kernel"]), rnd.randrange(1, 65536), rnd.randrange(100), sd, sentence(rnd.randrange(5, 16)))
    if fmt == "rfc3164":
        return "%s %2d %02d:%02d:%02d host%d %s[%d]: %s" % (rnd.choice(months), rnd.randrange(1, 29), rnd.randrange(24), rnd.randrange(60), rnd.randrange(60), rnd.randrange(50), rnd.choice(["sshd", "CRON", "su(pam_unix)", "kernel"]), rnd.randrange(1, 65536), sentence(rnd.randrange(5, 16)))
    if fmt == "klog":
        return "%s%02d%02d %02d:%02d:%02d.%06d %7d %s.go:%d] %s" % (rnd.choice("IIIWE"), rnd.randrange(1, 13), rnd.randrange(1, 29), rnd.randrange(24), rnd.randrange(60), rnd.randrange(60), rnd.randrange(10**6), rnd.randrange(1, 99999), rnd.choice(["controller", "reflector", "server", "kubelet"]), rnd.randrange(1, 999), sentence(rnd.randrange(4, 14)))
    if fmt == "logfmt":
        return 'ts=%s level=%s msg="%s" method=%s path=%s status=%d took=%dms client=%s' % (iso(), rnd.choice(["info", "info", "warn", "error", "debug"]), sentence(rnd.randrange(2, 8)), rnd.choice(["GET", "POST"]), path_(), rnd.choice([200, 404, 500]), rnd.randrange(1, 900), ip())
    if fmt == "json":
        return '{"ts":"%s","level":"%s","msg":"%s","http":{"method":"%s","path":"%s","status":%d},"took_ms":%.3f,"client":"%s"}' % (iso(), rnd.choice(["info", "warn", "error"]), sentence(rnd.randrange(2, 8)), rnd.choice(["GET", "POST"]), path_(), rnd.choice([200, 404, 500]), rnd.random() * 900, ip())
    raise SystemExit("unknown format " + fmt)
pool = "".join(line() + "\n" for _ in range(8192)).encode()
target = size_mb << 20
with open(path, "wb") as f:
    written = 0
    while written + len(pool) <= target:
        f.write(pool)
        written += len(pool)
PY
}

# `adapter parse` flag for each bench format.
flag_of() {
  case "$1" in
    rfc5424 | rfc3164) echo syslog ;;
    *) echo "$1" ;;
  esac
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

report() {
  printf '%-16s %10s %10s %12s %12s %10s %9s\n' "$@"
}

{
  echo "adapter parse, one core (taskset -c $CPU), ${SIZE_MB} MiB per format, median of $REPEAT"
  echo "$(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  report format "MiB/s" "lines/s" "MiB/s(cpu)" "lines/s(cpu)" "RSS MiB" "errors"
} | tee ${OUT:+"$OUT"}

for fmt in $FORMATS; do
  input="$WORK/$fmt.log"
  [[ -s "$input" ]] || generate "$fmt" "$input" "$SIZE_MB"
  bytes=$(stat -c %s "$input")
  lines=$(wc -l < "$input")
  # Every line must come out structured, or a failing parser would look fast.
  errors=$(head -n 20000 "$input" | "$BIN" parse --format "$(flag_of "$fmt")" | grep -c '"parse_error"' || true)
  wall=(); cpu=(); rss=()
  for _ in $(seq "$REPEAT"); do
    start=$(date +%s.%N)
    stats=$(taskset -c "$CPU" /usr/bin/time -f '%U %S %M' "$BIN" parse --format "$(flag_of "$fmt")" \
      < "$input" 2>&1 > /dev/null | tail -n 1)
    end=$(date +%s.%N)
    wall+=("$(echo "$end - $start" | bc -l)")
    cpu+=("$(echo "$stats" | awk '{print $1 + $2}')")
    rss+=("$(echo "$stats" | awk '{print $3}')")
  done
  w=$(printf '%s\n' "${wall[@]}" | median)
  c=$(printf '%s\n' "${cpu[@]}" | median)
  r=$(printf '%s\n' "${rss[@]}" | sort -g | tail -n 1)
  report "$fmt" \
    "$(echo "$bytes / 1048576 / $w" | bc -l | xargs printf '%.0f')" \
    "$(echo "$lines / $w" | bc -l | xargs printf '%.0f')" \
    "$(echo "$bytes / 1048576 / $c" | bc -l | xargs printf '%.0f')" \
    "$(echo "$lines / $c" | bc -l | xargs printf '%.0f')" \
    "$(echo "$r / 1024" | bc -l | xargs printf '%.1f')" \
    "$errors" | tee -a ${OUT:+"$OUT"}
done

# One 10 MiB line between ordinary ones: cut at --max-line-bytes, memory stays flat.
long="$WORK/long-line.log"
python3 - "$long" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "-" "x"\n')
    f.write(b"level=info msg=" + b"x" * (10 << 20) + b"\n")
    f.write(b'127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1 "-" "x"\n')
PY
stats=$(/usr/bin/time -f '%M' "$BIN" parse --format auto < "$long" 2>&1 > "$WORK/long-line.out" | tail -n 1)
records=$(wc -l < "$WORK/long-line.out")
flagged=$(grep -c '"truncated":true' "$WORK/long-line.out" || true)
echo "10 MiB line: $records records, $flagged truncated, peak RSS $(echo "$stats / 1024" | bc -l | xargs printf '%.1f') MiB" \
  | tee -a ${OUT:+"$OUT"}
