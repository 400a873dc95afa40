#!/usr/bin/env bash
# Builds the broken, misbehaving and probing test plugins of Tests/fixtures (default build/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-build/fixtures}" && cd "${1:-build/fixtures}" && pwd)
make -s -C Tests/fixtures/plugins OUT="$OUT"
# Swift fixtures (Package.swift's swiftFixtures), built in debug: they exercise the SDK, not speed.
# Each replaced atomically (a temporary name in OUT, then mv), as scripts/build-plugins.sh does.
for product in sluice-reach-swift fixture-swift; do
  swift build --product "$product" >/dev/null
  TEMPORARY=$(mktemp "$OUT/.lib$product.so.XXXXXX")
  cp "$(swift build --show-bin-path)/lib$product.so" "$TEMPORARY"
  chmod 0755 "$TEMPORARY"
  mv -f "$TEMPORARY" "$OUT/lib$product.so"
done
echo "fixtures in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
