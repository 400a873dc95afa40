#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds the host and all plugins, runs the unit
# tests (swift test), then the end-to-end suite (pytest: real redis-server processes, and CQL through
# Sluice to the CQL test backend with cassandra-driver, scylla-driver and cqlsh), then the CQL test
# backend's own tests with the same drivers and no Sluice.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "== building the host and the plugins (release)"
bash scripts/build.sh build/plugins
echo "== building the test fixtures"
bash scripts/build-test-fixtures.sh build/fixtures
echo "== unit tests"
swift test
echo "== end-to-end tests (Redis and CQL through Sluice)"
python3 -m pytest -q -p no:cacheprovider Tests/e2e
echo "== CQL test backend (real drivers against Tests/cql/backend, no Sluice)"
python3 -m pytest -q -p no:cacheprovider Tests/cql
