#!/usr/bin/env bash
# Builds every built-in transform into one plugin directory (default build/plugins):
# the Swift plugins (dynamic-library products of Package.swift) and the C plugins (each folder of
# Plugins/ with a Makefile: command-filter and the C catalogue), and protect, a Swift package of its
# own (Plugins/protect: it depends on swift-crypto, which the root package, and so `swift test`,
# never builds; its build directory is Plugins/protect/.build).
#
# Every .so is replaced atomically: written under a temporary name in the plugin directory, then
# renamed over the old file. A Sluice serving from the directory keeps running the code it loaded
# (it runs private copies, see docs/architecture.md), and nothing ever reads a half-written plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(mkdir -p "${1:-build/plugins}" && cd "${1:-build/plugins}" && pwd)

# install_atomically FILE DIR: DIR/basename(FILE) becomes a copy of FILE in one rename.
install_atomically() {
  local name temporary
  name=$(basename "$1")
  temporary=$(mktemp "$2/.$name.XXXXXX")
  cp "$1" "$temporary"
  chmod 0755 "$temporary"
  mv -f "$temporary" "$2/$name"
}

SWIFT_PLUGINS=(sluice-tee sluice-redirect sluice-debug-printer)
for product in "${SWIFT_PLUGINS[@]}"; do
  swift build -c release --product "$product" ${SWIFT_BUILD_FLAGS:-}
done
BIN=$(swift build -c release --show-bin-path ${SWIFT_BUILD_FLAGS:-})
for product in "${SWIFT_PLUGINS[@]}"; do
  install_atomically "$BIN/lib$product.so" "$OUT"
done
swift build -c release --package-path Plugins/protect --product sluice-protect ${SWIFT_BUILD_FLAGS:-}
install_atomically "$(swift build -c release --package-path Plugins/protect --show-bin-path)/libsluice-protect.so" "$OUT"
# The C plugins are linked in a staging directory inside OUT (same file system), then moved in.
STAGE=$(mktemp -d "$OUT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
for makefile in Plugins/*/Makefile; do
  make -s -C "$(dirname "$makefile")" OUT="$STAGE"
done
for built in "$STAGE"/*.so; do
  install_atomically "$built" "$OUT"
done
echo "plugins in $OUT: $(cd "$OUT" && ls *.so | tr '\n' ' ')"
