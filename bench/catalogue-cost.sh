#!/usr/bin/env bash
# Cost per request of the C catalogue transforms against Sluice's pass-through chain, in one run:
# redis-benchmark (-t set,get) through an empty chain, throttle (a rate it never reaches, so every
# batch pays for the bucket: a mutex, a clock read, the refill), throttle per client (plus the
# address table), query-type-filter (a deny-list: a table lookup per request) and query-counter
# (every command counted, one key pattern: a counter add and a glob per request). Rounds are
# interleaved and the median kept; the extra cost is 1e6/rps(target) - 1e6/rps(empty) in µs of
# wall time per request, which at saturation is mostly the proxy's CPU.
#
# Usage: bench/catalogue-cost.sh   (N=100000, ROUNDS=3, P="1 16"; SLUICE_BIN, SLUICE_PLUGINS to
# use a given host and plugin directory, default .build/release/sluice and build/plugins)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
P=${P:-"1 16"}
BIN=${SLUICE_BIN:-$PWD/.build/release/sluice}
PLUGINS=${SLUICE_PLUGINS:-$PWD/build/plugins}
W=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS=$(free_port)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  redis-cli -p "$REDIS" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir "$W" \
  --pidfile "$W/redis.pid" --logfile "$W/redis.log"

declare -A STEP=(
  [empty]=""
  [throttle]="    - throttle: { rate: 100000000, burst: 100000000 }"
  [throttle-client]="    - throttle: { rate: 100000000, burst: 100000000, per: client }"
  [query-type-filter]='    - query-type-filter: { deny: ["@dangerous", "@admin"] }'
  [query-counter]='    - query-counter: { key_patterns: { keys: "key:*" } }'
)
TARGETS=(empty throttle throttle-client query-type-filter query-counter)
declare -A PORT
for t in "${TARGETS[@]}"; do
  PORT[$t]=$(free_port)
  cat >"$W/$t.yaml" <<YAML
plugins: { directory: $PLUGINS }
sinks:
  primary: { redis: { address: 127.0.0.1:$REDIS } }
chains:
  main:
${STEP[$t]}
    - sink: primary
sources:
  - redis: { listen: 127.0.0.1:${PORT[$t]}, chain: main }
YAML
  sed -i '/^$/d' "$W/$t.yaml"
  "$BIN" run --config "$W/$t.yaml" --threads 1 >"$W/$t.log" 2>&1 &
  pids+=($!)
done
sleep 2
for t in "${TARGETS[@]}"; do redis-cli -p "${PORT[$t]}" ping >/dev/null || { cat "$W/$t.log"; exit 1; }; done

declare -A RESULTS
for p in $P; do
  for r in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
      rps=$(redis-benchmark -p "${PORT[$t]}" -t set,get -n "$N" -c 50 -P "$p" -q 2>/dev/null | tr '\r' '\n' \
        | awk '/^ *(SET|GET): [0-9.]+ requests per second/ {s += $2; n++} END {printf "%.0f", s / n}')
      RESULTS[$t,$p]="${RESULTS[$t,$p]:-} $rps"
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf "%-20s" "target"; for p in $P; do printf "%16s %12s" "-P $p req/s" "+µs/req"; done; echo
for t in "${TARGETS[@]}"; do
  printf "%-20s" "$t"
  for p in $P; do
    m=$(echo "${RESULTS[$t,$p]}" | median); e=$(echo "${RESULTS[empty,$p]}" | median)
    printf "%16s %12s" "$m" "$(python3 -c "print(f'{1e6/$m - 1e6/$e:+.2f}')")"
  done
  echo
done
