#!/usr/bin/env bash
# Runs Redis's own Tcl test suite (the `runtest` of Debian's redis source package, the version of the
# installed redis-server) in external-server mode, unit by unit, once straight against a scratch
# redis-server and once through Sluice in front of the same server, and prints per unit how many
# tests passed, failed and whether the unit was aborted by an exception (which hides the unit's later
# tests, so everything is counted per unit), then every test that passes directly but not through
# Sluice. A long run (about 12 minutes per mode on 2 cores); not part of scripts/test.sh.
#
# Modes (MODES, run in this order, each against the same backend):
#   direct       runtest -> redis-server
#   passthrough  runtest -> sluice (chains: main: [ - sink: primary ]) -> redis-server
#   transforms   runtest -> sluice (deny of a command nobody sends, count, redirect of keys nobody
#                uses, tee to a second redis-server with on_mismatch: ignore) -> redis-server
#
# Between units the backends are put back as they were when started: every setting CONFIG GET *
# lists, plus the hidden ones (rdb-key-save-delay, key-load-delay…), the default user's ACL, other
# ACL users, functions, scripts, data, client pause and active expiry. Units change these and
# external mode does not undo all of it.
#
# Usage: scripts/redis-test-suite.sh
#   env MODES="direct passthrough transforms"   UNITS="type/string keyspace …" (default: the data-path units below)
#       SLUICE_BIN, SLUICE_PLUGINS  (default: build both from this checkout with scripts/build.sh)
#       OUT=build/redis-test-suite  REDIS_SRC=build/redis-src  UNIT_TIMEOUT=900 (seconds per unit)
#       TEST_TIMEOUT=120 (runtest --timeout)  DURABLE=1 (runtest --durable)  THREADS=2 (sluice --threads)
# Results: $OUT/MODE/UNIT.out (runtest's output), $OUT/MODE/notes.txt (what was restored), $OUT/summary.md.
# `scripts/redis-test-suite.sh --summary` prints the table of the results in $OUT again.
# Needs root or sudo the first time (a deb-src entry, `apt-get source redis`, tcl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# The data-path units of Redis 7.0's suite that run tests in external mode (auth, acl, info, limits,
# maxmemory and pubsubshard skip all of theirs there; the replication, persistence and cluster
# units need servers of their own).
DEFAULT_UNITS="type/string type/incr type/list type/list-2 type/list-3 type/set type/zset type/hash
  type/stream type/stream-cgroups keyspace scan expire sort multi pubsub scripting functions bitops
  bitfield geo hyperloglog dump info-command protocol quit other tracking introspection
  introspection-2 latency-monitor slowlog querybuf lazyfree"
MODES=${MODES:-direct passthrough}
UNITS=${UNITS:-$DEFAULT_UNITS}
OUT=${OUT:-$ROOT/build/redis-test-suite}
REDIS_SRC=${REDIS_SRC:-$ROOT/build/redis-src}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-900}
# runtest gives up on a unit whose test made no progress for this long (a reply that never comes);
# the slowest single tests here take about 60 s.
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
# Sluice's event loops. Two, so that clients land on different loops as they do in production on
# more cores: the order in which two clients' requests reach Redis is then not their write order.
THREADS=${THREADS:-2}
# DURABLE=1 (default): runtest --durable, so an error raised inside a test (SYNC refused, say)
# fails that test and the unit goes on; DURABLE=0 lets it abort the unit, as a plain runtest does.
DURABLE=${DURABLE:-1}
# Left out in external mode whatever the endpoint: replication and persistence need servers of their
# own (the issue's choice).
DENY_TAGS="-needs:repl -needs:save"
# Tests that cannot run in external mode whatever the endpoint but are not tagged external:skip:
# each raises an exception (aborting the rest of its unit) even straight against redis-server.
SKIP_TESTS=(
  "SRANDMEMBER with a dict containing long chain"   # reads the server's pid (get_child_pid)
)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# --- the table ----------------------------------------------------------------------------------------
summarize() {
  python3 - "$OUT" "$UNITS" <<'PY'
import collections, os, re, sys
out, units = sys.argv[1], sys.argv[2].split()
modes = [m for m in ("direct", "passthrough", "transforms") if os.path.isdir(os.path.join(out, m))]
def parse(mode, unit):
    """ok / failed (assertion) / raised (an error inside a test, counted as a failure by --durable)
    per test name, and the exception that aborted the unit, if one did."""
    path = os.path.join(out, mode, unit.replace("/", "_") + ".out")
    if not os.path.exists(path):
        return None
    ok, failed, raised, why = collections.Counter(), collections.Counter(), collections.Counter(), {}
    aborted, skipped, block = None, 0, None
    def close(block):
        if block:
            name, detail = block[0], block[1:]
            text = "\n".join(detail)
            is_raised = "while executing" in text or "invoked from within" in text
            (raised if is_raised else failed)[name] += 1
            # The message: the lines up to the Tcl stack trace of a raised error.
            message = " ".join(l.strip() for l in text.split("    while executing")[0].splitlines())
            why.setdefault(name, message.strip()[:200])
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("["):
            close(block); block = None
        if line.startswith("[ok]: "):
            ok[re.sub(r" \(\d+ ms\)$", "", line[6:])] += 1
        elif line.startswith("[err]: "):
            block = [re.sub(r" in tests/\S+$", "", line[7:])]
        elif line.startswith("[exception]: "):
            aborted = line[13:][:200]
        elif line.startswith("[TIMEOUT]"):
            aborted = "timed out (no progress for TEST_TIMEOUT seconds)"
        elif aborted and aborted.startswith("timed out") and "(IN PROGRESS)" in line:
            aborted = "timed out in: " + line.split("(IN PROGRESS)", 1)[1].strip()
        elif line.startswith(("[ignore]: ", "[skip]: ")):
            skipped += 1
        elif block is not None:
            block.append(line)
    close(block)
    rc_path = path[:-4] + ".rc"
    rc = open(rc_path).read().split()[0] if os.path.exists(rc_path) else "unfinished"
    return dict(ok=ok, failed=failed, raised=raised, why=why, aborted=aborted, skipped=skipped,
                timeout=(rc == "124"), rc=rc)
results = {m: {u: parse(m, u) for u in units} for m in modes}
def counts(r):
    return [sum(r["ok"].values()), sum(r["failed"].values()),
            sum(r["raised"].values()) + (1 if r["aborted"] else 0)]
def cell(r):
    if r is None: return "–"
    s = " / ".join(map(str, counts(r)))
    return s + (" (timeout)" if r["timeout"] else " (aborted)" if r["aborted"] else "")
lines = ["| unit | " + " | ".join(f"{m}: passed / failed / exceptions" for m in modes) + " |",
         "|---|" + "---|" * len(modes)]
totals = {m: [0, 0, 0] for m in modes}
for u in units:
    lines.append(f"| {u} | " + " | ".join(cell(results[m][u]) for m in modes) + " |")
    for m in modes:
        if results[m][u]:
            totals[m] = [a + b for a, b in zip(totals[m], counts(results[m][u]))]
lines.append("| **total** | " + " | ".join("**" + " / ".join(map(str, t)) + "**" for t in totals.values()) + " |")
report = ["\n".join(lines), ""]
for m in (m for m in modes if m != "direct" and "direct" in modes):
    report.append(f"Passed directly, not {m}:")
    found = False
    for u in units:
        d, s = results["direct"][u], results[m][u]
        if not d or not s: continue
        unreached = 0
        for name, n in (d["ok"] - s["ok"]).items():
            if name in s["why"]:
                why = ("raised: " if name in s["raised"] else "failed: ") + s["why"][name]
            elif s["aborted"] or s["timeout"] or s["rc"] == "unfinished":
                unreached += n
                continue
            else:
                why = "not run"
            report.append(f"  {u}: {name}" + (f" (x{n})" if n > 1 else "") + f" -- {why}")
            found = True
        if s["aborted"] and not d["aborted"]:
            report.append(f"  {u}: UNIT ABORTED: {s['aborted']}"); found = True
        if unreached:
            report.append(f"  {u}: {unreached} more not reached (unit aborted, timed out or unfinished)")
    if not found: report.append("  (none)")
    report.append("")
text = "\n".join(report)
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
PY
}
if [ "${1:-}" = --summary ]; then summarize; exit 0; fi

# --- the suite: Debian's source package of the installed redis-server -------------------------------
command -v redis-server >/dev/null || { echo "redis-server is not installed (scripts/install-deps.sh)" >&2; exit 2; }
command -v tclsh >/dev/null || apt_install tcl
command -v dpkg-source >/dev/null || apt_install dpkg-dev
deb_version=$(dpkg-query -W -f='${source:Version}' redis-server)     # 5:7.0.15-1~deb12u10
upstream=${deb_version#*:}; upstream=${upstream%-*}                  # 7.0.15
SUITE=$REDIS_SRC/redis-$upstream
if [ "$(cat "$REDIS_SRC/.version" 2>/dev/null)" != "$deb_version" ] || [ ! -x "$SUITE/runtest" ]; then
  if ! apt-cache showsrc redis 2>/dev/null | grep -qx "Version: $deb_version"; then
    # A deb-src twin of every Debian deb entry (deb822 .sources paragraphs and one-line .list lines).
    echo "== adding deb-src entries for Debian's archives"
    {
      for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; ORS = "\n\n" } /debian\.org/ && /Types:[^\n]*deb/ {
               sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f"
      done
    } | $SUDO tee /etc/apt/sources.list.d/sluice-deb-src.sources >/dev/null
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      grep -E '^deb .*debian\.org' "$f" | sed 's/^deb /deb-src /' || true
    done | $SUDO tee /etc/apt/sources.list.d/sluice-deb-src.list >/dev/null
    $SUDO apt-get update -qq
  fi
  echo "== apt-get source redis=$deb_version into $REDIS_SRC"
  rm -rf "$SUITE"; mkdir -p "$REDIS_SRC"
  (cd "$REDIS_SRC" && apt-get source -qq "redis=$deb_version" >/dev/null)
  echo "$deb_version" >"$REDIS_SRC/.version"
fi
# runtest starts src/redis-server (and the cli, benchmark, check tools) from the source tree.
for b in redis-server redis-cli redis-benchmark redis-check-aof redis-check-rdb redis-sentinel; do
  if command -v "$b" >/dev/null; then ln -sf "$(command -v "$b")" "$SUITE/src/$b"; fi
done

# --- Sluice -------------------------------------------------------------------------------------------
if [[ " $MODES " != *" passthrough "* && " $MODES " != *" transforms "* ]]; then
  :
elif [ -z "${SLUICE_BIN:-}" ]; then
  echo "== building sluice and the plugins (scripts/build.sh)"
  bash scripts/build.sh build/plugins >/dev/null
  SLUICE_BIN=$ROOT/.build/release/sluice
  SLUICE_PLUGINS=${SLUICE_PLUGINS:-$ROOT/build/plugins}
fi
SLUICE_PLUGINS=${SLUICE_PLUGINS:-$ROOT/build/plugins}

# --- scratch processes --------------------------------------------------------------------------------
W=$(mktemp -d /tmp/sluice-redis-suite.XXXXXX)   # backends' --dir: outside the repository
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for_port() {  # PORT PID
  for _ in $(seq 1 200); do
    if ! kill -0 "$2" 2>/dev/null; then return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

declare -A REDIS_PID
start_redis() {  # NAME PORT
  mkdir -p "$W/$1"
  redis-server --port "$2" --bind 127.0.0.1 --dir "$W/$1" --enable-debug-command yes \
    --logfile "$W/$1/redis.log" --daemonize no &
  REDIS_PID[$1]=$!; pids+=("$!")
  wait_for_port "$2" "$!" || { echo "redis-server $1 did not start" >&2; cat "$W/$1/redis.log" >&2; exit 1; }
}

# Backend state: `snapshot PORT FILE` records it, `restore PORT FILE` puts it back and prints what it
# had to change (settings a unit left behind) and what it could not.
state() {
  python3 - "$@" <<'PY'
import json, sys, redis
action, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30, decode_responses=True)
HIDDEN = ["rdb-key-save-delay", "key-load-delay", "watchdog-period",
          "loading-process-events-interval-bytes", "use-exit-on-panic", "lua-enable-deprecated-api"]
def settings():
    found = dict(r.config_get("*"))
    for name in HIDDEN:
        found.update(r.config_get(name))
    return {k: v for k, v in found.items()}
def default_user():
    return next(line for line in r.acl_list() if line.startswith("user default "))
if action == "snapshot":
    json.dump({"config": settings(), "default_user": default_user()}, open(path, "w"))
    sys.exit(0)
saved = json.load(open(path))
changed, failed = [], []
r.execute_command("CLIENT", "UNPAUSE")
for name, value in saved["config"].items():
    now = r.config_get(name).get(name)
    if now != value:
        try:
            r.config_set(name, value)
            changed.append(f"{name}={now!r}->{value!r}")
        except redis.ResponseError as e:
            failed.append(f"{name}: {e}")
for user in r.acl_users():
    if user != "default":
        r.acl_deluser(user); changed.append(f"acl user {user} deleted")
if default_user() != saved["default_user"]:
    rules = saved["default_user"].split()[2:]
    r.execute_command("ACL", "SETUSER", "default", "reset", *rules); changed.append("acl default user")
r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")
r.execute_command("FUNCTION", "FLUSH")
r.execute_command("SCRIPT", "FLUSH")
r.flushall()
left = [k for k, v in saved["config"].items() if r.config_get(k).get(k) != v]
if changed: print("restored: " + "; ".join(changed))
if failed or left: print("NOT restored: " + "; ".join(failed + left))
PY
}

# A private copy of the binary and the plugins: a rebuild that rewrites a loaded .so in place while
# the run goes on (cp onto the same file) would crash the running process (seen: SIGSEGV at address 0).
if [ -n "${SLUICE_BIN:-}" ]; then
  mkdir -p "$W/bin" "$W/plugins"
  cp "$SLUICE_BIN" "$W/bin/sluice"
  cp "$SLUICE_PLUGINS"/*.so "$W/plugins/" 2>/dev/null || true
  SLUICE_BUILT=$(date -u -r "$SLUICE_BIN" +%FT%TZ)
  SLUICE_ORIGIN=$SLUICE_BIN; SLUICE_BIN=$W/bin/sluice; SLUICE_PLUGINS=$W/plugins
fi

BACKEND=$(free_port); SHADOW=$(free_port)
start_redis backend "$BACKEND"
state snapshot "$BACKEND" "$W/backend.state"
backends=(backend:"$BACKEND")
if [[ " $MODES " == *" transforms "* ]]; then
  start_redis shadow "$SHADOW"
  state snapshot "$SHADOW" "$W/shadow.state"
  backends+=(shadow:"$SHADOW")
fi

SLUICE_PID=""
start_sluice() {  # MODE CONFIG LOG -> sets TARGET
  local port; port=$(free_port)
  sed "s/{PORT}/$port/" "$2" >"$W/sluice.yaml"
  "$SLUICE_BIN" run --config "$W/sluice.yaml" --threads "$THREADS" >>"$3" 2>&1 &
  SLUICE_PID=$!; pids+=("$!")
  wait_for_port "$port" "$SLUICE_PID" || { echo "sluice did not start:" >&2; tail -20 "$3" >&2; exit 1; }
  TARGET=$port
}
write_config() {  # MODE FILE
  if [ "$1" = passthrough ]; then
    cat >"$2" <<YAML
sinks:
  primary: { redis: { address: 127.0.0.1:$BACKEND } }
chains:
  main:
    - sink: primary
sources:
  - redis: { listen: 127.0.0.1:{PORT}, chain: main }
YAML
  else
    cat >"$2" <<YAML
plugins:
  directory: $SLUICE_PLUGINS
  require: [command-filter, redirect, tee]
sinks:
  primary: { redis: { address: 127.0.0.1:$BACKEND } }
  hot: { redis: { address: 127.0.0.1:$BACKEND } }
  shadow: { redis: { address: 127.0.0.1:$SHADOW } }
chains:
  main:
    - deny: { commands: [SLUICE-SUITE-NEVER-SENT] }
    - count: {}
    - redirect: { target: hot, patterns: ["sluice-suite-hot:*"] }
    - tee: { target: shadow, on_mismatch: ignore }
    - sink: primary
sources:
  - redis: { listen: 127.0.0.1:{PORT}, chain: main }
YAML
  fi
}

skip_args=()
if [ "$DURABLE" = 1 ]; then skip_args+=(--durable); fi
for t in "${SKIP_TESTS[@]}"; do skip_args+=(--skiptest "$t"); done
BASEPORT=$((30000 + RANDOM % 20000))  # runtest's own test-server port; away from other runs

for mode in $MODES; do
  dir=$OUT/$mode
  rm -rf "$dir"; mkdir -p "$dir"
  {
    echo "mode: $mode"
    echo "date: $(date -u +%FT%TZ)"
    echo "redis: $(redis-server --version)"
    echo "suite: Debian redis $deb_version"
    if [ "$mode" != direct ]; then
      echo "sluice: $SLUICE_ORIGIN, $("$SLUICE_BIN" --version), built $SLUICE_BUILT"
      echo "its checkout's HEAD at run time: $(git -C "$(dirname "$SLUICE_ORIGIN")" log -1 --format='%h %cI' 2>/dev/null || echo '?')"
    fi
  } >"$dir/run.txt"
  TARGET=$BACKEND
  if [ "$mode" != direct ]; then
    write_config "$mode" "$W/$mode.yaml"
    cp "$W/$mode.yaml" "$dir/sluice.yaml"
    start_sluice "$mode" "$W/$mode.yaml" "$dir/sluice.log"
  fi
  echo "== $mode (port $TARGET)"
  for unit in $UNITS; do
    name=${unit//\//_}
    for b in "${backends[@]}"; do
      bname=${b%%:*}; bport=${b##*:}
      if ! kill -0 "${REDIS_PID[$bname]}" 2>/dev/null; then
        echo "   $bname redis-server had died; restarted" | tee -a "$dir/notes.txt"
        start_redis "$bname" "$bport"
      fi
      note=$(state restore "$bport" "$W/$bname.state") || note="restore failed"
      [ -z "$note" ] || echo "before $unit: $bname $note" >>"$dir/notes.txt"
    done
    if [ "$mode" != direct ] && ! kill -0 "$SLUICE_PID" 2>/dev/null; then
      echo "   SLUICE DIED before $unit; restarted" | tee -a "$dir/notes.txt"
      start_sluice "$mode" "$W/$mode.yaml" "$dir/sluice.log"
    fi
    start=$(date +%s)
    rc=0
    (cd "$SUITE" && TERM=dumb timeout "$UNIT_TIMEOUT" ./runtest --host 127.0.0.1 --port "$TARGET" \
      --single "unit/$unit" --tags "$DENY_TAGS" "${skip_args[@]}" --baseport "$BASEPORT" --timeout "$TEST_TIMEOUT" \
      >"$dir/$name.out" 2>&1) || rc=$?
    echo "$rc $(( $(date +%s) - start ))" >"$dir/$name.rc"
    printf '   %-22s rc=%-3s %4ss  ok=%-4s err=%-3s exception=%s\n' "$unit" "$rc" "$(( $(date +%s) - start ))" \
      "$(grep -c '^\[ok\]' "$dir/$name.out" || true)" "$(grep -c '^\[err\]' "$dir/$name.out" || true)" \
      "$(grep -c '^\[exception\]' "$dir/$name.out" || true)"
  done
  if [ "$mode" != direct ]; then
    kill "$SLUICE_PID" 2>/dev/null || true; wait "$SLUICE_PID" 2>/dev/null || true
  fi
done

summarize
