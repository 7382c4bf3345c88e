"""Computed (not measured) memory and throughput of flow and tokenizer training per preset on
8 GPUs, the table in docs/scale-out.md.

    python benchmarks/scale_out_table.py [--gpus 8] [--mfu 0.4] [--peak-tflops 989] [--hbm-gib 80]

Parameters are counted on the meta device from the preset configs. Per-GPU memory:
- model state: fp32 weights 4 + grads 4 + AdamW 8 + EMA 4 bytes per trainable parameter
  (DDP adds its 4-byte gradient buckets; FSDP divides weights, grads and AdamW by the GPU count,
  keeps the EMA as shards plus one full copy on rank 0 for evaluation);
- frozen weights: fp32 (tokenizer for evaluation, text encoder);
- activations: s * h * (34 + 5 a s / h) bytes per sample and transformer block (bf16, no
  recomputation; Korthikanti et al. 2022), s tokens, h width, a heads.
Throughput: GPUs x peak x MFU / training FLOPs per sample (flowtok.bench.flops: 3 x forward).
"""

from __future__ import annotations

import argparse

import torch

from flowtok.bench.flops import (
    TEXT_TOWERS,
    decoder_flops,
    linear,
    swiglu_block,
    train_flops_per_sample,
)
from flowtok.config import load_preset

PRESETS = ("tiny", "shapes", "emoji64", "B", "XL", "H")
PAPER_GLOBAL_BATCH = {"B": 4096, "XL": 4096, "H": 4096}  # flow; tokenizer 1024 (in the presets)
GIB = 2**30
LAUNCH_BOUND_S = 0.02  # a computed step shorter than this is bound by kernel launches, not FLOPs


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def block_activation_bytes(tokens: int, width: int, heads: int) -> float:
    return tokens * width * (34 + 5 * heads * tokens / width)


def text_tower_params(kind: str) -> int:
    t = TEXT_TOWERS.get(kind)
    if t is None:
        return 0
    return t.layers * (4 * t.width**2 + 2 * t.width * t.mlp_hidden) + t.vocab * t.width


def flow_row(name: str, gpus: int, mfu: float, peak: float, hbm: float) -> dict:
    from flowtok.flow.model import TextImageFlow
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset(name)
    with torch.device("meta"):
        P = count(TextImageFlow(cfg, "t2i"))
        frozen = count(Tokenizer(cfg.tokenizer)) + text_tower_params(cfg.text.encoder)
    K, f, t = cfg.K, cfg.flow, cfg.text
    act = (f.depth * block_activation_bytes(K, f.width, f.heads)
           + t.proj_depth * block_activation_bytes(K, t.proj_width, t.proj_heads))
    global_batch = PAPER_GLOBAL_BATCH.get(name, cfg.train_flow.batch_size * gpus)
    return _row(name, "flow t2i", P, frozen, act, global_batch, gpus,
                train_flops_per_sample(cfg)["total"], mfu, peak, hbm)


def tokenizer_row(name: str, gpus: int, mfu: float, peak: float, hbm: float) -> dict:
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset(name)
    tok = cfg.tokenizer
    with torch.device("meta"):
        P = count(Tokenizer(tok))
    grid = tok.image_size // tok.patch_size
    n, K = grid * grid, tok.num_latent_tokens
    enc = (linear(n, 3 * tok.patch_size**2, tok.enc_width)
           + tok.enc_depth * swiglu_block(n + K, tok.enc_width, tok.mlp_ratio)
           + linear(K, tok.enc_width, 2 * tok.token_channels))
    fwd = enc + decoder_flops(tok)["total"]
    seq_dec = decoder_flops(tok)["sequence"]
    act = (tok.enc_depth * block_activation_bytes(n + K, tok.enc_width, tok.enc_heads)
           + tok.dec_depth * block_activation_bytes(seq_dec, tok.dec_width, tok.dec_heads))
    text = text_tower_params(cfg.text.encoder) if tok.text_guidance else 0
    global_batch = (cfg.train_tokenizer.batch_size if name in PAPER_GLOBAL_BATCH
                    else cfg.train_tokenizer.batch_size * gpus)
    return _row(name, "tokenizer", P, text, act, global_batch, gpus, 3 * fwd, mfu, peak, hbm)


def _fit(per_gpu: int, act: float, free: float) -> int:
    """Largest per-GPU micro-batch (halving from ``per_gpu``) whose activations fit in ``free``."""
    micro = per_gpu
    while micro > 1 and micro * act > free:
        micro //= 2
    return micro


def _row(name, what, P, frozen, act, global_batch, gpus, flops, mfu, peak, hbm) -> dict:
    per_gpu = global_batch // gpus
    fixed = 4 * frozen + 2 * GIB  # frozen fp32 weights; CUDA context and workspaces
    ddp_state = (20 + 4) * P  # weights, grads, AdamW, EMA + DDP gradient buckets
    fsdp_state = 20 * P / gpus + 4 * P  # shards of all five + the full EMA copy (rank 0)
    out = {"preset": name, "what": what, "params_M": P / 1e6, "frozen_M": frozen / 1e6,
           "act_MiB_per_sample": act / 2**20, "global_batch": global_batch}
    for mode, state in (("ddp", ddp_state), ("fsdp", fsdp_state)):
        micro = _fit(per_gpu, act, hbm * GIB - state - fixed)
        out[mode] = (state / GIB, micro, max(1, per_gpu // micro),
                     (state + fixed + micro * act) / GIB)
    rate = gpus * peak * 1e12 * mfu / flops
    out.update(gflop_per_sample=flops / 1e9, samples_per_s=rate, step_s=global_batch / rate)
    return out


def markdown(rows: list[dict], gpus: int) -> str:
    lines = [(f"| preset | training | trainable params | frozen params | activations / sample | "
             f"global batch | DDP: model state, batch_size x grad_accum, peak / GPU | FSDP: "
             f"model state, batch_size x grad_accum, peak / GPU | training FLOPs / sample | "
             f"samples/s on {gpus} GPUs | s / step |"), "|" + "---|" * 11]
    for r in rows:
        cells = []
        for mode in ("ddp", "fsdp"):
            state, micro, accum, peak = r[mode]
            cells.append(f"{state:.2f} GiB, {micro} x {accum}, {peak:.1f} GiB")
        if r["step_s"] < LAUNCH_BOUND_S:
            rate = f"≤ {r['samples_per_s']:,.0f} (launch-bound)"
        else:
            rate = f"{r['samples_per_s']:,.0f}"
        lines.append(
            f"| {r['preset']} | {r['what']} | {r['params_M']:.1f} M | {r['frozen_M']:.1f} M | "
            f"{r['act_MiB_per_sample']:.2f} MiB | {r['global_batch']} | {cells[0]} | "
            f"{cells[1]} | {r['gflop_per_sample']:.2f} G | {rate} | "
            f"{r['step_s']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--peak-tflops", type=float, default=989.0)  # H100 SXM, dense bf16
    ap.add_argument("--hbm-gib", type=float, default=80.0)
    a = ap.parse_args()
    rows = [flow_row(p, a.gpus, a.mfu, a.peak_tflops, a.hbm_gib) for p in PRESETS]
    rows += [tokenizer_row(p, a.gpus, a.mfu, a.peak_tflops, a.hbm_gib)
             for p in ("tiny", "shapes", "emoji64", "B")]  # B, XL and H share one tokenizer
    rows[-1]["preset"] = "B / XL / H"
    print(markdown(rows, a.gpus))


if __name__ == "__main__":
    main()
