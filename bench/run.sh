#!/usr/bin/env bash
# Throughput of Sluice next to its peers, in one run on this machine: direct redis-server (the
# limit), haproxy in TCP mode (an L4 floor), twemproxy (an L7 Redis proxy), Sluice with an empty
# chain, and Sluice with a three-transform chain (command-filter deny + command-filter count, both
# plain C, and redirect, Swift, whose hot-key patterns match none of the benchmark's keys, so every
# request pays for its checks). redis-benchmark drives each at -P 1 and -P 16.
#
# Every figure is the median of ROUNDS runs, the targets interleaved round by round so that a noisy
# moment of the machine (2 cores shared by redis-benchmark, redis-server and the proxy) hits them all
# alike rather than one of them, and their order rotated from round to round.
#
# Usage: bench/run.sh   (N=200000 requests, C=50 clients, ROUNDS=5; override with env N, C, ROUNDS, THREADS, PIN)
# Needs: scripts/install-deps.sh (it builds with scripts/build.sh itself).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/three-transform-chain.sh
N=${N:-200000}
C=${C:-50}
ROUNDS=${ROUNDS:-5}  # a multiple of the 5 targets puts each in every place equally often
# One event loop: on a 2-core machine shared with redis-server and redis-benchmark a second loop
# only adds context switches (see docs/performance.md).
THREADS=${THREADS:-1}
# PIN=1: redis-benchmark on CPU 0, every server (redis-server, each proxy) on CPU 1, the same for
# every target. Left to the scheduler, which two of the three processes share a core is decided per
# run and sticks (no migrations were seen within a run), which is most of the ±20% spread of single
# -P 1 rounds; pinned, each target is measured in the same layout: one core for the client, one for
# the proxy and the server behind it (see docs/performance.md).
PIN=${PIN:-0}
if [ "$PIN" = 1 ]; then
  command -v taskset >/dev/null || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 2; }
  [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs 2 cores" >&2; exit 2; }
  SERVER_CPU=(taskset -c 1); CLIENT_CPU=(taskset -c 0)
else
  SERVER_CPU=(); CLIENT_CPU=()
fi

bash scripts/build.sh build/plugins >/dev/null  # a no-op when nothing changed

W=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REDIS=$(free_port); HAPROXY=$(free_port); TWEM=$(free_port); TWEM_STATS=$(free_port); EMPTY=$(free_port); CHAIN=$(free_port)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$W/haproxy.pid" ] && kill "$(cat "$W/haproxy.pid")" 2>/dev/null || true
  [ -f "$W/nut.pid" ] && kill "$(cat "$W/nut.pid")" 2>/dev/null || true
  redis-cli -p "$REDIS" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT

"${SERVER_CPU[@]}" redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$W/redis.pid" --logfile "$W/redis.log" --dir "$W"

cat >"$W/nut.yml" <<YAML
alpha:
  listen: 127.0.0.1:$TWEM
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  servers:
   - 127.0.0.1:$REDIS:1
YAML
# Its stats port too: the default (22222) may be taken by another twemproxy on the machine.
"${SERVER_CPU[@]}" nutcracker -c "$W/nut.yml" -s "$TWEM_STATS" -d -p "$W/nut.pid" -o "$W/nut.log"

cat >"$W/haproxy.cfg" <<CFG
global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:$HAPROXY
  default_backend b
backend b
  server r1 127.0.0.1:$REDIS
CFG
"${SERVER_CPU[@]}" haproxy -f "$W/haproxy.cfg" -D -p "$W/haproxy.pid" 2>/dev/null

cat >"$W/empty.yaml" <<YAML
sinks:
  primary: { redis: { address: 127.0.0.1:$REDIS } }
chains:
  main:
    - sink: primary
sources:
  - redis: { listen: 127.0.0.1:$EMPTY, chain: main }
YAML
three_transform_chain "$REDIS" "$CHAIN" >"$W/chain.yaml"
# Each Sluice runs in a session of its own, as redis-server, twemproxy and haproxy do once they
# daemonize (and as any service does under a service manager). With the kernel's autogroup
# scheduling (/proc/sys/kernel/sched_autogroup_enabled) a session is a scheduling group: left in this
# script's session, Sluice would share one CPU share with redis-benchmark while each peer had its own,
# which cost it about 10% at -P 1 on 2 cores.
# --single-process: the CPU figures below read this very pid, which would otherwise be the supervisor.
setsid "${SERVER_CPU[@]}" .build/release/sluice run --single-process --config "$W/empty.yaml" --threads "$THREADS" --log-level warning >"$W/empty.log" 2>&1 &
pids+=($!); EMPTY_PID=$!
setsid "${SERVER_CPU[@]}" .build/release/sluice run --single-process --config "$W/chain.yaml" --threads "$THREADS" --log-level warning >"$W/chain.log" 2>&1 &
pids+=($!); CHAIN_PID=$!
# Every target must answer before the first round: redis-benchmark retries a refused connection
# forever, so a target that did not start would hang the run instead of failing it.
for target in "redis:$REDIS" "haproxy:$HAPROXY" "twemproxy:$TWEM" "sluice-empty:$EMPTY" "sluice-3-transforms:$CHAIN"; do
  up=""
  for _ in $(seq 1 100); do redis-cli -p "${target##*:}" ping >/dev/null 2>&1 && { up=1; break; }; sleep 0.1; done
  [ -n "$up" ] || { echo "bench: ${target%%:*} (port ${target##*:}) did not start" >&2; tail -n 5 "$W"/*.log >&2; exit 1; }
done
for f in haproxy.pid nut.pid; do
  for _ in $(seq 1 50); do [ -s "$W/$f" ] && break; sleep 0.1; done  # daemons write these after answering
done
REDIS_PID=$(cat "$W/redis.pid")

# CPU time of a process (all its threads) in clock ticks: "user system".
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

# Prints "SET GET" requests per second for a port and pipeline depth.
bench() {
  # A generous limit (a run takes seconds): a target that dies mid-run fails the round, not the script.
  timeout 300 "${CLIENT_CPU[@]}" redis-benchmark -p "$1" -q -n "$N" -c "$C" -t set,get -P "$2" 2>/dev/null | tr '\r' '\n' |
    awk '/requests per second/ { gsub(":", "", $1); v[$1] = $2 } END { printf "%s %s\n", v["SET"], v["GET"] }'
}

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

targets=("direct:$REDIS" "haproxy:$HAPROXY" "twemproxy:$TWEM" "sluice-empty:$EMPTY" "sluice-3-transforms:$CHAIN")
declare -A proxy_pid=([direct]="" [haproxy]="$(cat "$W/haproxy.pid")" [twemproxy]="$(cat "$W/nut.pid")"
                      [sluice-empty]="$EMPTY_PID" [sluice-3-transforms]="$CHAIN_PID")
echo "redis-benchmark -n $N -c $C -t set,get; median of $ROUNDS interleaved rounds; sluice with $THREADS event loop(s); $(nproc) cores$([ "$PIN" = 1 ] && echo "; pinned: client on CPU 0, servers on CPU 1")"
printf "%-4s %-22s %12s %12s %10s %10s\n" "P" "target" "SET/s" "GET/s" "vs twem" "vs direct"
for P in 1 16; do
  declare -A sets gets set get pusers psyss rcpus
  for round in $(seq 1 "$ROUNDS"); do
    # Each round starts at the next target: where a target runs in the round (right after a slow
    # one, say) moves its figures by several percent, so no target keeps the same place.
    k=$(( (round - 1) % ${#targets[@]} ))
    for entry in "${targets[@]:k}" "${targets[@]:0:k}"; do
      name=${entry%%:*}
      pid=${proxy_pid[$name]}
      read -r ru0 rs0 < <(cpu_ticks "$REDIS_PID")
      [ -n "$pid" ] && read -r pu0 ps0 < <(cpu_ticks "$pid")
      read -r s g < <(bench "${entry##*:}" "$P")
      read -r ru1 rs1 < <(cpu_ticks "$REDIS_PID")
      sets[$name]="${sets[$name]:-} $s"; gets[$name]="${gets[$name]:-} $g"
      # CPU per request (µs) of the proxy (user, system) and of redis-server behind it.
      per_request() { awk -v t="$1" -v u="$TICK_US" -v n="$N" 'BEGIN { printf "%.2f", t * u / (2 * n) }'; }
      rcpus[$name]="${rcpus[$name]:-} $(per_request $(( ru1 + rs1 - ru0 - rs0 )))"
      if [ -n "$pid" ]; then
        read -r pu1 ps1 < <(cpu_ticks "$pid")
        pusers[$name]="${pusers[$name]:-} $(per_request $(( pu1 - pu0 )))"
        psyss[$name]="${psyss[$name]:-} $(per_request $(( ps1 - ps0 )))"
      fi
    done
  done
  for entry in "${targets[@]}"; do
    name=${entry%%:*}
    set[$name]=$(echo "${sets[$name]}" | median); get[$name]=$(echo "${gets[$name]}" | median)
  done
  for entry in "${targets[@]}"; do
    name=${entry%%:*}
    s=${set[$name]}; g=${get[$name]}
    vt=$(awk -v a="$s" -v b="$g" -v c="${set[twemproxy]}" -v d="${get[twemproxy]}" 'BEGIN { printf "%.2fx", (a + b) / (c + d) }')
    vd=$(awk -v a="$s" -v b="$g" -v c="${set[direct]}" -v d="${get[direct]}" 'BEGIN { printf "%.2fx", (a + b) / (c + d) }')
    printf "%-4s %-22s %12s %12s %10s %10s\n" "$P" "$name" "$s" "$g" "$vt" "$vd"
  done
  # The spread behind the medians: each round's ratio of the three-transform chain to twemproxy.
  read -ra cs <<<"${sets[sluice-3-transforms]}"; read -ra cg <<<"${gets[sluice-3-transforms]}"
  read -ra ts <<<"${sets[twemproxy]}"; read -ra tg <<<"${gets[twemproxy]}"
  rounds=""
  for i in "${!cs[@]}"; do
    rounds+=$(awk -v a="${cs[$i]}" -v b="${cg[$i]}" -v c="${ts[$i]}" -v d="${tg[$i]}" 'BEGIN { printf " %.2fx", (a + b) / (c + d) }')
  done
  echo "-P $P rounds, sluice-3-transforms vs twemproxy:$rounds"
  # Where the CPU goes: on 2 shared cores throughput follows the CPU all processes spend per request.
  printf "%-4s %-22s %12s %12s %14s\n" "P" "CPU µs/request" "proxy user" "proxy sys" "redis-server"
  for entry in "${targets[@]}"; do
    name=${entry%%:*}
    pu=$(echo "${pusers[$name]:-}" | median); psy=$(echo "${psyss[$name]:-}" | median)
    printf "%-4s %-22s %12s %12s %14s\n" "$P" "$name" "${pu:--}" "${psy:--}" "$(echo "${rcpus[$name]}" | median)"
  done
  unset sets gets set get pusers psyss rcpus
done
errors=$(grep -ci "error" "$W/chain.log" || true)
echo "sluice (3 transforms) log lines with 'error': $errors"
