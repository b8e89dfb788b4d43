#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/fetch_data.sh
scripts/build.sh
cd build && ctest --output-on-failure -j "$(nproc)" --timeout 600
