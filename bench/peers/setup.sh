#!/usr/bin/env bash
# Installs PyTorch for heed's side-by-side peer benchmarks (bench/peers/*.py).
# A by-hand step, never run in CI. Prints the torch version and build it ends up with.
#
# Order of preference:
#   1. the current torch release from PyPI into a virtual environment at build/peers-venv
#      (PyPI has no CPU-only Linux wheel: the default wheel pulls several GB of CUDA packages);
#   2. the same into the system Python when a venv cannot be made;
#   3. Debian's python3-torch (1.13, much older) through apt when the PyPI wheel will not load.
# Environment: HEED_TORCH_SPEC (default "torch") picks the pip requirement, e.g. "torch==2.15.0".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/build/peers-venv"
spec="${HEED_TORCH_SPEC:-torch}"
py_sys="${PYTHON:-python3}"

say() { printf '[peers/setup] %s\n' "$*" >&2; }

check_torch() {
  "$1" - <<'PY'
import torch
x = torch.randn(64, 64)
assert torch.allclose((x @ torch.eye(64)), x)
import re
cfg = torch.__config__.show()
blas = re.findall(r"(BLAS_INFO=[^,]*|USE_MKLDNN=[^,]*|USE_OPENMP=[^,]*)", cfg)
print(f"torch {torch.__version__} from {torch.__file__}")
print(f"  cuda build: {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
print(f"  cpu capability: {torch.backends.cpu.get_cpu_capability()}")
print(f"  {', '.join(blas)}")
print(f"  mkldnn: {torch.backends.mkldnn.is_available()}, openmp: {torch.backends.openmp.is_available()}")
PY
}

python_bin=""
if [[ -x "$venv/bin/python" ]] || "$py_sys" -m venv "$venv" 2>/dev/null; then
  python_bin="$venv/bin/python"
  say "virtual environment: $venv"
else
  say "could not make a venv (Debian needs python3-venv: apt-get install python3-venv); trying that"
  if command -v apt-get >/dev/null && apt-get install -y python3-venv >/dev/null 2>&1 && "$py_sys" -m venv "$venv"; then
    python_bin="$venv/bin/python"
  else
    say "no venv possible: installing into the system Python ($py_sys)"
    python_bin="$(command -v "$py_sys")"
  fi
fi

if check_torch "$python_bin" 2>/dev/null; then
  say "torch already usable; nothing to install"
  exit 0
fi

say "installing '$spec' from PyPI (several GB with its CUDA dependencies)"
start=$(date +%s)
if "$python_bin" -m pip install --upgrade pip >/dev/null 2>&1 && "$python_bin" -m pip install "$spec" numpy; then
  say "pip install took $(( $(date +%s) - start )) s"
  if check_torch "$python_bin"; then
    exit 0
  fi
  say "the PyPI wheel installed but does not load"
else
  say "pip install failed"
fi

say "falling back to Debian's python3-torch (1.13): an old release without the fused CPU attention"
apt-get update >/dev/null
apt-get install -y python3-torch
check_torch /usr/bin/python3
say "use /usr/bin/python3 to run the peer scripts (compare.py --python /usr/bin/python3)"
