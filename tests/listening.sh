# shellcheck shell=bash
# listening HOST:PORT: true when something accepts TCP connections there. Sourced by
# samples/demo.sh, tests/benches/proxy-bench.sh and deploy/pgo-build.sh, which check their
# loopback ports before starting servers on them.
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
