#!/usr/bin/env bash
# The main job: sets up everything, builds, and runs heed's test suite.
# (Until the G2P trainer lands, the main job is the proven core itself.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
cd build && ctest --output-on-failure -j "$(nproc)"
