#!/usr/bin/env bash
# Builds every built-in transform into one plugin directory (default build/plugins):
# the Swift plugins (dynamic-library products of Package.swift) and the C plugin (its own Makefile).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-build/plugins}" && cd "${1:-build/plugins}" && pwd)

SWIFT_PLUGINS=(sluice-tee sluice-redirect sluice-debug-printer)
for product in "${SWIFT_PLUGINS[@]}"; do
  swift build -c release --product "$product" ${SWIFT_BUILD_FLAGS:-}
done
BIN=$(swift build -c release --show-bin-path ${SWIFT_BUILD_FLAGS:-})
for product in "${SWIFT_PLUGINS[@]}"; do
  cp "$BIN/lib$product.so" "$OUT/"
done
make -s -C Plugins/command-filter OUT="$OUT"
echo "plugins in $OUT: $(cd "$OUT" && ls *.so | tr '\n' ' ')"
