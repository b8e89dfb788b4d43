#!/usr/bin/env python3
"""Runs a heed Google Benchmark binary and the PyTorch peer scripts in one invocation and writes a
Markdown table of the two side by side (heed GFLOP/s or tokens/s, torch's, and their ratio).

  compare.py ./build/heed_bench --out docs/results/attention_vs_torch.md -- --benchmark_filter=Attention
  compare.py --heed-json saved.json --out table.md      # heed results saved earlier
  compare.py --selftest --out /tmp/selftest.md          # canned heed JSON, real torch runs, checks itself

heed results are matched to peer cases through the Google Benchmark user counters they report
(B, H, L, D, causal, pass, omp_threads; B, S, T for G2P) and the PEERS table of name patterns
below; bench/peers/README.md lists the counters. Ratio = heed rate / torch rate (> 1: heed faster).
"""

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

import peerlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# heed benchmark name pattern -> the peer measurements it is compared with. First match wins.
# Attention peers: sdpa (F.scaled_dot_product_attention, torch's fused CPU kernel, the one to beat),
# unfused (softmax(Q K^T / sqrt(D)) V written out), mha (nn.MultiheadAttention, need_weights=False).
PEERS = [
    (r"g2p.*(train|step)", "g2p_train"),
    (r"g2p.*(greedy|decod)", "g2p_greedy"),
    (r"multi_?head|mha", ["mha"]),
    (r"naive|unfused|composed", ["unfused"]),
    (r"attention|attn|flash|sdpa", ["sdpa", "unfused"]),
]

ATTENTION_COUNTERS = ("B", "H", "L", "D")
G2P_COUNTERS = ("B", "S", "T")
# optional G2P model counters -> g2p_torch.py options
G2P_MODEL_COUNTERS = {"C": "--d-model", "heads": "--heads", "enc_layers": "--enc-layers",
                      "dec_layers": "--dec-layers", "ff": "--ff", "V": "--tgt-vocab", "src_V": "--src-vocab",
                      "attn_drop_pct": "--attn-dropout-pct", "ff_drop_pct": "--ff-dropout-pct",
                      "bf16": "--bf16"}

TIME_UNIT_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}

# A canned heed output for --selftest: Google Benchmark's JSON shape, invented numbers, small shapes.
SELFTEST_JSON = {
    "context": {"date": "selftest", "host_name": "selftest", "executable": "heed_bench (canned)",
                "num_cpus": 2, "library_build_type": "release"},
    "benchmarks": [
        {"name": "BM_FusedAttention/8/8/256/64/0/0", "run_name": "BM_FusedAttention/8/8/256/64/0/0",
         "run_type": "iteration", "repetitions": 2, "repetition_index": 0, "threads": 1, "iterations": 20,
         "real_time": 9.0, "cpu_time": 9.0, "time_unit": "ms",
         "B": 8, "H": 8, "L": 256, "D": 64, "causal": 0, "pass": 0, "omp_threads": 1},
        {"name": "BM_FusedAttention/8/8/256/64/0/0", "run_name": "BM_FusedAttention/8/8/256/64/0/0",
         "run_type": "iteration", "repetitions": 2, "repetition_index": 1, "threads": 1, "iterations": 20,
         "real_time": 8.0, "cpu_time": 8.0, "time_unit": "ms",
         "B": 8, "H": 8, "L": 256, "D": 64, "causal": 0, "pass": 0, "omp_threads": 1},
        {"name": "BM_FusedAttention/8/8/256/64/0/0_mean", "run_name": "BM_FusedAttention/8/8/256/64/0/0",
         "run_type": "aggregate", "aggregate_name": "mean", "threads": 1, "iterations": 2,
         "real_time": 8.5, "cpu_time": 8.5, "time_unit": "ms",
         "B": 8, "H": 8, "L": 256, "D": 64, "causal": 0, "pass": 0, "omp_threads": 1},
        {"name": "BM_FusedAttention/8/8/256/64/1/1", "run_type": "iteration", "threads": 1,
         "iterations": 5, "real_time": 21000.0, "cpu_time": 21000.0, "time_unit": "us",
         "B": 8, "H": 8, "L": 256, "D": 64, "causal": 1, "pass": 1, "omp_threads": 2,
         "flops": 1879048192.0},
        {"name": "BM_NaiveAttention/8/8/128/128/0/1", "run_type": "iteration", "threads": 1,
         "iterations": 5, "real_time": 30.0, "cpu_time": 30.0, "time_unit": "ms",
         "B": 8, "H": 8, "L": 128, "D": 128, "causal": 0, "pass": 1, "omp_threads": 1},
        {"name": "BM_MultiHeadAttention/8/128", "run_type": "iteration", "threads": 1,
         "iterations": 5, "real_time": 15.0, "cpu_time": 15.0, "time_unit": "ms",
         "B": 8, "H": 8, "L": 128, "D": 64, "causal": 0, "pass": 0, "omp_threads": 1},
        {"name": "BM_G2PTrainStep/16", "run_type": "iteration", "threads": 1, "iterations": 3,
         "real_time": 90.0, "cpu_time": 90.0, "time_unit": "ms", "B": 16, "S": 12, "T": 12, "omp_threads": 1},
        {"name": "BM_G2PGreedy/4", "run_type": "iteration", "threads": 1, "iterations": 3,
         "real_time": 20.0, "cpu_time": 20.0, "time_unit": "ms", "B": 4, "S": 12, "T": 12, "omp_threads": 1},
        {"name": "BM_Softmax/4096", "run_type": "iteration", "threads": 1, "iterations": 100,
         "real_time": 1.0, "cpu_time": 1.0, "time_unit": "ms"},
    ],
}


def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# heed side


def self_threaded(bench):
    return "/threads:" in bench.get("run_name", bench["name"])


def run_heed(binary, extra, threads_list, quiet_wait):
    """Runs the binary with --benchmark_format=json once per thread count (OMP_NUM_THREADS and
    HEED_NUM_THREADS set); benchmarks named with a threads:N argument set their threads
    themselves and are kept from the first run only (if all are such, one run is enough).
    Returns (list of (threads, benchmark dict), context, commands, other processes' CPU use per run)."""
    out, commands, context, others = [], [], {}, []
    meter = peerlib.CpuMeter()
    for t in threads_list:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), HEED_NUM_THREADS=str(t))
        cmd = [binary, "--benchmark_format=json"] + extra
        commands.append(f"OMP_NUM_THREADS={t} HEED_NUM_THREADS={t} " + shlex.join(cmd))
        if quiet_wait > 0:
            peerlib.wait_for_quiet(quiet_wait)
        log("running " + commands[-1])
        meter.start()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        others.append(meter.stop())
        if proc.returncode != 0:
            sys.exit(f"compare.py: {binary} exited with {proc.returncode}")
        doc = json.loads(proc.stdout)
        context = doc.get("context", {})
        benches = doc.get("benchmarks", [])
        # Benchmarks with a threads:N argument set their own threads (one run gives them all);
        # the others (e.g. BM_MultiHeadAttention) take OMP_NUM_THREADS and run once per thread count.
        first = t == threads_list[0]
        out += [(t, b) for b in benches if first or not self_threaded(b)]
        if all(self_threaded(b) for b in benches):
            break
    return out, context, commands, others


def pick_runs(pairs):
    """Keeps one entry per (run name, threads): the fastest iteration run (min over repetitions,
    as the peer reports a minimum), or the median aggregate where only aggregates were reported."""
    best = {}
    for t, b in pairs:
        if b.get("error_occurred"):
            log(f"skipping {b['name']}: {b.get('error_message', 'error')}")
            continue
        key = (b.get("run_name", b["name"]), int(b.get("omp_threads", t)))
        kind = b.get("run_type", "iteration")
        if kind == "aggregate" and b.get("aggregate_name") != "median":
            continue
        cur = best.get(key)
        rank = 0 if kind == "iteration" else 1
        secs = b["real_time"] * TIME_UNIT_S[b.get("time_unit", "ns")]
        if cur is None or (rank, secs) < (cur[0], cur[1]):
            best[key] = (rank, secs, b)
    return [(key[1], secs, b) for key, (rank, secs, b) in best.items()]


def classify(name):
    for pattern, peer in PEERS:
        if re.search(pattern, name, re.IGNORECASE):
            return peer
    return None


def heed_rows(pairs):
    """Turns heed results into comparison rows with the peer cases they need."""
    rows, unmatched = [], []
    for threads, secs, b in pick_runs(pairs):
        name = b.get("run_name", b["name"])
        peer = classify(name)
        row = {"heed_name": name, "threads": threads, "heed_s": secs}
        if peer in ("g2p_train", "g2p_greedy"):
            missing = [c for c in G2P_COUNTERS if c not in b]
            if missing:
                unmatched.append((name, "missing counters " + ", ".join(missing)))
                continue
            row.update(kind=peer, B=int(b["B"]), S=int(b["S"]), T=int(b["T"]),
                       model={k: b[k] for k in G2P_MODEL_COUNTERS if k in b})
            row["heed_rate"] = row["B"] * row["T"] / secs
            rows.append(row)
        elif peer:
            missing = [c for c in ATTENTION_COUNTERS + ("causal", "pass") if c not in b]
            if missing:
                unmatched.append((name, "missing counters " + ", ".join(missing)))
                continue
            if "S" in b and int(b["S"]) != int(b["L"]):
                unmatched.append((name, "S != L (cross-attention) has no peer case yet"))
                continue
            case = {"B": int(b["B"]), "H": int(b["H"]), "L": int(b["L"]), "D": int(b["D"]),
                    "causal": bool(b["causal"]), "pass": "forward_backward" if b["pass"] else "forward",
                    "threads": threads, "dtype": "bfloat16" if b.get("bf16") else "float32"}
            flops = peerlib.attention_flops(case["B"], case["H"], case["L"], case["D"], case["causal"],
                                            case["pass"] == "forward_backward")
            if peer == ["mha"]:
                flops += peerlib.projection_flops(case["B"], case["L"], case["H"] * case["D"],
                                                  case["pass"] == "forward_backward")
            note = ""
            if "flops" in b and abs(b["flops"] - flops) > 0.01 * flops:
                note = f"heed reports {b['flops']:.4g} flops, convention gives {flops:.4g}"
                log(f"warning: {name}: {note}")
            # heed's rate over the probe of the same binary (bf16 cases: the bf16 dot-product probe)
            row["peak_frac"] = b.get("bf16_peak_frac") if b.get("bf16") else b.get("peak_frac")
            row["extra_mib"] = b.get("scratch_MiB")    # heed's kernel workspace (outputs not counted)
            for impl in peer:
                r = dict(row, kind="attention", impl=impl, case=dict(case, impl=impl), flops=flops, note=note)
                r["heed_rate"] = flops / secs
                rows.append(r)
        else:
            unmatched.append((name, "no entry in the PEERS table"))
    return rows, unmatched


# ---------------------------------------------------------------------------
# peer side


def run_peer(python, script, args):
    cmd = [python, os.path.join(HERE, script)] + args
    log("running " + shlex.join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"compare.py: {script} exited with {proc.returncode}")
    recs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return recs, shlex.join(cmd)


def case_key(c):
    return (c["impl"], c["B"], c["H"], c["L"], c["D"], bool(c["causal"]), c["pass"], c["threads"], c["dtype"])


def run_peers(rows, python, reps, budget, quiet_wait, spec_dir):
    """Runs every peer case the rows need, once each; fills torch_s / torch_rate into the rows."""
    commands, metas = [], []
    cases = {}
    for r in rows:
        if r["kind"] == "attention":
            cases.setdefault(case_key(r["case"]), r["case"])
    results = {}
    if cases:
        spec = os.path.join(spec_dir, "attention_cases.json")
        with open(spec, "w") as f:
            json.dump(list(cases.values()), f)
        recs, cmd = run_peer(python, "attention_torch.py",
                             ["--spec", spec, "--reps", str(reps), "--budget", str(budget),
                              "--quiet-wait", str(quiet_wait)])
        commands.append(cmd)
        metas += [x for x in recs if x.get("record") == "meta"]
        for x in recs:
            if "name" in x:
                results[case_key(x)] = x
    g2p_groups = {}
    for r in rows:
        if r["kind"].startswith("g2p"):
            model = tuple(sorted(r["model"].items()))
            g2p_groups.setdefault((r["kind"], r["threads"], r["S"], r["T"], model), set()).add(r["B"])
    for (kind, threads, S, T, model), batches in sorted(g2p_groups.items()):
        args = ["--threads", str(threads), "--src-len", str(S), "--reps", str(reps), "--budget", str(budget),
                "--quiet-wait", str(quiet_wait)]
        for k, v in model:
            args += [G2P_MODEL_COUNTERS[k], str(int(v))]
        if kind == "g2p_train":
            for B in sorted(batches):
                recs, cmd = run_peer(python, "g2p_torch.py",
                                     args + ["--only", "train", "--batch", str(B), "--tgt-len", str(T)])
                commands.append(cmd)
                metas += [x for x in recs if x.get("record") == "meta"]
                for x in recs:
                    if "name" in x:
                        results[(kind, x["B"], threads, S, T, model)] = x
        else:
            recs, cmd = run_peer(python, "g2p_torch.py",
                                 args + ["--only", "greedy", "--decode-steps", str(T),
                                         "--decode-batches", ",".join(map(str, sorted(batches)))])
            commands.append(cmd)
            metas += [x for x in recs if x.get("record") == "meta"]
            for x in recs:
                if "name" in x:
                    results[(kind, x["B"], threads, S, T, model)] = x
    for r in rows:
        if r["kind"] == "attention":
            x = results.get(case_key(r["case"]))
        else:
            x = results.get((r["kind"], r["B"], r["threads"], r["S"], r["T"], tuple(sorted(r["model"].items()))))
        r["torch"] = x
        if x and "ms" in x:
            r["torch_s"] = x["ms"] / 1e3
            r["torch_rate"] = (r["flops"] if r["kind"] == "attention" else r["B"] * r["T"]) / r["torch_s"]
    return commands, metas


# ---------------------------------------------------------------------------
# report


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def markdown(rows, unmatched, context, heed_cmds, peer_cmds, metas, argv, selftest, loads, heed_others):
    m = peerlib.lscpu_facts()
    meta = metas[0] if metas else {}
    others = [r["torch"]["others_cores"] for r in rows if r.get("torch") and r["torch"].get("others_cores") is not None]
    lines = ["# heed vs PyTorch, side by side", ""]
    if selftest:
        lines += ["**SELFTEST: the heed numbers below are invented (canned JSON); only the torch "
                  "numbers are measured.**", ""]
    lines += [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {m.get('model')}, {m.get('cpus')} CPUs ({m.get('sockets')} socket x "
        f"{m.get('cores_per_socket')} cores x {m.get('threads_per_core')} threads), "
        f"SIMD: {' '.join(m.get('simd', []))}",
        f"- load average (1 min) at start / end: {loads[0]:.2f} / {loads[1]:.2f}",
        f"- CPU used by other processes (cores): during the heed runs "
        f"{', '.join(fmt(x, 2) for x in heed_others) or '-'}; during the torch cases "
        f"{fmt(max(others) if others else None, 2)} at most",
        f"- torch: {meta.get('torch', '?')} (CPU capability {meta.get('cpu_capability', '?')}, "
        f"BLAS {meta.get('blas', '?')}, Python {meta.get('python', '?')})",
        f"- heed: {context.get('executable', '?')}, Google Benchmark build type "
        f"{context.get('library_build_type', '?')}",
        f"- command: `{argv}`",
    ]
    lines += [f"- heed run: `{c}`" for c in heed_cmds]
    lines += [f"- peer run: `{c}`" for c in peer_cmds]
    lines += ["", "Times are minima over repetitions on both sides. GFLOP/s use one convention for both: "
              "forward 4·B·H·L²·D (halved when causal), forward+backward 3.5x that; MultiheadAttention "
              "adds its four C x C projections. Ratio = heed rate / torch rate (> 1: heed is faster). "
              "heed's % of peak is its CPU-time rate over the FMA probe (bf16 cases: the bf16 dot-product "
              "probe) measured in the same binary; heed workspace MiB: the kernel's scratch memory, outputs "
              "not counted; torch extra MiB: its peak resident memory above its inputs, outputs included.", ""]
    att = [r for r in rows if r["kind"] == "attention"]
    if att:
        lines += ["## Attention", "",
                  "| heed benchmark | B | H | L | D | causal | pass | threads | heed ms | heed GFLOP/s "
                  "| heed % of peak | heed workspace MiB | torch peer | torch ms | torch GFLOP/s "
                  "| torch extra MiB | heed / torch |",
                  "|---|--:|--:|--:|--:|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|"]
        for r in sorted(att, key=lambda r: (r["threads"], r["heed_name"], r["impl"])):
            c = r["case"]
            t_ms = r.get("torch_s") and r["torch_s"] * 1e3
            t_rate = r.get("torch_rate")
            ratio = f"**{r['heed_rate'] / t_rate:.2f}**" if t_rate else (
                "torch skipped" if r.get("torch") else "no torch result")
            lines.append(
                f"| {r['heed_name']} | {c['B']} | {c['H']} | {c['L']} | {c['D']} | {'yes' if c['causal'] else 'no'} "
                f"| {'fwd+bwd' if c['pass'] == 'forward_backward' else 'fwd'} | {c['threads']} "
                f"| {fmt(r['heed_s'] * 1e3, 2)} | {fmt(r['heed_rate'] / 1e9)} "
                f"| {fmt(r.get('peak_frac') and 100 * r['peak_frac'])} | {fmt(r.get('extra_mib'), 2)} | {r['impl']} "
                f"| {fmt(t_ms, 2)} | {fmt(t_rate and t_rate / 1e9)} "
                f"| {fmt((r.get('torch') or {}).get('peak_extra_mib'))} | {ratio} |")
        notes = [f"- {r['heed_name']}: {r['note']}" for r in att if r.get("note")]
        skipped = [f"- torch {r['impl']} for {r['heed_name']}: {r['torch']['skipped']}"
                   for r in att if r.get("torch") and "skipped" in r["torch"]]
        if notes or skipped:
            lines += [""] + sorted(set(notes + skipped))
        lines.append("")
    g2p = [r for r in rows if r["kind"].startswith("g2p")]
    if g2p:
        lines += ["## G2P Transformer (nn.Transformer peer; greedy decoding without key/value cache)", "",
                  "| heed benchmark | what | B | S | T | threads | heed ms | heed tokens/s | torch ms "
                  "| torch tokens/s | heed / torch |",
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in sorted(g2p, key=lambda r: (r["threads"], r["kind"], r["B"])):
            t_rate = r.get("torch_rate")
            what = "Adam training step (target tokens)" if r["kind"] == "g2p_train" else "greedy decoding"
            if r["model"].get("bf16"):
                what += ", bf16 products (torch: autocast)"
            ratio = f"**{r['heed_rate'] / t_rate:.2f}**" if t_rate else "no torch result"
            lines.append(
                f"| {r['heed_name']} | {what} | {r['B']} | {r['S']} | {r['T']} | {r['threads']} "
                f"| {fmt(r['heed_s'] * 1e3, 2)} | {fmt(r['heed_rate'])} "
                f"| {fmt(r.get('torch_s') and r['torch_s'] * 1e3, 2)} | {fmt(t_rate)} | {ratio} |")
        lines.append("")
    if unmatched:
        lines += ["## heed benchmarks without a peer", ""]
        lines += [f"- {n}: {why}" for n, why in sorted(set(unmatched))]
        lines.append("")
    return "\n".join(lines)


def check_selftest(rows, unmatched, text):
    """What the canned JSON must produce; exits non-zero where the driver got it wrong."""
    problems = []
    names = {(r["heed_name"], r.get("impl", r["kind"]), r["threads"]) for r in rows}
    want = {("BM_FusedAttention/8/8/256/64/0/0", "sdpa", 1), ("BM_FusedAttention/8/8/256/64/0/0", "unfused", 1),
            ("BM_FusedAttention/8/8/256/64/1/1", "sdpa", 2), ("BM_FusedAttention/8/8/256/64/1/1", "unfused", 2),
            ("BM_NaiveAttention/8/8/128/128/0/1", "unfused", 1), ("BM_MultiHeadAttention/8/128", "mha", 1),
            ("BM_G2PTrainStep/16", "g2p_train", 1), ("BM_G2PGreedy/4", "g2p_greedy", 1)}
    if names != want:
        problems.append(f"rows {sorted(names)} != expected {sorted(want)}")
    fused = [r for r in rows if r["heed_name"] == "BM_FusedAttention/8/8/256/64/0/0"]
    if any(abs(r["heed_s"] - 8.0e-3) > 1e-12 for r in fused):
        problems.append("the minimum over repetitions (8 ms) was not taken")
    if [n for n, _ in unmatched] != ["BM_Softmax/4096"]:
        problems.append(f"unmatched {unmatched} != [BM_Softmax/4096]")
    missing = [r["heed_name"] for r in rows if not r.get("torch_rate")]
    if missing:
        problems.append(f"no torch result for {missing}")
    if "| **" not in text:
        problems.append("no ratio in the table")
    for p in problems:
        log("SELFTEST FAILED: " + p)
    if problems:
        sys.exit(1)
    log("selftest passed: %d rows, all with a torch result" % len(rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", help="heed benchmark binary (Google Benchmark)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--heed-json", help="use this saved --benchmark_format=json output instead of running a binary")
    src.add_argument("--selftest", action="store_true", help="use a canned heed JSON and check the result")
    ap.add_argument("--out", help="write the Markdown table here (it is printed as well)")
    ap.add_argument("--threads", default="1,2",
                    help="thread counts to run heed with (OMP_NUM_THREADS) for benchmarks without a threads:N argument")
    default_py = os.path.join(ROOT, "build", "peers-venv", "bin", "python")
    ap.add_argument("--python", default=default_py if os.path.exists(default_py) else sys.executable,
                    help="Python with torch for the peer scripts (default build/peers-venv/bin/python)")
    ap.add_argument("--reps", type=int, default=5, help="peer: timed calls at most per case")
    ap.add_argument("--budget", type=float, default=4.0, help="peer: seconds of timed calls per case")
    ap.add_argument("--raw", help="also write heed's and torch's raw results as JSON here")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each heed run and each torch case, wait up to this many seconds for other "
                    "processes to use under 0.3 cores (default 0: do not wait)")
    ap.epilog = "Arguments after -- go to the heed binary (e.g. -- --benchmark_filter=Attention)."
    own, extra = (sys.argv[1:], [])
    if "--" in own:
        cut = own.index("--")
        own, extra = own[:cut], own[cut + 1:]
    args = ap.parse_args(own)
    args.extra = extra
    argv = shlex.join([os.path.basename(sys.executable)] + sys.argv)

    loads = [os.getloadavg()[0]]
    threads_list = peerlib.parse_int_list(args.threads)
    heed_cmds, heed_others = [], []
    if args.selftest:
        doc = SELFTEST_JSON
        pairs = [(1, b) for b in doc["benchmarks"]]
        context = doc["context"]
        heed_cmds = ["(canned JSON in compare.py)"]
    elif args.heed_json:
        with open(args.heed_json) as f:
            doc = json.load(f)
        pairs = [(threads_list[0], b) for b in doc["benchmarks"]]
        context = doc.get("context", {})
        heed_cmds = [f"(saved results {args.heed_json})"]
    elif args.binary:
        pairs, context, heed_cmds, heed_others = run_heed(args.binary, args.extra, threads_list, args.quiet_wait)
    else:
        ap.error("give a heed benchmark binary, --heed-json FILE or --selftest")

    rows, unmatched = heed_rows(pairs)
    with tempfile.TemporaryDirectory() as tmp:
        peer_cmds, metas = run_peers(rows, args.python, args.reps, args.budget, args.quiet_wait, tmp)
    loads.append(os.getloadavg()[0])
    text = markdown(rows, unmatched, context, heed_cmds, peer_cmds, metas, argv, args.selftest, loads, heed_others)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        log(f"wrote {args.out}")
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump({"heed": [b for _, b in pairs], "heed_context": context, "torch_meta": metas,
                       "rows": rows, "unmatched": unmatched}, f, indent=1, default=str)
    if args.selftest:
        check_selftest(rows, unmatched, text)


if __name__ == "__main__":
    main()
