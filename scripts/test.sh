#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every test with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/fetch_data.sh
scripts/build.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # idle OpenMP threads sleep: ctest runs two test processes on two cores
cd build && ctest --output-on-failure -j "$(nproc)" --timeout 600
