#!/usr/bin/env bash
# User-space instructions Sluice executes per proxied CQL request, counted by valgrind's callgrind
# (the CQL counterpart of bench/instructions.sh): bench/cql/loadgen.c sends QUERY requests through
# Sluice to bench/cql/responder.c (canned one-row RESULT Rows), CONNS connections x STREAMS streams
# in flight (default 4 x 16 = 64, bench/cql.sh's high concurrency), once per protocol version in
# VERSIONS (default "4 5"; v5 with segment framing on both of Sluice's sides). Unlike requests per
# second on a shared 2-core machine, this count repeats to within about 1 %, so it shows what a
# change to the CQL path costs or saves. It counts neither system time nor waiting: throughput
# still needs bench/cql.sh.
#
# Usage: bench/cql-instructions.sh [SLUICE_BINARY]   (default .build/release/sluice; needs valgrind)
# env: N=20000 requests per version, CONNS=4, STREAMS=16, VERSIONS="4 5",
#      QUERY="SELECT k, v FROM bench.kv WHERE k = 'k'",
#      CHAIN=pass (a cassandra source straight to a cassandra sink) or CHAIN=3t (bench/cql.sh's
#      three-transform chain: deny + count from the C plugin, redirect from a Swift one; builds
#      build/plugins with scripts/build.sh unless PLUGINS=DIR names a directory of built plugins),
#      TOP=n also lists the n functions that execute the most instructions, per request,
#      SAVE=PREFIX keeps each version's callgrind output as PREFIX.v4 / PREFIX.v5
#      (for callgrind_annotate --inclusive=yes or --tree=caller).
# The request count of a run is the generator's, so a request Sluice answered itself would count
# as one (none do here: the generator sends only QUERYs, after STARTUP, which is not counted).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}
CONNS=${CONNS:-4}
STREAMS=${STREAMS:-16}
VERSIONS=${VERSIONS:-4 5}
CHAIN=${CHAIN:-pass}
QUERY=${QUERY:-"SELECT k, v FROM bench.kv WHERE k = 'k'"}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
BIN=${1:-.build/release/sluice}
[ -x "$BIN" ] || { echo "no Sluice binary at $BIN (swift build -c release, or scripts/build.sh)" >&2; exit 2; }

W=$(mktemp -d)
SP=""; RP=""
cleanup() {
  [ -n "$SP" ] && kill "$SP" 2>/dev/null || true
  [ -n "$RP" ] && kill "$RP" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
cc -O2 -Wall -o "$W/responder" bench/cql/responder.c
cc -O2 -Wall -o "$W/loadgen" bench/cql/loadgen.c
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RESP=$(free_port); PORT=$(free_port)
"$W/responder" -p "$RESP" -P "$W/responder.pid" 2>"$W/responder.log" &
RP=$!

case "$CHAIN" in
  pass)
    printf 'sinks:\n  cass: { cassandra: { address: 127.0.0.1:%s } }\nchains:\n  main:\n    - sink: cass\nsources:\n  - cassandra: { listen: 127.0.0.1:%s, chain: main }\n' \
      "$RESP" "$PORT" >"$W/chain.yaml"
    CHAIN_NAME="the pass-through chain"
    ;;
  3t)
    if [ -z "${PLUGINS:-}" ]; then bash scripts/build.sh build/plugins >/dev/null; PLUGINS=$PWD/build/plugins; fi
    # valgrind gives up on some plugins' DWARF 5: stripped copies (symbols kept), as instructions.sh does.
    mkdir "$W/plugins"
    for so in "$PLUGINS"/*.so; do strip --strip-debug -o "$W/plugins/$(basename "$so")" "$so"; done
    cat >"$W/chain.yaml" <<YAML
plugins:
  directory: $W/plugins
sinks:
  cass: { cassandra: { address: 127.0.0.1:$RESP } }
  hot: { cassandra: { address: 127.0.0.1:$RESP } }
chains:
  main:
    - deny: { statements: [ddl], commands: [TRUNCATE] }
    - count: {}
    - redirect: { target: hot, keyspaces: [hot] }
    - sink: cass
sources:
  - cassandra: { listen: 127.0.0.1:$PORT, chain: main }
YAML
    CHAIN_NAME="deny + count + redirect"
    ;;
  *) echo "CHAIN=pass or CHAIN=3t" >&2; exit 2 ;;
esac

# valgrind cannot read the DWARF of Swift binaries; the symbol table is enough to name functions.
strip --strip-debug -o "$W/sluice" "$BIN"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/callgrind.%p" \
  "$W/sluice" run --single-process --config "$W/chain.yaml" --threads 1 --log-level warning >"$W/sluice.log" 2>&1 &
SP=$!
ok=""
for _ in $(seq 1 300); do
  "$W/loadgen" -p "$PORT" -v 4 -c 1 -s 1 -n 1 >/dev/null 2>&1 && { ok=1; break; }
  kill -0 "$SP" 2>/dev/null || break
  sleep 0.2
done
[ -n "$ok" ] || { echo "Sluice did not start under valgrind (or carries no CQL):" >&2; tail -20 "$W/sluice.log" >&2; exit 1; }

for v in $VERSIONS; do
  # Connections, caches and the shared backend connection of this version warm first.
  "$W/loadgen" -p "$PORT" -v "$v" -c "$CONNS" -s "$STREAMS" -n 5000 -q "$QUERY" >/dev/null
  callgrind_control -z "$SP" >/dev/null 2>&1
  callgrind_control -i on "$SP" >/dev/null 2>&1
  out=$("$W/loadgen" -p "$PORT" -v "$v" -c "$CONNS" -s "$STREAMS" -n "$N" -q "$QUERY") || {
    echo "loadgen failed at v$v: $out" >&2; exit 1; }
  callgrind_control -i off "$SP" >/dev/null 2>&1
  before=$(ls "$W"/callgrind.* 2>/dev/null | wc -l)
  callgrind_control -d "$SP" >/dev/null 2>&1
  for _ in $(seq 1 50); do [ "$(ls "$W"/callgrind.* 2>/dev/null | wc -l)" -gt "$before" ] && break; sleep 0.1; done
  dump=$(ls -t "$W"/callgrind.* | head -1)
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  # A dump's "summary:" line can be 0 (instrumentation was switched off before it); "totals:" is the sum.
  total=$(grep -h '^summary:\|^totals:' "$dump" | awk '{ if ($2 > t) t = $2 } END { print t + 0 }')
  echo "v$v: instructions per request: $(( total / requests ))  (user space, $requests QUERYs, $CONNS connections x $STREAMS streams, through $CHAIN_NAME)"
  if [ -n "${SAVE:-}" ]; then cp "$dump" "$SAVE.v$v"; fi
  if [ -n "${TOP:-}" ]; then
    callgrind_annotate --threshold=100 "$dump" 2>/dev/null |
      grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | sed -E 's/\([ 0-9.]+%\) +//; s/ \[[^]]*\]$//' |
      awk -v n="$requests" '{ c = $1; gsub(",", "", c); $1 = ""; printf "%8.1f %s\n", c / n, substr($0, 2, 140) }' |
      head -"$TOP" || true
  fi
done
