"""What `flowtok bench train` measures: one text-to-image flow training step on random data
(step time, samples/s, MFU), set up as flowtok.train.trainer runs it: AdamW (foreach), autocast
to the run's dtype over fp32 master weights, gradient clipping, EMA update.

MFU = model FLOPs per second / the measured matmul ceiling, with model FLOPs = 3 x the forward
of projector + alignment head + flow per sample (flowtok.bench.flops.train_flops_per_sample);
the frozen text encoder is not in the step (the trainer reads a text-feature cache).

``run_train_bench`` returns a JSON-ready dict (schema ``flowtok.bench.train/1``)::

    schema, preset, batch, dtype, weights, data, notes [str], device {...}, timing {...},
    ceiling {...}, flops_per_sample {forward, total, definition},
    step_ms, step_min_ms, step_max_ms, samples_per_s, tflops_per_s,
    mfu (share of the measured ceiling), mfu_datasheet (share of the datasheet peak, or None),
    peak_memory_bytes (None on CPU), params
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowtok.bench import flops as F
from flowtok.bench.sample import CPU_NOTE, RANDOM_WEIGHTS, check_cpu_size, device_info
from flowtok.bench.timing import matmul_ceiling, time_call, timing_method
from flowtok.config import FlowTokConfig
from flowtok.device import (
    autocast,
    dtype_name,
    peak_memory,
    reset_peak_memory,
    resolve_device,
    resolve_dtype,
)
from flowtok.errors import ConfigError
from flowtok.flow.model import TextImageFlow
from flowtok.train.ema import EMA  # the trainer's own EMA: the step is timed as it trains

SCHEMA = "flowtok.bench.train/1"
MAX_DEFAULT_BATCH = {"cuda": 256, "cpu": 32}  # default batch: the preset's, capped per device
FLOPS_DEFINITION = ("3 x forward (projector + alignment head + flow) per sample; frozen text "
                    "encoder, optimizer and EMA not counted")


@dataclass
class TrainBenchOptions:
    batch: int | None = None  # None: the preset's train_flow.batch_size, capped (MAX_DEFAULT_BATCH)
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on CPU
    device: str | None = None
    repeats: int | None = None  # None: 10 on CUDA, 3 on CPU
    warmup: int | None = None  # None: 3 on CUDA, 1 on CPU
    ema: bool = True
    seed: int = 0


def run_train_bench(cfg: FlowTokConfig, opts: TrainBenchOptions) -> dict:
    """Time ``repeats`` t2i training steps of ``cfg``'s projector + flow on random data."""
    dev = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, dev)
    cuda = dev.type == "cuda"
    batch = opts.batch or min(cfg.train_flow.batch_size, MAX_DEFAULT_BATCH[dev.type])
    if batch <= 0:
        raise ConfigError(f"--batch must be positive, got {batch}")
    for name in ("repeats", "warmup"):
        v = getattr(opts, name)
        if v is not None and v < (1 if name == "repeats" else 0):
            raise ConfigError(f"--{name} must be {'positive' if name == 'repeats' else '>= 0'}, got {v}")
    repeats = opts.repeats or (10 if cuda else 3)
    warmup = opts.warmup if opts.warmup is not None else (3 if cuda else 1)
    fl = F.train_flops_per_sample(cfg)
    check_cpu_size(cfg, fl["total"] * batch, dev)

    torch.manual_seed(opts.seed)
    with torch.device(dev):
        model = TextImageFlow(cfg, "t2i")
    model.train()
    tc = cfg.train_flow
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tuple(tc.betas),
                            weight_decay=tc.weight_decay, foreach=True)
    ema = EMA(model, tc.ema_decay) if opts.ema and tc.ema_decay > 0 else None
    g = torch.Generator().manual_seed(opts.seed)
    feats = torch.randn(batch, cfg.K, cfg.text.feature_dim, generator=g).to(dev)
    z_img = torch.randn(batch, cfg.K, cfg.C, generator=g).to(dev)
    gen = torch.Generator(device=dev).manual_seed(opts.seed)
    params = list(model.parameters())

    def step() -> None:
        with autocast(dev, dtype):
            loss, _ = model.loss(feats, z_img, generator=gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)

    ceiling = matmul_ceiling(dev, dtype)
    reset_peak_memory(dev)
    t = time_call(step, dev, repeats, warmup)
    peak = peak_memory(dev)
    samples_per_s = batch / (t.median_ms * 1e-3)
    tflops = fl["total"] * samples_per_s / 1e12
    info = device_info(dev, dtype)
    notes = [RANDOM_WEIGHTS]
    if not cuda:
        notes.append(CPU_NOTE)
    if dtype == torch.float16:
        notes.append("fp16 without loss scaling: fine for timing, not for training")
    return {
        "schema": SCHEMA, "preset": cfg.name, "batch": batch, "dtype": dtype_name(dtype),
        "weights": RANDOM_WEIGHTS, "data": "random text features and image latents",
        "notes": notes, "device": info, "ema": ema is not None,
        "timing": {"method": timing_method(dev), "statistic": "median", "warmup": warmup,
                   "repeats": repeats},
        "ceiling": ceiling,
        "flops_per_sample": {**fl, "definition": FLOPS_DEFINITION},
        "step_ms": t.median_ms, "step_min_ms": t.min_ms, "step_max_ms": t.max_ms,
        "samples_per_s": samples_per_s, "tflops_per_s": tflops,
        "mfu": tflops / ceiling["tflops"],
        "mfu_datasheet": tflops / info["datasheet_tflops"] if info["datasheet_tflops"] else None,
        "peak_memory_bytes": peak, "params": sum(p.numel() for p in params),
    }
