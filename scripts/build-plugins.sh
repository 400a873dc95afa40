#!/usr/bin/env bash
# Builds every built-in transform into one plugin directory (default build/plugins):
# the Swift plugins (dynamic-library products of Package.swift) and the C plugins (each folder of
# Plugins/ with a Makefile: command-filter and the C catalogue).
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
for makefile in Plugins/*/Makefile; do
  make -s -C "$(dirname "$makefile")" OUT="$OUT"
done
echo "plugins in $OUT: $(cd "$OUT" && ls *.so | tr '\n' ' ')"
