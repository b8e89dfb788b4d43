#!/usr/bin/env bash
# Trains an ensemble of G2P models from one member config, LANES of them at a time side by
# side (one OpenMP thread each, pinned to a core where taskset exists), then evaluates the
# ensemble on the test words with the config's beam search.
#
#   scripts/train_ensemble.sh configs/g2p-2h-ens.toml            # seeds 11 12 13 14, 2 lanes
#   SEEDS="1 2" LANES=1 scripts/train_ensemble.sh CONFIG
#   HEED=path/to/heed EVAL_ARGS="--split validation --beam 1" ...   (other binary, evaluation)
#   CHECKPOINT=last ...   (the members' final checkpoints instead of their validation-best)
#   REVERSE="22" ...      (these seeds' members read the phonemes right to left: [model]
#                          reverse_target = true; the evaluation then decodes both directions)
#
# Member k is trained with [train] seed = SEEDS[k] in <run_dir>/seed-<seed>/ (its config is
# written there); lane i trains members i, i + LANES, ... one after another. Logs go to
# <run_dir>/seed-<seed>.log; the ensemble's evaluation and the wall time to <run_dir>/ensemble.txt.
# Needs ./build/heed (scripts/build.sh) unless HEED names the binary. A member that fails stops its lane and the script
# exits non-zero after the other lanes finish; finished members are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:?usage: scripts/train_ensemble.sh CONFIG (SEEDS=\"11 12 13 14\" LANES=2)}"
SEEDS=(${SEEDS:-11 12 13 14})
LANES="${LANES:-2}"
HEED="${HEED:-build/heed}"
EVAL_ARGS=(${EVAL_ARGS:---split test})
REVERSE_SEEDS=(${REVERSE:-})
CHECKPOINT="${CHECKPOINT:-best}"  # which checkpoint of each member the ensemble uses: best (validation) or last
[[ -f "$CONFIG" ]] || { echo "train_ensemble: no config file '$CONFIG'" >&2; exit 2; }
[[ -x "$HEED" ]] || { echo "train_ensemble: $HEED is missing; run scripts/build.sh first" >&2; exit 2; }
[[ "$LANES" =~ ^[1-9][0-9]*$ ]] || { echo "train_ensemble: LANES must be a positive integer, got '$LANES'" >&2; exit 2; }
grep -qE '^seed = ' "$CONFIG" && grep -qE '^run_dir = ' "$CONFIG" || {
  echo "train_ensemble: $CONFIG needs 'seed = ' and 'run_dir = ' lines in [train]" >&2; exit 2; }
in_list() {  # value item...: whether value is one of the items
  local x="$1" y
  shift
  for y; do [[ "$y" == "$x" ]] && return 0; done
  return 1
}
if ((${#REVERSE_SEEDS[@]})); then
  grep -qE '^\[model\]' "$CONFIG" && ! grep -qE '^[[:space:]]*reverse_target[[:space:]]*=' "$CONFIG" || {
    echo "train_ensemble: REVERSE needs a [model] table in $CONFIG without its own reverse_target line" >&2; exit 2; }
  for r in "${REVERSE_SEEDS[@]}"; do
    in_list "$r" "${SEEDS[@]}" || {
      echo "train_ensemble: REVERSE names seed '$r', which is not in SEEDS (${SEEDS[*]}); give seeds separated by spaces" >&2; exit 2; }
  done
fi

run_dir="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["train"]["run_dir"])' "$CONFIG")"
mkdir -p "$run_dir"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
cores="$(nproc)"

lane() {  # lane index; trains SEEDS[i], SEEDS[i + LANES], ...
  local i="$1" k seed dir
  for ((k = i; k < ${#SEEDS[@]}; k += LANES)); do
    seed="${SEEDS[k]}"
    dir="$run_dir/seed-$seed"
    mkdir -p "$dir"
    local reverse=()
    in_list "$seed" "${REVERSE_SEEDS[@]}" && reverse=(-e '/^\[model\]/a reverse_target = true')  # GNU sed's one-line 'a'
    sed -E -e "s|^seed = [0-9]+|seed = $seed|" -e "s|^run_dir = \"[^\"]*\"|run_dir = \"$dir\"|" "${reverse[@]}" "$CONFIG" > "$dir.toml"
    local pin=()
    command -v taskset > /dev/null && ((LANES <= cores)) && pin=(taskset -c "$((i % cores))")
    echo "[ensemble] lane $i: member seed $seed -> $dir ($(date -u +%H:%M:%S))"
    if ! "${pin[@]}" "$HEED" train --config "$dir.toml" --overwrite --quiet > "$dir.log" 2>&1; then
      echo "[ensemble] lane $i: member seed $seed failed; see $dir.log" >&2
      return 1
    fi
    echo "[ensemble] lane $i: member seed $seed done ($(date -u +%H:%M:%S)): $(grep -m 1 -E '^(stopped|ended)' "$dir.log" || tail -n 1 "$dir.log")"
  done
}

start=$(date +%s)
pids=()
for ((i = 0; i < LANES; ++i)); do lane "$i" & pids+=($!); done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
minutes=$(python3 -c "print(f'{($(date +%s) - $start) / 60:.1f}')")
echo "[ensemble] ${#SEEDS[@]} members trained in $minutes minutes of wall time"
((status == 0)) || { echo "[ensemble] a member failed; no ensemble evaluation" >&2; exit 1; }

models=()
for seed in "${SEEDS[@]}"; do models+=(--model "$run_dir/seed-$seed/checkpoints/$CHECKPOINT"); done
unset OMP_NUM_THREADS
{
  echo "members: ${SEEDS[*]} (config $CONFIG, $LANES lanes; right to left: ${REVERSE_SEEDS[*]:-none}; checkpoints: $CHECKPOINT), training wall time $minutes minutes"
  "$HEED" eval "${models[@]}" "${EVAL_ARGS[@]}" --quiet
} | tee "$run_dir/ensemble.txt"
