#!/usr/bin/env bash
# The main job on loopback, both protocols through one Sluice:
# - Redis: two real redis-servers, Sluice between them and a client with a tee chain (every write goes
#   to both servers, answers come from the primary). A value written through Sluice is then read back
#   from each server directly.
# - CQL: the CQL test backend (Tests/cql/backend, a Python test server, not Cassandra) behind a
#   `cassandra` source and sink, with a deny step that refuses TRUNCATE; cqlsh runs a few statements
#   through Sluice (the TRUNCATE is refused by Sluice), and the rows are then read back from the
#   backend directly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "== building sluice and its plugins (release)"
bash scripts/build.sh build/plugins

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PRIMARY=$(free_port); SHADOW=$(free_port); PROXY=$(free_port); CQL_BACKEND=$(free_port); CQL_PROXY=$(free_port)
WORK=$(mktemp -d)
cleanup() {
  [ -n "${SLUICE_PID:-}" ] && kill "$SLUICE_PID" 2>/dev/null || true
  [ -n "${CQL_BACKEND_PID:-}" ] && kill "$CQL_BACKEND_PID" 2>/dev/null || true
  redis-cli -p "$PRIMARY" shutdown nosave >/dev/null 2>&1 || true
  redis-cli -p "$SHADOW" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for port in "$PRIMARY" "$SHADOW"; do
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize yes \
    --logfile "$WORK/redis-$port.log" --pidfile "$WORK/redis-$port.pid"
done

cat >"$WORK/sluice.yaml" <<YAML
plugins:
  directory: $PWD/build/plugins
  require: [tee, command-filter]
sinks:
  primary: { redis: { address: 127.0.0.1:$PRIMARY } }
  shadow:  { redis: { address: 127.0.0.1:$SHADOW } }
  cass:    { cassandra: { address: 127.0.0.1:$CQL_BACKEND } }
chains:
  main:
    - tee: { target: shadow, on_mismatch: log }
    - sink: primary
  cql_main:
    - deny: { commands: [truncate] }
    - sink: cass
sources:
  - redis: { listen: 127.0.0.1:$PROXY, chain: main }
  - cassandra: { listen: 127.0.0.1:$CQL_PROXY, chain: cql_main }
YAML

echo "== the CQL test backend (Tests/cql/backend: a Python test server, not Cassandra) on port $CQL_BACKEND"
python3 -m Tests.cql.backend --port "$CQL_BACKEND" >"$WORK/cql-backend.log" 2>&1 &
CQL_BACKEND_PID=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/cql-backend.log" && break; sleep 0.1; done

echo "== plugins offered by build/plugins"
.build/release/sluice plugins --dir build/plugins
echo "== config"
cat "$WORK/sluice.yaml"
.build/release/sluice run --config "$WORK/sluice.yaml" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
for _ in $(seq 1 100); do redis-cli -p "$PROXY" ping >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$CQL_PROXY") 2>/dev/null && break; sleep 0.1; done

echo "== Redis"

VALUE="written through sluice at $(date -u +%H:%M:%S)"
echo "== SET demo:greeting through sluice (port $PROXY): $(redis-cli -p "$PROXY" SET demo:greeting "$VALUE")"
echo "   GET through sluice:           $(redis-cli -p "$PROXY" GET demo:greeting)"
sleep 0.2
FROM_PRIMARY=$(redis-cli -p "$PRIMARY" GET demo:greeting)
FROM_SHADOW=$(redis-cli -p "$SHADOW" GET demo:greeting)
echo "   GET from primary ($PRIMARY) directly: $FROM_PRIMARY"
echo "   GET from shadow  ($SHADOW) directly: $FROM_SHADOW"

echo "== CQL: cqlsh through sluice (port $CQL_PROXY)"
cat >"$WORK/demo.cql" <<CQL
CREATE KEYSPACE demo WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
USE demo;
CREATE TABLE greetings (lang text PRIMARY KEY, text text, written text);
INSERT INTO greetings (lang, text, written) VALUES ('en', 'hello through sluice', '$(date -u +%H:%M:%S)');
INSERT INTO greetings (lang, text, written) VALUES ('fr', 'bonjour par sluice', '$(date -u +%H:%M:%S)');
SELECT lang, text, written FROM greetings WHERE lang IN ('en', 'fr');
CQL
sed 's/^/   cqlsh> /' "$WORK/demo.cql"
CQL_OK=0
if cqlsh 127.0.0.1 "$CQL_PROXY" -f "$WORK/demo.cql" >"$WORK/cqlsh.out" 2>&1; then CQL_OK=1; fi
cat "$WORK/cqlsh.out"
echo "   cqlsh> TRUNCATE demo.greetings;   (the chain's deny step refuses it)"
DENIED=$(cqlsh 127.0.0.1 "$CQL_PROXY" -e "TRUNCATE demo.greetings" 2>&1 || true)
echo "$DENIED" | sed 's/^/   /'
echo "   the same rows read from the backend ($CQL_BACKEND) directly:"
DIRECT=$(cqlsh 127.0.0.1 "$CQL_BACKEND" -e "SELECT lang, text FROM demo.greetings WHERE lang IN ('en', 'fr')" 2>&1 || true)
echo "$DIRECT"

echo "== sluice log"
cat "$WORK/sluice.log"
status=0
if [ "$FROM_PRIMARY" = "$VALUE" ] && [ "$FROM_SHADOW" = "$VALUE" ]; then
  echo "demo OK (Redis): the value written through Sluice is on both servers"
else
  echo "demo FAILED (Redis): the value did not reach both servers" >&2
  status=1
fi
if [ "$CQL_OK" = 1 ] && grep -q "hello through sluice" <<<"$DIRECT" && grep -q "bonjour par sluice" <<<"$DIRECT" \
   && grep -q "denied" <<<"$DENIED"; then
  echo "demo OK (CQL): the rows cqlsh wrote through Sluice are on the CQL backend, and TRUNCATE was denied"
else
  echo "demo FAILED (CQL): cqlsh through Sluice did not write the rows, or TRUNCATE was not denied" >&2
  status=1
fi
exit "$status"
