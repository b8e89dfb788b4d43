#!/usr/bin/env python3
"""PyTorch side of heed's attention benchmarks: F.scaled_dot_product_attention, the unfused
softmax(Q K^T / sqrt(D)) V a user writes by hand, and nn.MultiheadAttention, timed on the
CPU and printed as JSON lines (one per case, after one "meta" line with the torch build).

  attention_torch.py --quick            # a few shapes, 1 and 2 threads (minutes)
  attention_torch.py                    # D 64 and 128, L 128..4096 (tens of minutes)
  attention_torch.py --full             # plus L=16384 at B=1 and MHA with need_weights=True
  attention_torch.py --spec cases.json  # exactly the cases listed (used by compare.py)

Flop convention (the same as heed's): forward 4*B*H*L*L*D, halved when causal; forward+backward
3.5 x forward. For nn.MultiheadAttention the four C x C projections are added (see peerlib.py).
"""

import argparse
import inspect
import itertools
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

import peerlib

IMPLS = ("sdpa", "unfused", "mha", "mha_weights")
PASSES = ("forward", "forward_backward")


# ---------------------------------------------------------------------------
# the case grid


def make_case(impl, B, H, L, D, causal, pass_, threads, dtype="float32"):
    return {"impl": impl, "B": B, "H": H, "L": L, "D": D, "causal": bool(causal),
            "pass": pass_, "threads": threads, "dtype": dtype}


def grid(mode, threads):
    cases = []
    if mode == "quick":
        core = itertools.product(("sdpa", "unfused"), [64], [512, 2048], [False, True], PASSES)
        for impl, D, L, causal, p in core:
            cases.append((impl, 8, 8, L, D, causal, p))
        for p in PASSES:
            cases.append(("mha", 8, 8, 2048, 64, False, p))
    else:
        core = itertools.product(("sdpa", "unfused"), [64, 128], [128, 512, 2048, 4096],
                                 [False, True], PASSES)
        for impl, D, L, causal, p in core:
            cases.append((impl, 8, 8, L, D, causal, p))
        for L, causal, p in itertools.product([128, 512, 2048, 4096], [False, True], PASSES):
            cases.append(("mha", 8, 8, L, 64, causal, p))
        if mode == "full":
            for impl, D, causal, p in itertools.product(("sdpa", "unfused"), [64, 128],
                                                        [False, True], PASSES):
                cases.append((impl, 1, 8, 16384, D, causal, p))
            for L, p in itertools.product([512, 2048], PASSES):
                cases.append(("mha_weights", 8, 8, L, 64, False, p))
    return [make_case(*c, threads=t) for t in threads for c in cases]


# ---------------------------------------------------------------------------
# the functions under test


def unfused_attention(q, k, v, mask):
    # [B, H, L, D] x [B, H, D, L] -> [B, H, L, L]
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v)  # [B, H, L, D]


def case_flops(c):
    fwd_bwd = c["pass"] == "forward_backward"
    f = peerlib.attention_flops(c["B"], c["H"], c["L"], c["D"], c["causal"], fwd_bwd)
    if c["impl"].startswith("mha"):
        f += peerlib.projection_flops(c["B"], c["L"], c["H"] * c["D"], fwd_bwd)
    return f


def estimated_bytes(c):
    """A rough upper bound of the memory a case needs, to skip what cannot fit."""
    item = torch.empty((), dtype=getattr(torch, c["dtype"])).element_size()
    B, H, L, D = c["B"], c["H"], c["L"], c["D"]
    io = 8 * B * H * L * D * item
    square = B * H * L * L * item
    fwd_bwd = c["pass"] == "forward_backward"
    if c["impl"] == "unfused":
        return io + square * ((5 if fwd_bwd else 2) + (1 if c["causal"] else 0))
    if c["impl"] == "mha_weights":
        return io + square * (5 if fwd_bwd else 3)
    return io * 2


def build(c):
    """Returns (fn, before) for one case: fn() runs it once, before() resets gradients."""
    dtype = getattr(torch, c["dtype"])
    B, H, L, D, causal = c["B"], c["H"], c["L"], c["D"], c["causal"]
    fwd_bwd = c["pass"] == "forward_backward"
    gen = torch.Generator().manual_seed(1234)

    if c["impl"] in ("sdpa", "unfused"):
        q, k, v = (torch.randn(B, H, L, D, generator=gen, dtype=dtype) for _ in range(3))  # [B, H, L, D]
        mask = torch.ones(L, L, dtype=torch.bool).triu(1) if causal and c["impl"] == "unfused" else None
        if c["impl"] == "sdpa":
            if not hasattr(F, "scaled_dot_product_attention"):  # Debian's torch 1.13
                raise RuntimeError(f"torch {torch.__version__} has no F.scaled_dot_product_attention (added in 2.0)")

            def attend():
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            def attend():
                return unfused_attention(q, k, v, mask)
        leaves = [q, k, v]
        grad_out = torch.randn(B, H, L, D, generator=gen, dtype=dtype) if fwd_bwd else None
        module = None
    else:
        C = H * D
        module = torch.nn.MultiheadAttention(C, H, dropout=0.0, batch_first=True).to(dtype)
        x = torch.randn(B, L, C, generator=gen, dtype=dtype)  # [B, L, C]
        need_weights = c["impl"] == "mha_weights"
        # -inf above the diagonal, as nn.Transformer.generate_square_subsequent_mask (whose
        # dtype argument, like forward's is_causal, torch < 2.0 lacks).
        attn_mask = torch.full((L, L), float("-inf"), dtype=dtype).triu(1) if causal else None
        hint = {"is_causal": causal} if "is_causal" in inspect.signature(module.forward).parameters else {}

        def attend():
            out, _ = module(x, x, x, need_weights=need_weights, attn_mask=attn_mask, **hint)
            return out
        leaves = [x]
        grad_out = torch.randn(B, L, C, generator=gen, dtype=dtype) if fwd_bwd else None

    if not fwd_bwd:
        if module is not None:
            module.eval()

        def fn():
            with torch.no_grad():
                attend()
        return fn, None

    for t in leaves:
        t.requires_grad_(True)
    if module is not None:
        module.train()

    def fn():
        attend().backward(grad_out)

    def before():
        for t in leaves:
            t.grad = None
        if module is not None:
            module.zero_grad(set_to_none=True)
    return fn, before


# ---------------------------------------------------------------------------


def run_cases(cases, reps, budget_s, quiet_wait_s, out=sys.stdout):
    probe = peerlib.PeakRss()
    for c in sorted(cases, key=lambda c: c["threads"]):
        torch.set_num_threads(c["threads"])
        rec = {"name": "torch." + c["impl"]}
        rec.update(c)
        need = estimated_bytes(c)
        avail = peerlib.mem_available_bytes()
        if avail is not None and need > 0.8 * avail:
            rec["skipped"] = f"needs about {need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
            peerlib.emit(rec, out)
            continue
        try:
            fn, before = build(c)
            if quiet_wait_s > 0:
                peerlib.wait_for_quiet(quiet_wait_s)
            best, n, peak, others = peerlib.time_min(fn, reps=reps, budget_s=budget_s, probe=probe,
                                                     before=before)
        except RuntimeError as e:  # e.g. out of memory inside torch
            rec["skipped"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            peerlib.emit(rec, out)
            continue
        flops = case_flops(c)
        rec.update({"ms": round(best * 1e3, 3), "gflops": round(flops / best / 1e9, 2),
                    "peak_extra_mib": None if peak is None else round(peak, 1),
                    "flops": flops, "reps": n, "others_cores": None if others is None else round(others, 2),
                    "load1": round(os.getloadavg()[0], 2)})
        peerlib.emit(rec, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="D=64, L 512 and 2048, plus MHA at L=2048")
    size.add_argument("--full", action="store_true", help="adds L=16384 at B=1 and MHA with need_weights=True")
    size.add_argument("--spec", help="JSON file (or - for stdin) with a list of cases: "
                      "{impl, B, H, L, D, causal, pass, threads[, dtype]}")
    ap.add_argument("--threads", default="1,2", help="comma list for torch.set_num_threads (default 1,2)")
    ap.add_argument("--impl", help="keep only these impls (comma list of %s)" % ", ".join(IMPLS))
    ap.add_argument("--L", help="keep only these lengths (comma list)")
    ap.add_argument("--D", help="keep only these head sizes (comma list)")
    ap.add_argument("--pass", dest="pass_", choices=PASSES, help="keep only this pass")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--reps", type=int, default=5, help="timed calls at most; the minimum is reported")
    ap.add_argument("--budget", type=float, default=4.0,
                    help="seconds of timed calls per case after which no further call starts (default 4)")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each case wait up to this many seconds for other processes to use "
                    "under 0.3 cores (default 0: do not wait)")
    args = ap.parse_args()

    if args.spec:
        with (sys.stdin if args.spec == "-" else open(args.spec)) as f:
            cases = [make_case(c["impl"], c["B"], c["H"], c["L"], c["D"], c["causal"], c["pass"],
                               c["threads"], c.get("dtype", "float32")) for c in json.load(f)]
    else:
        mode = "quick" if args.quick else "full" if args.full else "standard"
        cases = grid(mode, peerlib.parse_int_list(args.threads))
        for c in cases:
            c["dtype"] = args.dtype
    if args.impl:
        cases = [c for c in cases if c["impl"] in args.impl.split(",")]
    if args.L:
        cases = [c for c in cases if c["L"] in peerlib.parse_int_list(args.L)]
    if args.D:
        cases = [c for c in cases if c["D"] in peerlib.parse_int_list(args.D)]
    if args.pass_:
        cases = [c for c in cases if c["pass"] == args.pass_]
    bad = [c["impl"] for c in cases if c["impl"] not in IMPLS]
    if bad:
        ap.error(f"unknown impl {bad[0]!r}; expected one of {', '.join(IMPLS)}")

    peerlib.emit(peerlib.meta_record(torch, "attention_torch.py", sys.argv[1:]))
    run_cases(cases, args.reps, args.budget, args.quiet_wait)


if __name__ == "__main__":
    main()
