#!/usr/bin/env bash
# Builds the broken and misbehaving test plugins of Tests/fixtures/plugins (default build/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-build/fixtures}" && cd "${1:-build/fixtures}" && pwd)
make -s -C Tests/fixtures/plugins OUT="$OUT"
echo "fixtures in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
