#!/usr/bin/env python3
"""PyTorch side of heed's G2P benchmarks: an nn.Transformer encoder-decoder of the size of heed's
grapheme-to-phoneme model, timed on the CPU for (a) one Adam training step and (b) greedy decoding
the way PyTorch users write it with nn.Transformer (no key/value cache: every step re-runs the
decoder on the whole prefix). JSON lines: one "meta" line, then one line per measurement.

  g2p_torch.py                       # d=256, 4 heads, 3+3 layers, ff 1024, vocab 64/64, B=64, lengths 24
  g2p_torch.py --threads 1 --only train --batch 32
"""

import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import peerlib


class Seq2Seq(nn.Module):
    """Token embeddings scaled by sqrt(C) + sinusoidal positions -> nn.Transformer -> vocabulary logits."""

    def __init__(self, a):
        super().__init__()
        C = a.d_model
        self.C = C
        self.src_embed = nn.Embedding(a.src_vocab, C)
        self.tgt_embed = nn.Embedding(a.tgt_vocab, C)
        self.transformer = nn.Transformer(
            d_model=C, nhead=a.heads, num_encoder_layers=a.enc_layers, num_decoder_layers=a.dec_layers,
            dim_feedforward=a.ff, dropout=a.dropout, batch_first=True, norm_first=a.norm_first)
        # Where dropout acts. nn.Transformer(dropout=p) drops attention weights and the
        # feed-forward hidden layer too; heed's G2P recipe drops only residual branches and
        # embeddings (attention_dropout = activation_dropout = 0), so both are selectable.
        attn_p = a.dropout if a.attn_dropout_pct < 0 else a.attn_dropout_pct / 100
        ff_p = a.dropout if a.ff_dropout_pct < 0 else a.ff_dropout_pct / 100
        for layer in list(self.transformer.encoder.layers) + list(self.transformer.decoder.layers):
            layer.self_attn.dropout = attn_p
            if hasattr(layer, "multihead_attn"):
                layer.multihead_attn.dropout = attn_p
            layer.dropout.p = ff_p
        self.out = nn.Linear(C, a.tgt_vocab)
        self.drop = nn.Dropout(a.dropout)
        max_len = max(a.src_len, a.tgt_len + 1) + 1
        pos = torch.arange(max_len).unsqueeze(1)  # [L, 1]
        freq = torch.exp(torch.arange(0, C, 2) * (-math.log(10000.0) / C))  # [C/2]
        table = torch.zeros(max_len, C)  # [L, C]
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq)
        self.register_buffer("positions", table)

    def embed(self, table, tokens):
        # [B, L] -> [B, L, C]
        return self.drop(table(tokens) * math.sqrt(self.C) + self.positions[: tokens.shape[1]])

    def encode(self, src):
        return self.transformer.encoder(self.embed(self.src_embed, src))  # [B, S, C]

    def decode(self, tgt_in, memory):
        T = tgt_in.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(T)  # [T, T]
        h = self.transformer.decoder(self.embed(self.tgt_embed, tgt_in), memory, tgt_mask=mask,
                                     tgt_is_causal=True)  # [B, T, C]
        return self.out(h)  # [B, T, V]

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, self.encode(src))


def bench_train(model, a, threads, gen):
    """One training step: forward, cross-entropy, backward, Adam update."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    B = a.batch
    src = torch.randint(3, a.src_vocab, (B, a.src_len), generator=gen)  # [B, S]
    tgt = torch.randint(3, a.tgt_vocab, (B, a.tgt_len + 1), generator=gen)  # [B, T+1]
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # [B, T] each

    def step():
        opt.zero_grad(set_to_none=True)
        # --bf16 1: CPU autocast, PyTorch's mixed precision (matmuls in bf16, weights f32)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.bf16)):
            logits = model(src, tgt_in)  # [B, T, V]
            loss = F.cross_entropy(logits.reshape(-1, a.tgt_vocab), tgt_out.reshape(-1))
        loss.backward()
        opt.step()

    if a.quiet_wait > 0:
        peerlib.wait_for_quiet(a.quiet_wait)
    best, n, peak, others = peerlib.time_min(step, reps=a.reps, budget_s=a.budget, warmup=3, probe=a.probe)
    tokens = B * a.tgt_len
    return {"name": "torch.g2p_train_step", "bf16": a.bf16, "B": B, "S": a.src_len, "T": a.tgt_len, "threads": threads,
            "ms": round(best * 1e3, 3), "target_tokens_per_s": round(tokens / best, 1),
            "peak_extra_mib": None if peak is None else round(peak, 1), "reps": n,
            "others_cores": None if others is None else round(others, 2), "load1": round(os.getloadavg()[0], 2)}


def bench_greedy(model, a, batch, threads, gen):
    """Greedy decoding of a fixed number of tokens (no early stop), encoder included."""
    model.eval()
    src = torch.randint(3, a.src_vocab, (batch, a.src_len), generator=gen)  # [B, S]
    bos = 1

    def decode():
        with torch.no_grad():
            memory = model.encode(src)  # [B, S, C]
            ys = torch.full((batch, 1), bos, dtype=torch.long)  # [B, 1]
            for _ in range(a.decode_steps):
                logits = model.decode(ys, memory)  # [B, t, V]
                nxt = logits[:, -1].argmax(-1, keepdim=True)  # [B, 1]
                ys = torch.cat([ys, nxt], dim=1)  # [B, t+1]
        return ys

    if a.quiet_wait > 0:
        peerlib.wait_for_quiet(a.quiet_wait)
    best, n, peak, others = peerlib.time_min(decode, reps=a.reps, budget_s=a.budget, warmup=2, probe=a.probe)
    tokens = batch * a.decode_steps
    return {"name": "torch.g2p_greedy", "B": batch, "S": a.src_len, "T": a.decode_steps, "threads": threads,
            "kv_cache": False, "ms": round(best * 1e3, 3), "tokens_per_s": round(tokens / best, 1),
            "peak_extra_mib": None if peak is None else round(peak, 1), "reps": n,
            "others_cores": None if others is None else round(others, 2), "load1": round(os.getloadavg()[0], 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--enc-layers", type=int, default=3)
    ap.add_argument("--dec-layers", type=int, default=3)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--src-vocab", type=int, default=64)
    ap.add_argument("--tgt-vocab", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--attn-dropout-pct", type=int, default=-1,
                    help="dropout on attention weights, in percent (default -1: --dropout, as nn.Transformer)")
    ap.add_argument("--ff-dropout-pct", type=int, default=-1,
                    help="dropout after the feed-forward activation, in percent (default -1: --dropout)")
    ap.add_argument("--bf16", type=int, choices=(0, 1), default=0,
                    help="1: the training step under torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--norm-first", action="store_true", help="pre-norm layers (default post-norm, as nn.Transformer)")
    ap.add_argument("--batch", type=int, default=64, help="training batch size")
    ap.add_argument("--src-len", type=int, default=24)
    ap.add_argument("--tgt-len", type=int, default=24)
    ap.add_argument("--decode-batches", default="1,64", help="batch sizes for greedy decoding")
    ap.add_argument("--decode-steps", type=int, default=24)
    ap.add_argument("--threads", default="1,2", help="comma list for torch.set_num_threads")
    ap.add_argument("--only", choices=("train", "greedy"), help="run one of the two benchmarks")
    ap.add_argument("--reps", type=int, default=10, help="timed runs at most; the minimum is reported")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of timed runs per measurement")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each measurement wait up to this many seconds for other processes to "
                    "use under 0.3 cores (default 0: do not wait)")
    a = ap.parse_args()
    a.probe = peerlib.PeakRss()

    torch.manual_seed(a.seed)
    model = Seq2Seq(a)
    meta = peerlib.meta_record(torch, "g2p_torch.py", sys.argv[1:])
    meta["parameters"] = sum(p.numel() for p in model.parameters())
    meta["model"] = {k: getattr(a, k) for k in ("d_model", "heads", "enc_layers", "dec_layers", "ff",
                                                "src_vocab", "tgt_vocab", "dropout", "attn_dropout_pct",
                                                "ff_dropout_pct", "norm_first", "bf16")}
    peerlib.emit(meta)
    gen = torch.Generator().manual_seed(a.seed)
    for threads in peerlib.parse_int_list(a.threads):
        torch.set_num_threads(threads)
        if a.only in (None, "train"):
            peerlib.emit(bench_train(model, a, threads, gen))
        if a.only in (None, "greedy"):
            for batch in peerlib.parse_int_list(a.decode_batches):
                peerlib.emit(bench_greedy(model, a, batch, threads, gen))


if __name__ == "__main__":
    main()
