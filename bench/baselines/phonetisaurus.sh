#!/usr/bin/env bash
# A classical G2P baseline on heed's own CMUdict split: Phonetisaurus (joint-sequence
# alignment + 8-gram WFST; 24.4 % WER on the literature's CMUdict split per
# ../shared/ANCHORS.md). Calibrates how hard heed's split is compared with that one.
#
#   bash bench/baselines/phonetisaurus.sh [WORK_DIR]      (default build/phonetisaurus)
#
# Needs ./build/heed and data/cmudict/cmudict.dict (scripts/main.sh makes both). Installs
# the PyPI package `phonetisaurus` (prebuilt x86_64 binaries) into WORK_DIR/venv; never run
# by CI. Training is single-threaded (110 s here on 2026-11-21), then it decodes the 12,000 test
# words and scores them with `heed score` (heed's WER/PER definitions).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-build/phonetisaurus}
mkdir -p "$work"
work=$(cd "$work" && pwd)
[[ -x build/heed ]] || { echo "phonetisaurus.sh: ./build/heed is missing; run scripts/main.sh first" >&2; exit 1; }
[[ -x "$work/venv/bin/python" ]] || python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q phonetisaurus==0.3.0
pkg=$("$work/venv/bin/python" -c 'import phonetisaurus, os; print(os.path.dirname(phonetisaurus.__file__))')
export PATH="$pkg/bin/x86_64:$PATH" LD_LIBRARY_PATH="$pkg/lib/x86_64:${LD_LIBRARY_PATH:-}"

./build/heed lexicon --split train | sed 's/ /\t/' > "$work/train.lex"
./build/heed lexicon --split test | cut -d' ' -f1 | uniq > "$work/test.words"
echo "phonetisaurus.sh: $(wc -l < "$work/train.lex") training pronunciations, $(wc -l < "$work/test.words") test words"

start=$(date +%s)
(cd "$work" && phonetisaurus-train --lexicon train.lex --seq2_del --ngram_order 8 > train.log 2>&1)
echo "phonetisaurus.sh: trained in $(( $(date +%s) - start )) s"
start=$(date +%s)
phonetisaurus-apply --model "$work/train/model.fst" --word_list "$work/test.words" --nbest 1 > "$work/test.hyp"
echo "phonetisaurus.sh: decoded in $(( $(date +%s) - start )) s"
./build/heed score --split test --hyp "$work/test.hyp"
