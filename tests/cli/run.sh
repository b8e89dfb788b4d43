#!/usr/bin/env bash
# The heed command line end to end on a tiny model: train a few updates on 200 CMUdict
# words, then predict, eval (one model and an ensemble), and every user error the CLI
# promises one clear line and a non-zero exit for. Usage: run.sh HEED_BINARY REPO_DIR.
# Exit 77 (CTest: skipped) when CMUdict has not been fetched (scripts/fetch_data.sh).
set -uo pipefail
heed=$1
repo=$2
dict="$repo/data/cmudict/cmudict.dict"
[[ -f $dict ]] || { echo "skipped: $dict not fetched"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
failures=0

# expect_ok NAME CMD...: the command succeeds.
expect_ok() {
  local name=$1; shift
  "$@" > "$work/out" 2> "$work/err"
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "FAIL $name: exit $rc (expected 0)"; cat "$work/err"; failures=$((failures + 1))
  fi
}
# expect_error NAME PATTERN CMD...: the command fails with exit 1 (not a crash), and its
# stderr is one 'heed: error: ...' line matching PATTERN (extended regex).
expect_error() {
  local name=$1 pattern=$2; shift 2
  "$@" > "$work/out" 2> "$work/err"
  local rc=$?
  local lines
  lines=$(wc -l < "$work/err")
  if [[ $rc -ne 1 ]] || [[ $lines -ne 1 ]] || ! grep -Eq "^heed: error: .*$pattern" "$work/err"; then
    echo "FAIL $name: exit $rc, $lines stderr line(s), expected exit 1 and one line matching '$pattern':"
    cat "$work/err"; failures=$((failures + 1))
  fi
}

cat > "$work/tiny.toml" <<TOML
[data]
cmudict = "$dict"
max_train_words = 200
max_valid_words = 40
[model]
d_model = 32
heads = 2
encoder_layers = 1
decoder_layers = 1
ff_width = 64
max_len = 48
[optimizer]
name = "adam"
lr = 1e-3
[train]
run_dir = "$work/run"
seed = 3
batch_size = 32
max_steps = 12
log_every = 4
checkpoint_every = 6
[decode]
beam_size = 3
max_len = 40
TOML
ckpt="$work/run/checkpoints/last"

expect_ok train "$heed" train --config "$work/tiny.toml" --quiet
[[ -f $ckpt/model.safetensors && -f $ckpt/config.json ]] || { echo "FAIL train: no checkpoint at $ckpt"; failures=$((failures + 1)); }
grep -q '"event":"epoch"' "$work/run/train.jsonl" || { echo "FAIL train: no epoch record in train.jsonl"; failures=$((failures + 1)); }

expect_ok predict "$heed" predict --model "$ckpt" --nbest 2 hello
[[ $(grep -c $'^hello\t' "$work/out") -eq 2 ]] || { echo "FAIL predict: expected 2 'hello<TAB>...' lines:"; cat "$work/out"; failures=$((failures + 1)); }
printf 'hello  world\n\ntale\r\n' > "$work/words"
expect_ok predict_stdin "$heed" predict --model "$ckpt" < "$work/words"
[[ $(wc -l < "$work/out") -eq 3 ]] || { echo "FAIL predict_stdin: expected 3 lines:"; cat "$work/out"; failures=$((failures + 1)); }
expect_ok eval "$heed" eval --model "$ckpt" --split validation --beam 1 --quiet
grep -Eq '^validation: WER [0-9.]+% PER [0-9.]+%' "$work/out" || { echo "FAIL eval: no WER/PER line:"; cat "$work/out"; failures=$((failures + 1)); }
expect_ok eval_ensemble "$heed" eval --model "$ckpt" --model "$ckpt" --split validation --beam 1 --quiet
grep -q 'ensemble of 2 models' "$work/out" || { echo "FAIL eval_ensemble:"; cat "$work/out"; failures=$((failures + 1)); }

# scripts/train_ensemble.sh: two members from one config, side by side, then their ensemble.
sed 's|^run_dir = .*|run_dir = "'"$work"'/ens"|' "$work/tiny.toml" > "$work/ens.toml"
SEEDS="5 6" LANES=2 HEED="$heed" EVAL_ARGS="--split validation --beam 1" \
  "$repo/scripts/train_ensemble.sh" "$work/ens.toml" > "$work/out" 2> "$work/err" \
  || { echo "FAIL train_ensemble: exit $?"; cat "$work/out" "$work/err"; failures=$((failures + 1)); }
for s in 5 6; do
  grep -q "^seed = $s\$" "$work/ens/seed-$s.toml" && [[ -f $work/ens/seed-$s/checkpoints/best/model.safetensors ]] \
    || { echo "FAIL train_ensemble: member seed $s has no config with its seed or no best checkpoint"; failures=$((failures + 1)); }
done
first_loss() { grep -m 1 '"event":"step"' "$1" | grep -o '"loss":[^,]*'; }
[[ -n $(first_loss "$work/ens/seed-5/train.jsonl") && $(first_loss "$work/ens/seed-5/train.jsonl") != $(first_loss "$work/ens/seed-6/train.jsonl") ]] \
  || { echo "FAIL train_ensemble: the two seeds' first losses should differ"; failures=$((failures + 1)); }
grep -Eq '^validation: WER [0-9.]+% PER [0-9.]+% .*ensemble of 2 models' "$work/ens/ensemble.txt" \
  || { echo "FAIL train_ensemble: no ensemble result in ensemble.txt:"; cat "$work/ens/ensemble.txt"; failures=$((failures + 1)); }

# User errors: one clear line, exit 1.
expect_error missing_config "no such file|does not exist|cannot (open|read)" "$heed" train --config "$work/none.toml"
sed 's/^d_model = 32/d_model = "wide"/' "$work/tiny.toml" > "$work/bad_value.toml"
expect_error bad_config_value "d_model" "$heed" train --config "$work/bad_value.toml"
sed 's/^heads = 2/headz = 2/' "$work/tiny.toml" > "$work/bad_key.toml"
expect_error bad_config_key "headz" "$heed" train --config "$work/bad_key.toml"
expect_error run_exists "$work/run" "$heed" train --config "$work/tiny.toml" --quiet
expect_error missing_model "not a checkpoint directory" "$heed" eval --model "$work/nothing"
expect_error unseen_character "character '1'" "$heed" predict --model "$ckpt" hel1o
printf 'hello\ncaf\xe9\n' > "$work/latin1"
expect_error stdin_not_utf8 "stdin line 2 is not valid UTF-8" "$heed" predict --model "$ckpt" < "$work/latin1"
cp -r "$ckpt" "$work/corrupt"
truncate -s 100 "$work/corrupt/model.safetensors"
expect_error corrupt_checkpoint "model.safetensors" "$heed" predict --model "$work/corrupt" hello

if [[ $failures -ne 0 ]]; then echo "$failures CLI check(s) failed"; exit 1; fi
echo "all CLI checks passed"
