#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds the host and all plugins, runs the unit
# tests (swift test), then the end-to-end suite (pytest) against real redis-server processes, then
# the CQL test backend's own tests with real drivers (cassandra-driver, scylla-driver, cqlsh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "== building the host and the plugins (release)"
bash scripts/build.sh build/plugins
echo "== building the test fixtures"
bash scripts/build-test-fixtures.sh build/fixtures
echo "== unit tests"
swift test
echo "== end-to-end tests"
python3 -m pytest -q -p no:cacheprovider Tests/e2e
echo "== CQL test backend (real drivers against Tests/cql/backend, no Sluice)"
python3 -m pytest -q -p no:cacheprovider Tests/cql
