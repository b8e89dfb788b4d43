#!/usr/bin/env python3
"""Summarise a heed training log (run_dir/train.jsonl) as a Markdown table, one row per
epoch: step, label-smoothed train loss, validation WER/PER (greedy unless the config says
otherwise), learning rate at the epoch's last logged step, and elapsed minutes.

    python3 scripts/run_report.py runs/g2p-full/train.jsonl
"""
import json
import sys


def main(path):
    epochs, last_lr, events, end = [], None, 0, None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError as err:
                sys.exit(f"run_report: {path}:{line_no}: not JSON ({err})")
            events += 1
            if e.get("event") == "step":
                last_lr = e.get("lr")
            elif e.get("event") in ("epoch", "stop_validation"):  # the latter: a run stopped mid-epoch
                epochs.append((e, last_lr))
            elif e.get("event") == "end":
                end = e
    if not epochs:
        sys.exit(f"run_report: {path}: no epoch records among {events} lines")
    print("| epoch | step | train loss | valid WER | valid PER | lr | elapsed |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for e, lr in epochs:
        lr_s = f"{lr:.2e}" if lr is not None else ""
        print(f"| {e.get('epoch', '')} | {e.get('step', '')} | {e.get('train_loss', float('nan')):.3f} | "
              f"{100 * e['valid_wer']:.2f} % | {100 * e['valid_per']:.2f} % | {lr_s} | "
              f"{e['elapsed_s'] / 60:.1f} min |")
    if end is not None:
        print(f"\nended after step {end.get('step')}: {end.get('stop_reason', '?')}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: run_report.py RUN_DIR/train.jsonl")
    main(sys.argv[1])
