#!/usr/bin/env bash
# User-space instructions Sluice executes per proxied request, counted by valgrind's callgrind: the
# three-transform chain of bench/run.sh (deny + count + redirect), redis-benchmark GET at -P 1 with
# 50 clients. Unlike requests per second on a shared 2-core machine, this count repeats to within
# a few instructions, so it shows what a change to the hot path costs or saves. It counts neither
# system time nor waiting, so throughput still needs bench/run.sh.
#
# Usage: bench/instructions.sh [SLUICE_BINARY]   (N=20000 requests; needs valgrind: apt install valgrind)
# P=16 pipelines 16 requests per write (default 1). PLUGINS=DIR measures with the plugins of DIR instead of building build/plugins (for comparing an
# older binary with its own plugins).
# With TOP=n it also lists the n functions that execute the most instructions, per request; SAVE=FILE
# keeps the callgrind output.
# STEP='- key-prefix: { prefix: "t1:" }' measures a chain of that one step instead (STEP='': the
# empty chain), for the cost of one transform against the pass-through chain.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/three-transform-chain.sh
N=${N:-20000}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
if [ -z "${PLUGINS:-}" ]; then bash scripts/build.sh build/plugins >/dev/null; fi
W=$(mktemp -d)
SP=""
cleanup() {
  [ -n "$SP" ] && kill "$SP" 2>/dev/null || true
  redis-cli -p "$REDIS" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS=$(free_port); PORT=$(free_port)
# valgrind gives up on some plugins' DWARF 5 (protect's, built with swift-crypto): it loads stripped
# copies of the plugins (symbols kept), like the binary below.
mkdir "$W/plugins"
for so in "${PLUGINS:-$PWD/build/plugins}"/*.so; do strip --strip-debug -o "$W/plugins/$(basename "$so")" "$so"; done
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$W/redis.pid" --logfile "$W/redis.log" --dir "$W"
if [ -n "${STEP+set}" ]; then
  # STEP='- key-prefix: { prefix: "t1:" }' measures a chain of that one step; STEP='' the empty chain.
  CHAIN="${STEP:+$STEP (alone)}"; CHAIN=${CHAIN:-the empty chain}
  printf 'plugins: { directory: %s }\nsinks: { primary: { redis: { address: 127.0.0.1:%s } } }\nchains:\n  main:\n%s    - sink: primary\nsources: [ { redis: { listen: 127.0.0.1:%s, chain: main } } ]\n' \
    "$W/plugins" "$REDIS" "${STEP:+    $STEP
}" "$PORT" >"$W/chain.yaml"
else
  CHAIN="deny + count + redirect"
  three_transform_chain "$REDIS" "$PORT" | sed "s|directory: .*|directory: $W/plugins|" >"$W/chain.yaml"
fi
# valgrind cannot read the DWARF of Swift binaries; the symbol table is enough to name functions.
strip --strip-debug -o "$W/sluice" "${1:-.build/release/sluice}"
# The serving process itself: without --single-process valgrind would trace the supervisor, which
# serves nothing (binaries older than supervision have no such flag).
SINGLE=$("$W/sluice" run --help 2>&1 | grep -q -- --single-process && echo --single-process || true)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/callgrind.%p" \
  "$W/sluice" run $SINGLE --config "$W/chain.yaml" --threads 1 --log-level warning >"$W/sluice.log" 2>&1 &
SP=$!
for _ in $(seq 1 150); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-cli -p "$PORT" ping >/dev/null 2>&1 || { echo "Sluice did not start under valgrind:" >&2; tail -20 "$W/sluice.log" >&2; exit 1; }
redis-benchmark -p "$PORT" -q -n 5000 -c 50 -t get -P 1 >/dev/null   # connections and caches warm
callgrind_control -i on "$SP" >/dev/null 2>&1
redis-benchmark -p "$PORT" -q -n "$N" -c 50 -t get -P "${P:-1}" >/dev/null
callgrind_control -i off "$SP" >/dev/null 2>&1
callgrind_control -d "$SP" >/dev/null 2>&1
sleep 1
total=$(grep -h '^summary:\|^totals:' "$W"/callgrind.* | awk '{ s += $2 } END { print s }')
echo "instructions per request: $(( total / N ))  (user space, $N GETs at -P ${P:-1} through $CHAIN)"
# SAVE=FILE keeps the callgrind output (e.g. for callgrind_annotate --tree=caller FILE).
if [ -n "${SAVE:-}" ]; then cp "$(ls -S "$W"/callgrind.* | head -1)" "$SAVE"; fi
if [ -n "${TOP:-}" ]; then
  callgrind_annotate --threshold=100 "$(ls -S "$W"/callgrind.* | head -1)" 2>/dev/null |
    grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | sed -E 's/\([ 0-9.]+%\) +//; s/ \[[^]]*\]$//' |
    awk -v n="$N" '{ c = $1; gsub(",", "", c); $1 = ""; printf "%8.1f %s\n", c / n, substr($0, 2, 140) }' |
    head -"$TOP"
fi
