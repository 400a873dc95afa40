#!/usr/bin/env bash
# Cost per request of protect against Sluice's pass-through chain, in one run: redis-benchmark
# (-t set,get, 3-byte values unless D is set) through an empty chain, through protect whose pattern
# matches none of the benchmark's keys (the cost of looking: every batch still goes on with
# call_pass), and through protect encrypting every SET and decrypting every GET (AES-256-GCM, one
# argument rewrite per SET, one reply re-encoded per GET). Rounds are interleaved and the median
# kept; the extra cost is 1e6/rps(target) - 1e6/rps(empty) in µs of wall time per request, which at
# saturation is mostly the proxy's CPU. For a count of instructions instead, use bench/instructions.sh
# with STEP='- protect: { … }' and the key's variable exported.
#
# Usage: bench/protect-cost.sh   (N=100000, ROUNDS=3, P="1 16", D=3; SLUICE_BIN, SLUICE_PLUGINS to
# use a given host and plugin directory, default .build/release/sluice and build/plugins)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
ROUNDS=${ROUNDS:-3}
P=${P:-"1 16"}
D=${D:-3}
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
PROTECT_BENCH_KEY=$(head -c 32 /dev/urandom | base64)
export PROTECT_BENCH_KEY

declare -A STEP=(
  [empty]=""
  [protect-miss]='    - protect: { patterns: ["secret:*"], key_id: k1, keys: { k1: { env: PROTECT_BENCH_KEY } } }'
  [protect-every]='    - protect: { patterns: ["key:*"], key_id: k1, keys: { k1: { env: PROTECT_BENCH_KEY } } }'
)
TARGETS=(empty protect-miss protect-every)
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
      rps=$(redis-benchmark -p "${PORT[$t]}" -t set,get -n "$N" -c 50 -P "$p" -d "$D" -q 2>/dev/null | tr '\r' '\n' \
        | awk '/^ *(SET|GET): [0-9.]+ requests per second/ {s += $2; n++} END {printf "%.0f", s / n}')
      RESULTS[$t,$p]="${RESULTS[$t,$p]:-} $rps"
    done
  done
done
# The GETs through protect-every read values it wrote: a decryption failure would show here.
redis-cli -p "${PORT[protect-every]}" get key:__rand_int__ | grep -q . || { echo "protect-every: GET failed" >&2; exit 1; }
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
