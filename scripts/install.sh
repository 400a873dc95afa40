#!/usr/bin/env bash
# Installs Sluice under a prefix:
#   PREFIX/bin/sluice                 the host and CLI (default: .build/release/sluice; --bin another)
#   PREFIX/share/sluice/              what `sluice new-transform` makes projects from, in the
#                                     checkout's layout: plugin-template/, the ABI header
#                                     (Sources/PluginABI) and the Swift SDK's sources (Sources/SluiceSDK)
# Usage: bash scripts/install.sh PREFIX [--bin PATH/TO/sluice]
# Plugins are built separately into a directory of your choice (scripts/build-plugins.sh DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${1:?usage: install.sh PREFIX [--bin PATH/TO/sluice]}
BIN=.build/release/sluice
if [ "${2:-}" = "--bin" ]; then BIN=${3:?--bin needs a path}; fi
[ -x "$BIN" ] || { echo "install.sh: no sluice binary at $BIN (build it: bash scripts/build.sh)" >&2; exit 1; }

SHARE="$PREFIX/share/sluice"
mkdir -p "$PREFIX/bin" "$SHARE/Sources/PluginABI/include" "$SHARE/Sources/SluiceSDK"
rm -rf "$SHARE/plugin-template" "$SHARE/Sources/SluiceSDK"/*.swift
cp -R plugin-template "$SHARE/plugin-template"
cp Sources/PluginABI/include/sluice_plugin.h "$SHARE/Sources/PluginABI/include/"
cp Sources/PluginABI/abi_layout_checks.c "$SHARE/Sources/PluginABI/"
cp Sources/SluiceSDK/*.swift "$SHARE/Sources/SluiceSDK/"
# The binary last, replaced in one rename (a running sluice keeps its old file).
temporary=$(mktemp "$PREFIX/bin/.sluice.XXXXXX")
cp "$BIN" "$temporary"
chmod 0755 "$temporary"
mv -f "$temporary" "$PREFIX/bin/sluice"
echo "installed $PREFIX/bin/sluice and $SHARE"
