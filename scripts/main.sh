#!/usr/bin/env bash
# The main job: installs what is missing, fetches CMUdict, builds heed, trains the small
# G2P Transformer (configs/g2p-small.toml: about 10 minutes on this machine's cores), then
# prints its test WER/PER and a few predictions. Each run starts the training afresh.
# CONFIG=path overrides the config (e.g. CONFIG=configs/g2p-full.toml for the long run).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${CONFIG:-configs/g2p-small.toml}"
# Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with anything
# else, spinning threads steal the cores and slowed training 8x in our measurements.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

scripts/deps.sh
scripts/fetch_data.sh
scripts/build.sh

run_dir="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["train"]["run_dir"])' "$CONFIG")"
best="$run_dir/checkpoints/best"

echo "[main] training $CONFIG (run directory $run_dir)"
./build/heed train --config "$CONFIG" --overwrite

echo "[main] test set (beam search as configured)"
./build/heed eval --model "$best" --split test

echo "[main] a few predictions (3-best with scores)"
./build/heed predict --model "$best" --nbest 3 hello world transformer phoneme quixotic nguyen
