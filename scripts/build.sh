#!/usr/bin/env bash
# Configures and builds heed (Release) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > build/configure.log 2>&1 || { cat build/configure.log; exit 1; }
cmake --build build -j "$(nproc)" > build/build.log 2>&1 || { tail -n 80 build/build.log; exit 1; }
tail -n 1 build/build.log
