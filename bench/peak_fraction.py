#!/usr/bin/env python3
"""Fraction of the FP32 FMA peak reached by heed_bench cases, robust to a drifting machine.

The machine's clock (and with it both a kernel's speed and the FMA probe's) drifts by 10-20 %
between minutes on these shared hosts, so a kernel figure is only compared with the probe
measured right next to it. Each pass runs the FMA probe, then the selected cases (each with
--benchmark_repetitions), then the probe again; a case's fraction in that pass is its best
repetition's GFLOP/s over the better of the two probes around it. Several passes give the
spread; the table shows the median and the best pass.

  python3 bench/peak_fraction.py ./build/heed_bench --passes 3 --threads 1 \
      --filter 'BM_FlashAttention/B:8/H:8/L:(512|2048)/D:64/causal:[01]/bwd:[01]/bf16:0/threads:1/blas:0'
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run(binary, flt, threads, reps, min_time):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HEED_NUM_THREADS=str(threads))
    cmd = [binary, "--benchmark_format=json", f"--benchmark_filter={flt}", f"--benchmark_min_time={min_time}"]
    if reps > 1:
        cmd.append(f"--benchmark_repetitions={reps}")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"peak_fraction: {' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    best = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        rate = b.get("GFLOP/s")
        if rate is None:
            continue
        name = b.get("run_name", b["name"])
        best[name] = max(best.get(name, 0.0), rate)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--filter", required=True, help="benchmark filter of the cases (not the probe)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each case per pass (best taken)")
    ap.add_argument("--min-time", default="0.2")
    args = ap.parse_args()
    probe = f"BM_FmaPeak/threads:{args.threads}/bf16:0"
    fractions, rates, probes = {}, {}, []
    for p in range(args.passes):
        before = run(args.binary, probe, args.threads, 1, args.min_time)
        cases = run(args.binary, args.filter, args.threads, args.reps, args.min_time)
        after = run(args.binary, probe, args.threads, 1, args.min_time)
        if not cases:
            sys.exit(f"peak_fraction: no benchmark matches {args.filter!r}")
        peak = max(list(before.values()) + list(after.values()))
        probes.append(peak)
        for name, rate in cases.items():
            fractions.setdefault(name, []).append(rate / peak)
            rates.setdefault(name, []).append(rate)
        print(f"pass {p + 1}: FMA probe {peak:.1f} GFLOP/s", file=sys.stderr)
    print(f"FMA probe ({args.threads} thread(s)), per pass: " + ", ".join(f"{x:.1f}" for x in probes) + " GFLOP/s\n")
    print("| case | GFLOP/s per pass | fraction of the pass's probe: median | best pass |")
    print("|---|---|--:|--:|")
    for name in fractions:
        f, r = fractions[name], rates[name]
        print(f"| {name} | {', '.join(f'{x:.1f}' for x in r)} | {100 * statistics.median(f):.1f} % | {100 * max(f):.1f} % |")


if __name__ == "__main__":
    main()
