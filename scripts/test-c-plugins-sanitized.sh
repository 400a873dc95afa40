#!/usr/bin/env bash
# Runs the e2e tests of the C plugins (command-filter's deny, the C catalogue) with every C plugin
# built with AddressSanitizer and UndefinedBehaviorSanitizer, loaded into an uninstrumented host
# with the sanitizer runtimes preloaded. Any report aborts the host (the report is in the host's
# log, next to the test's config), which fails the tests. A heap overflow planted in null-sink was
# caught this way (SUMMARY: AddressSanitizer: heap-buffer-overflow … null_sink.c in
# null_sink_on_requests).
#
# Usage: scripts/test-c-plugins-sanitized.sh [pytest args]
#   SLUICE_BIN (default .build/release/sluice) and the Swift plugins of SWIFT_PLUGINS (default
#   build/plugins) are used as they are; only the C plugins are rebuilt, into a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HOST=${SLUICE_BIN:-$ROOT/.build/release/sluice}
SWIFT_PLUGINS=${SWIFT_PLUGINS:-$ROOT/build/plugins}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/plugins"
cp "$SWIFT_PLUGINS"/libsluice-{tee,redirect,debug-printer}.so "$W/plugins/"
for makefile in Plugins/*/Makefile; do
  make -s -C "$(dirname "$makefile")" OUT="$W/plugins" \
    CFLAGS="-std=c99 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Wall -Wextra -Werror"
done
cat >"$W/sluice" <<WRAPPER
#!/bin/sh
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
exec "$HOST" "\$@"
WRAPPER
chmod +x "$W/sluice"
SLUICE_BIN="$W/sluice" SLUICE_PLUGINS="$W/plugins" python3 -m pytest -q -p no:cacheprovider \
  Tests/e2e/test_catalogue.py Tests/e2e/test_transform_promises.py "$@"
