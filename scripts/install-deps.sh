#!/usr/bin/env bash
# Installs what building and testing Sluice needs, if it is missing: libyaml (the config parser),
# redis-server and redis-tools (the real backends and clients of the tests), nutcracker (twemproxy)
# and haproxy (the benchmark's peers), a C compiler and make (the C plugin), openssl (the TLS tests make
# their certificates with it), and the Python clients.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

packages=(libyaml-dev redis-server redis-tools nutcracker haproxy gcc make python3-pip openssl)
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

command -v swift >/dev/null || { echo "install-deps: swift is not on PATH (Swift 6 toolchain required)" >&2; exit 1; }
