#!/usr/bin/env bash
# Builds the host (.build/release/sluice) and every built-in transform into a plugin directory
# (default build/plugins), in release mode with the flags the benchmark figures were taken with.
#
# -enforce-exclusivity=unchecked drops the runtime's dynamic exclusivity checks from every module,
# SwiftNIO included: each event loop's state is confined to its thread by design, and on the
# proxied request path the checks cost about 5 % of the host's user time (perf, docs/performance.md).
# Package.swift sets the same flag on the host target, so a plain `swift build` differs only in NIO.
set -euo pipefail
cd "$(dirname "$0")/.."
export SWIFT_BUILD_FLAGS="-Xswiftc -enforce-exclusivity=unchecked"
# shellcheck disable=SC2086
swift build -c release --product sluice $SWIFT_BUILD_FLAGS
bash scripts/build-plugins.sh "${1:-build/plugins}"
