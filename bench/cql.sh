#!/usr/bin/env bash
# CQL throughput and CPU per request, direct and through Sluice, in one run on this machine:
#   cql-direct      the load generator against the responder (the limit)
#   cql-haproxy     through haproxy in TCP mode with as many threads as Sluice has event loops: a
#                   byte relay that parses nothing, one backend connection per client, the floor
#                   any proxy on this machine pays for the extra hop (bench/run.sh has it for Redis)
#   cql-pass        through Sluice: cassandra source -> cassandra sink, no transform
#   cql-3t          through Sluice: a three-transform chain (CQL_CHAIN below) -> cassandra sink
# and, at the same concurrency (redis-benchmark -c CONNS -P STREAMS, GET, as bench/run.sh does):
#   redis-direct, redis-pass (empty chain), redis-3t (bench/three-transform-chain.sh), and
#   redis-pass-P1: the empty chain with CONNS*STREAMS clients at -P 1 (each request its own batch)
# so Sluice's CPU per proxied CQL request can be read against its CPU per proxied Redis request.
#
# The backend is bench/cql/responder.c (canned RESULT replies, one thread, epoll) and the client
# bench/cql/loadgen.c (CONNS connections x STREAMS streams in flight, QUERY requests); both are
# plain C, independent of Sluice's codec, and built here with cc -O2. Their CPU per request is
# printed next to Sluice's so it is visible they are not the bottleneck. Every figure is the median
# of ROUNDS interleaved rounds whose order rotates (see docs/performance.md for why), and each
# run also shows how much CPU *other* processes on the machine took meanwhile (the busy time in
# /proc/stat minus that of Sluice, the backend and the generator), in % of all cores.
#
# Usage: bench/cql.sh   (env: ROUNDS=3, CONNS=4, HIGH=16 and LOW=1 streams per connection,
#        N_HIGH=400000 and N_LOW=100000 requests, VERSIONS="4 5", THREADS=1,
#        QUERY="SELECT k, v FROM bench.kv WHERE k = 'k'" (a one-row RESULT Rows),
#        SLUICE_BIN=.build/release/sluice and PLUGINS=build/plugins to skip the release build)
# Needs: cc, redis-server, redis-benchmark, haproxy (scripts/install-deps.sh; without haproxy its row
# is n/a); the driver check needs cassandra-driver (pip).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/three-transform-chain.sh
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-4}
HIGH=${HIGH:-16}
LOW=${LOW:-1}
N_HIGH=${N_HIGH:-400000}
N_LOW=${N_LOW:-100000}
VERSIONS=${VERSIONS:-4 5}
THREADS=${THREADS:-1}
QUERY=${QUERY:-"SELECT k, v FROM bench.kv WHERE k = 'k'"}

if [ -z "${SLUICE_BIN:-}" ]; then
  bash scripts/build.sh build/plugins >/dev/null   # release host + plugins; a no-op when nothing changed
  SLUICE_BIN=$PWD/.build/release/sluice
fi
PLUGINS=${PLUGINS:-$PWD/build/plugins}

W=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${REDIS:-}" ] && redis-cli -p "$REDIS" shutdown nosave >/dev/null 2>&1 || true
  [ -f "$W/haproxy.pid" ] && kill "$(cat "$W/haproxy.pid")" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
cc -O2 -Wall -o "$W/responder" bench/cql/responder.c
cc -O2 -Wall -o "$W/loadgen" bench/cql/loadgen.c

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RESP=$(free_port); REDIS=$(free_port)
CQL_HAPROXY=$(free_port); CQL_PASS=$(free_port); CQL_3T=$(free_port); REDIS_PASS=$(free_port); REDIS_3T=$(free_port)

# Every server in a session of its own (setsid): with autogroup scheduling a session is a
# scheduling group, and a server sharing the script's session would share one CPU share with the
# load generator (docs/performance.md, "Every server in a session of its own").
setsid "$W/responder" -p "$RESP" -P "$W/responder.pid" 2>"$W/responder.log" &
pids+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$W/redis.pid" --logfile "$W/redis.log" --dir "$W"
# The L4 floor: haproxy relays the bytes of each client connection over a backend connection of its
# own, parsing nothing; with THREADS threads, as Sluice has event loops.
printf 'global\n  maxconn 4000\n  nbthread %s\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  server r1 127.0.0.1:%s\n' \
  "$THREADS" "$CQL_HAPROXY" "$RESP" >"$W/haproxy.cfg"
if command -v haproxy >/dev/null; then
  setsid haproxy -f "$W/haproxy.cfg" -D -p "$W/haproxy.pid" 2>"$W/cql-haproxy.log" || true
fi

# The three-transform CQL chain: deny and count from the C plugin (command-filter), redirect from
# a Swift one, as in the Redis chain; none of them matches the benchmark's statements, so every
# request pays for the checks and goes to the primary sink. CQL_CHAIN='    - step...' (YAML list
# items, 4 spaces in) replaces it.
DEFAULT_CQL_CHAIN='    - deny: { statements: [ddl], commands: [TRUNCATE] }
    - count: {}
    - redirect: { target: hot, keyspaces: [hot] }'
CQL_CHAIN=${CQL_CHAIN:-$DEFAULT_CQL_CHAIN}
cql_config() {  # PORT CHAIN(pass|3t)
  if [ "$2" = pass ]; then
    printf 'sinks:\n  cass: { cassandra: { address: 127.0.0.1:%s } }\nchains:\n  main:\n    - sink: cass\nsources:\n  - cassandra: { listen: 127.0.0.1:%s, chain: main }\n' "$RESP" "$1"
  else
    cat <<YAML
plugins:
  directory: $PLUGINS
sinks:
  cass: { cassandra: { address: 127.0.0.1:$RESP } }
  hot: { cassandra: { address: 127.0.0.1:$RESP } }
chains:
  main:
$CQL_CHAIN
    - sink: cass
sources:
  - cassandra: { listen: 127.0.0.1:$1, chain: main }
YAML
  fi
}
cql_config "$CQL_PASS" pass >"$W/cql-pass.yaml"
cql_config "$CQL_3T" 3t >"$W/cql-3t.yaml"
printf 'sinks:\n  primary: { redis: { address: 127.0.0.1:%s } }\nchains:\n  main:\n    - sink: primary\nsources:\n  - redis: { listen: 127.0.0.1:%s, chain: main }\n' "$REDIS" "$REDIS_PASS" >"$W/redis-pass.yaml"
three_transform_chain "$REDIS" "$REDIS_3T" | sed "s|directory: .*|directory: $PLUGINS|" >"$W/redis-3t.yaml"

declare -A port=([cql-direct]=$RESP [cql-haproxy]=$CQL_HAPROXY [cql-pass]=$CQL_PASS [cql-3t]=$CQL_3T
                 [redis-direct]=$REDIS [redis-pass]=$REDIS_PASS [redis-3t]=$REDIS_3T [redis-pass-P1]=$REDIS_PASS)
declare -A sluice_pid=() unavailable=()
for name in cql-pass cql-3t redis-pass redis-3t; do
  setsid "$SLUICE_BIN" run --single-process --config "$W/$name.yaml" --threads "$THREADS" --log-level warning \
    >"$W/$name.log" 2>&1 &
  sluice_pid[$name]=$!; pids+=($!)
done
for _ in $(seq 1 50); do [ -s "$W/responder.pid" ] && [ -s "$W/redis.pid" ] && break; sleep 0.1; done
RESP_PID=$(cat "$W/responder.pid"); REDIS_PID=$(cat "$W/redis.pid")
# Ready when a request goes through; a Sluice that refuses the config (or cannot carry CQL yet)
# makes its targets unavailable, and the rest is still measured.
for _ in $(seq 1 50); do [ -s "$W/haproxy.pid" ] && break; command -v haproxy >/dev/null || break; sleep 0.1; done
[ -s "$W/haproxy.pid" ] && sluice_pid[cql-haproxy]=$(cat "$W/haproxy.pid")  # its CPU goes in the proxy column
for name in cql-direct cql-haproxy cql-pass cql-3t redis-direct redis-pass redis-3t; do
  ok=""
  for _ in $(seq 1 100); do
    if [[ $name == cql-* ]]; then
      "$W/loadgen" -p "${port[$name]}" -v 4 -c 1 -s 1 -n 1 >/dev/null 2>&1 && ok=1
    else
      [ "$(redis-cli -p "${port[$name]}" ping 2>/dev/null)" = PONG ] && ok=1
    fi
    [ -n "$ok" ] && break
    pid=${sluice_pid[$name]:-}
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && break
    [ "$name" = cql-haproxy ] && [ -z "$pid" ] && break
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    unavailable[$name]=$(grep -v '^\s*$' "$W/$name.log" 2>/dev/null | head -3 | tr '\n' ' ' | cut -c1-300)
    echo "bench: $name is not available: ${unavailable[$name]:-no reply}" >&2
  fi
done

# A real driver runs its queries on each CQL path first (bench/cql/driver_check.py), so the figures
# below are of a path the DataStax python driver really uses; its result is printed, not enforced.
if python3 -c 'import cassandra' 2>/dev/null; then
  for name in cql-direct cql-pass cql-3t; do
    [ -n "${unavailable[$name]:-}" ] && continue
    echo "$name: $(timeout 120 python3 bench/cql/driver_check.py "${port[$name]}" 2>&1 | tail -1)"
  done
else
  echo "(no DataStax python driver here: pip install cassandra-driver for the driver check)"
fi

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }            # user + system, in ticks
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }  # all cores, ticks
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }

# One measured run of a target; appends "rps sluice_us server_us gen_us others_pct" to results[key].
declare -A results=()
run_target() {  # NAME VERSION STREAMS N
  local name=$1 v=$2 s=$3 n=$4 key="$1 v$2 $3" spid=${sluice_pid[${1%-P1}]:-} server out rps gen
  [[ $name == cql-* ]] && server=$RESP_PID || server=$REDIS_PID
  local s0=0 s1=0 b0 b1 r0 r1 t0 t1
  [ -n "$spid" ] && s0=$(cpu_ticks "$spid")
  r0=$(cpu_ticks "$server"); b0=$(machine_busy); t0=$(date +%s.%N)
  if [[ $name == cql-* ]]; then
    out=$("$W/loadgen" -p "${port[$name]}" -v "$v" -c "$CONNS" -s "$s" -n "$n" -q "$QUERY" 2>"$W/loadgen.err") || {
      echo "bench: $key: $(head -2 "$W/loadgen.err" | tr '\n' ' ')" >&2; return 0; }
    rps=$(sed -E 's/.*rps=([0-9.]+).*/\1/' <<<"$out")
    gen=$(awk -v l="$out" 'BEGIN { split(l, f, " "); for (i in f) { split(f[i], kv, "="); x[kv[1]] = kv[2] } printf "%.3f", x["user_s"] + x["sys_s"] }')
  else
    # redis-benchmark's CPU from bash's `time` (user + system of the child).
    local TIMEFORMAT='%U %S'
    # redis-pass-P1: the same number in flight as CONNS*STREAMS clients of one request each, so
    # that each request is a batch of its own in Sluice, as every CQL request is.
    local c=$CONNS p=$s
    [[ $name == *-P1 ]] && { c=$((CONNS * s)); p=1; }
    { time redis-benchmark -p "${port[$name]}" -q -n "$n" -c "$c" -P "$p" -t get >"$W/rb.out" 2>/dev/null; } 2>"$W/rb.time"
    rps=$(tr '\r' '\n' <"$W/rb.out" | awk '/requests per second/ { print $2 }' | tail -1)
    gen=$(tail -1 "$W/rb.time" | awk '{ printf "%.3f", $1 + $2 }')
  fi
  t1=$(date +%s.%N); b1=$(machine_busy); r1=$(cpu_ticks "$server")
  [ -n "$spid" ] && s1=$(cpu_ticks "$spid")
  results[$key]+=$(awk -v rps="$rps" -v st=$((s1 - s0)) -v rt=$((r1 - r0)) -v g="$gen" -v bt=$((b1 - b0)) \
    -v u="$TICK_US" -v n="$n" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v cores="$(nproc)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { others = bt / hz - st / hz - rt / hz - g; if (others < 0) others = 0
             printf "%s,%.2f,%.2f,%.2f,%.0f ", rps, st * u / n, rt * u / n, g * 1e6 / n, 100 * others / (w * cores) }')
}

echo "bench/cql.sh: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rotated rounds;" \
     "$CONNS connections x {$HIGH, $LOW} streams; sluice $($SLUICE_BIN --version 2>/dev/null || echo '?') with $THREADS event loop(s);" \
     "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "query: $QUERY"
# Warm every target once (connections, caches, the JIT-free but lazy parts of the host).
for name in cql-direct cql-haproxy cql-pass cql-3t redis-direct redis-pass redis-3t; do
  [ -n "${unavailable[$name]:-}" ] && continue
  if [[ $name == cql-* ]]; then "$W/loadgen" -p "${port[$name]}" -v 5 -c "$CONNS" -s "$HIGH" -n 20000 -q "$QUERY" >/dev/null 2>&1 || true
  else redis-benchmark -p "${port[$name]}" -q -n 20000 -c "$CONNS" -P "$HIGH" -t get >/dev/null 2>&1 || true; fi
done

for S in "$HIGH" "$LOW"; do
  [ "$S" = "$HIGH" ] && N=$N_HIGH || N=$N_LOW
  entries=()
  for v in $VERSIONS; do for t in cql-direct cql-haproxy cql-pass cql-3t; do entries+=("$t:$v"); done; done
  for t in redis-direct redis-pass redis-3t redis-pass-P1; do entries+=("$t:-"); done
  for round in $(seq 1 "$ROUNDS"); do
    k=$(( (round - 1) % ${#entries[@]} ))
    for e in "${entries[@]:k}" "${entries[@]:0:k}"; do
      name=${e%%:*}
      [ -n "${unavailable[${name%-P1}]:-}" ] && continue
      run_target "$name" "${e##*:}" "$S" "$N"
    done
  done
  echo
  echo "== $CONNS connections x $S streams = $((CONNS * S)) in flight; $N requests per run; medians of $ROUNDS rounds =="
  printf "%-13s %-3s %10s %9s %13s %13s %13s %9s\n" "target" "v" "req/s" "vs direct" "proxy µs/req" "server µs/req" "client µs/req" "others %"
  declare -A med=()
  for e in "${entries[@]}"; do
    name=${e%%:*}; v=${e##*:}; key="$name v$v $S"
    if [ -n "${unavailable[${name%-P1}]:-}" ] || [ -z "${results[$key]:-}" ]; then
      printf "%-13s %-3s %10s\n" "$name" "$v" "n/a"; continue
    fi
    for i in 1 2 3 4 5; do
      med[$key,$i]=$(tr ' ' '\n' <<<"${results[$key]}" | { grep -v '^$' || true; } | cut -d, -f$i | median)
    done
    [[ $name == cql-* ]] && direct="cql-direct v$v $S" || direct="redis-direct v- $S"
    vs=$(awk -v a="${med[$key,1]}" -v b="${med[$direct,1]:-0}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
    [[ $name == *-P1 ]] && vs="-"   # redis-direct ran at -P STREAMS, not comparable
    sl=${med[$key,2]}; [[ $name == *-direct ]] && sl="-"
    printf "%-13s %-3s %10s %9s %13s %13s %13s %9s\n" "$name" "$v" "${med[$key,1]}" "$vs" "$sl" "${med[$key,3]}" "${med[$key,4]}" "${med[$key,5]}"
  done
  # The issue's targets, read off: CQL CPU per request <= 1.5x Redis's; >= 0.6x direct at 64 in flight.
  for v in $VERSIONS; do
    for c in pass 3t; do
      key="cql-$c v$v $S"; rkey="redis-$c v- $S"
      [ -n "${med[$key,2]:-}" ] && [ -n "${med[$rkey,2]:-}" ] || continue
      awk -v c="$c" -v v="$v" -v a="${med[$key,2]}" -v b="${med[$rkey,2]}" -v r="${med[$key,1]}" -v d="${med["cql-direct v$v $S",1]:-0}" \
        -v p1="${med["redis-pass-P1 v- $S",2]:-0}" -v srv="${med[$key,3]}" -v gen="${med[$key,4]}" -v cores="$(nproc)" -v threads="$THREADS" \
        -v h="${med["cql-haproxy v$v $S",1]:-0}" -v hcpu="${med["cql-haproxy v$v $S",2]:-0}" \
        'BEGIN { printf "target check v%s %-4s: sluice CPU per CQL request / per Redis request = %.2f (target <= 1.5; against redis-pass-P1: %.2f); throughput / direct = %.2f (target >= 0.6 at 64 in flight)\n", v, c, (b > 0 ? a / b : 0), (p1 > 0 ? a / p1 : 0), (d > 0 ? r / d : 0)
                 # What 0.6x direct would take: at that rate the backend and the generator (at their
                 # CPU per request in this run) leave the rest of the cores to Sluice, whose
                 # event loops can use at most THREADS of them.
                 if (d > 0) { t = 0.6 * d; left = cores * 1e6 / t - srv - gen; cap = threads * 1e6 / t
                   printf "               0.6x direct = %.0f req/s would need sluice <= %.2f us/request (now %.2f): the cores left after backend + generator %.2f, one event loop at most %.2f\n", t, (left < cap ? left : cap), a, left, cap }
                 # The floor any proxy pays for the extra hop here: haproxy relaying bytes.
                 if (d > 0 && h > 0) printf "               haproxy (TCP relay, parses nothing) = %.2fx direct at %.2f us/request; sluice reaches %.2f of its throughput\n", h / d, hcpu, r / h }'
    done
  done
  unset med
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for name in cql-pass cql-3t redis-pass redis-3t; do
  [ -n "${unavailable[$name]:-}" ] && continue
  e=$(grep -ci "error" "$W/$name.log" || true)
  [ "$e" != 0 ] && echo "sluice $name: $e log lines with 'error' (first: $(grep -i -m1 error "$W/$name.log"))"
done
true
