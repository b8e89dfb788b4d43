#!/usr/bin/env python3
"""Recomputes every converted ONNX Attention case from its .npy inputs and case.json alone,
following the semantics written down in tests/onnx/README.md, and compares with the
expected outputs. It imports nothing from onnx: it checks that the README (and the
converted files) are enough to reproduce every case, which is what heed's runner relies on.

Usage: check_attention_semantics.py CASES_DIR [--cases NAME,...]
Exits 0 when every output of every case is within tolerance, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

# Computed in float64 here, against float32 references: the fp32 attention tolerances of
# heed (atol 1e-5, rtol 1e-4). The ONNX reference rounds inputs and intermediates to the
# case's own dtype for float16/bfloat16, so those get the precision of that dtype.
TOLERANCE = {"float32": (1e-5, 1e-4), "float16": (2e-3, 2e-3), "bfloat16": (2e-2, 2e-2)}


def load(case_dir: str):
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    arrays = {}
    for entry in case["inputs"]:
        if entry["present"]:
            arrays[entry["formal_name"]] = np.load(os.path.join(case_dir, entry["file"]))
    return case, arrays


def attention(case: dict, x: dict) -> dict:
    a = case["effective_attributes"]
    q, k, v = (x[n].astype(np.float64) for n in ("Q", "K", "V"))
    rank = q.ndim
    b = q.shape[0]
    if rank == 3:
        hq, hkv = a["q_num_heads"], a["kv_num_heads"]
        # [B, T, H*D] -> [B, T, H, D] -> [B, H, T, D]
        q = q.reshape(b, q.shape[1], hq, q.shape[2] // hq).transpose(0, 2, 1, 3)
        k = k.reshape(b, k.shape[1], hkv, k.shape[2] // hkv).transpose(0, 2, 1, 3)
        v = v.reshape(b, v.shape[1], hkv, v.shape[2] // hkv).transpose(0, 2, 1, 3)
    hq, hkv = q.shape[1], k.shape[1]
    scale = a["scale"] if a["scale"] is not None else 1.0 / np.sqrt(q.shape[3])

    past = "past_key" in x
    if past:
        k = np.concatenate([x["past_key"].astype(np.float64), k], axis=2)
        v = np.concatenate([x["past_value"].astype(np.float64), v], axis=2)
    present_k, present_v = k, v
    t, s = q.shape[2], k.shape[2]  # query length, total key length (past + new)

    # Additive bias [B, Hq, T, S] built from allowed-sets and the float mask.
    bias = np.zeros((b, hq, t, s))
    if "attn_mask" in x:
        m = x["attn_mask"]
        is_bool = m.dtype == np.bool_
        m = np.where(m, 0.0, -np.inf) if is_bool else m.astype(np.float64)
        if m.shape[-1] < s:  # a short mask is padded on the right with -inf (False)
            m = np.concatenate([m, np.full(m.shape[:-1] + (s - m.shape[-1],), -np.inf)], axis=-1)
        bias = bias + m  # right-aligned broadcasting: [S], [T,S], [Hq,T,S], [B|1,Hq|1,T,S]
    nonpad = x.get("nonpad_kv_seqlen")
    # offset: number of valid keys before the query block, per batch.
    if past:
        offset = np.full(b, x["past_key"].shape[2])
    elif nonpad is not None:
        offset = nonpad.astype(np.int64) - t
    else:
        offset = np.zeros(b, dtype=np.int64)
    i = np.arange(t)[:, None]
    j = np.arange(s)[None, :]
    pos = i[None] + offset[:, None, None]  # [B, T, 1] absolute query position
    allowed = np.ones((b, t, s), dtype=bool)
    if a["is_causal"]:
        allowed &= j[None] <= pos
    left, right = a.get("left_window_size", -1), a.get("right_window_size", -1)
    if left is not None and left >= 0:
        allowed &= pos - j[None] <= left
    if right is not None and right >= 0:
        allowed &= j[None] - pos <= right
    if nonpad is not None:
        allowed &= j[None] < nonpad[:, None, None]
    bias = bias + np.where(allowed, 0.0, -np.inf)[:, None]

    if hq != hkv:  # grouped heads: query head h reads kv head h // (Hq / Hkv)
        k = np.repeat(k, hq // hkv, axis=1)
        v = np.repeat(v, hq // hkv, axis=1)
    scores = (q @ k.transpose(0, 1, 3, 2)) * scale
    softcap = a["softcap"] or 0.0
    if softcap > 0:
        scores = softcap * np.tanh(scores / softcap)
    logits = scores + bias
    dead = np.all(np.isneginf(bias), axis=-1, keepdims=True)  # rows with no allowed key
    row_max = np.max(np.where(dead, 0.0, logits), axis=-1, keepdims=True)
    e = np.where(dead, 0.0, np.exp(logits - row_max))
    probs = e / np.where(dead, 1.0, e.sum(axis=-1, keepdims=True))
    y = probs @ v  # [B, Hq, T, Dv]
    if rank == 3:
        y = y.transpose(0, 2, 1, 3).reshape(b, t, -1)  # [B, T, Hq*Dv]
    mode = a["qk_matmul_output_mode"]
    qk = {0: scores, 1: scores, 2: logits, 3: probs}[mode]
    return {"Y": y, "present_key": present_k, "present_value": present_v, "qk_matmul_output": qk}


def check(cases_dir: str, names: list[str]) -> int:
    failures = 0
    for name in names:
        case, x = load(os.path.join(cases_dir, name))
        got = attention(case, x)
        dtype = case["inputs"][0]["onnx_dtype"]
        atol, rtol = TOLERANCE[dtype]
        worst = []
        for entry in case["outputs"]:
            if not entry["present"]:
                continue
            want = np.load(os.path.join(cases_dir, name, entry["file"])).astype(np.float64)
            mine = got[entry["formal_name"]]
            if mine.shape != want.shape:
                print(f"FAIL {name} {entry['formal_name']}: shape {mine.shape} vs {want.shape}")
                failures += 1
                continue
            same_inf = np.array_equal(np.isneginf(mine), np.isneginf(want))
            finite = np.isfinite(want)
            with np.errstate(invalid="ignore"):  # -inf - -inf in mode-2 outputs
                err = np.abs(mine - want)
            bad = finite & (err > atol + rtol * np.abs(want))
            if bad.any() or not same_inf or np.isnan(mine).any():
                idx = np.unravel_index(np.argmax(np.where(finite, err, 0)), want.shape)
                print(f"FAIL {name} {entry['formal_name']}: worst {idx} got {mine[idx]!r} "
                      f"want {want[idx]!r}")
                failures += 1
            worst.append(f"{entry['formal_name']} {np.max(np.where(finite, err, 0), initial=0):.1e}")
        print(f"ok   {name} ({dtype}): max abs err " + ", ".join(worst))
    print(f"{len(names) - failures}/{len(names)} cases reproduced" if not failures
          else f"{failures} output(s) failed")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases_dir")
    parser.add_argument("--cases", help="comma-separated case names (default: every case folder)")
    args = parser.parse_args()
    if args.cases:
        names = args.cases.split(",")
    else:
        names = sorted(d for d in os.listdir(args.cases_dir)
                       if os.path.isfile(os.path.join(args.cases_dir, d, "case.json")))
    return check(args.cases_dir, names)


if __name__ == "__main__":
    sys.exit(main())
