#!/usr/bin/env bash
# Installs what building and testing Sluice needs, if it is missing: libyaml (the config parser),
# liblz4 and libsnappy (CQL compression), zlib (its crc32 for CQL v5 segments),
# libffi (calling plugins' control functions),
# redis-server and redis-tools (the real backends and clients of the tests), nutcracker (twemproxy)
# and haproxy (the benchmark's peers), a C compiler and make (the C plugin), openssl (the TLS tests make
# their certificates with it), and the Python clients: redis-py and pytest; for the CQL test backend
# (Tests/cql) the DataStax cassandra-driver, lz4 and python-snappy (compression), cqlsh, and
# scylla-driver in its own venv (build/venv-scylla), because it installs the same `cassandra` module
# as cassandra-driver.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

packages=(libyaml-dev liblz4-dev libsnappy-dev zlib1g-dev libffi-dev redis-server redis-tools nutcracker haproxy gcc make python3-pip openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import redis, pytest' 2>/dev/null; then
  echo "install-deps: installing the Python packages redis and pytest"
  python3 -m pip install -q redis pytest 2>/dev/null || python3 -m pip install -q --break-system-packages redis pytest
fi

# Pinned versions that work with the CQL test backend's tests.
CQL_PIP=(cassandra-driver==3.30.1 lz4==4.4.5 python-snappy==0.7.3 cqlsh==6.2.2)
if ! python3 -c 'import cassandra.cluster, lz4.block, snappy, cqlshlib' 2>/dev/null || ! command -v cqlsh >/dev/null; then
  echo "install-deps: installing ${CQL_PIP[*]}"
  python3 -m pip install -q "${CQL_PIP[@]}" 2>/dev/null || python3 -m pip install -q --break-system-packages "${CQL_PIP[@]}"
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCYLLA_VENV="$ROOT/build/venv-scylla"
if ! "$SCYLLA_VENV/bin/python" -c 'import cassandra.cluster, lz4.block, snappy' 2>/dev/null; then
  echo "install-deps: making $SCYLLA_VENV with scylla-driver==3.29.12"
  rm -rf "$SCYLLA_VENV"
  python3 -m venv "$SCYLLA_VENV"
  "$SCYLLA_VENV/bin/python" -m pip install -q scylla-driver==3.29.12 lz4==4.4.5 python-snappy==0.7.3
fi

command -v swift >/dev/null || { echo "install-deps: swift is not on PATH (Swift 6 toolchain required)" >&2; exit 1; }
