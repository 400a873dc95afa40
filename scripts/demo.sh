#!/usr/bin/env bash
# The main job on loopback: two real redis-servers, Sluice between them and a client with a tee
# chain (every write goes to both servers, answers come from the primary). A value written through
# Sluice is then read back from each server directly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "== building sluice and its plugins (release)"
bash scripts/build.sh build/plugins

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PRIMARY=$(free_port); SHADOW=$(free_port); PROXY=$(free_port)
WORK=$(mktemp -d)
cleanup() {
  [ -n "${SLUICE_PID:-}" ] && kill "$SLUICE_PID" 2>/dev/null || true
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
  require: [tee]
sinks:
  primary: { redis: { address: 127.0.0.1:$PRIMARY } }
  shadow:  { redis: { address: 127.0.0.1:$SHADOW } }
chains:
  main:
    - tee: { target: shadow, on_mismatch: log }
    - sink: primary
sources:
  - redis: { listen: 127.0.0.1:$PROXY, chain: main }
YAML

echo "== plugins offered by build/plugins"
.build/release/sluice plugins --dir build/plugins
echo "== config"
cat "$WORK/sluice.yaml"
.build/release/sluice run --config "$WORK/sluice.yaml" >"$WORK/sluice.log" 2>&1 &
SLUICE_PID=$!
for _ in $(seq 1 100); do redis-cli -p "$PROXY" ping >/dev/null 2>&1 && break; sleep 0.1; done

VALUE="written through sluice at $(date -u +%H:%M:%S)"
echo "== SET demo:greeting through sluice (port $PROXY): $(redis-cli -p "$PROXY" SET demo:greeting "$VALUE")"
echo "   GET through sluice:           $(redis-cli -p "$PROXY" GET demo:greeting)"
sleep 0.2
FROM_PRIMARY=$(redis-cli -p "$PRIMARY" GET demo:greeting)
FROM_SHADOW=$(redis-cli -p "$SHADOW" GET demo:greeting)
echo "   GET from primary ($PRIMARY) directly: $FROM_PRIMARY"
echo "   GET from shadow  ($SHADOW) directly: $FROM_SHADOW"
echo "== sluice log"
cat "$WORK/sluice.log"
if [ "$FROM_PRIMARY" = "$VALUE" ] && [ "$FROM_SHADOW" = "$VALUE" ]; then
  echo "demo OK: the value written through Sluice is on both servers"
else
  echo "demo FAILED: the value did not reach both servers" >&2
  exit 1
fi
