"""Seconds per training step of a preset's text -> image flow, fp32 vs bf16 autocast, on a CPU.

Forward + backward of TextImageFlow.loss at the preset's batch size on random features and
latents (the median of six steps), the work `flowtok train flow` does per step without the
optimizer. Decides whether `--set train_flow.precision=bf16` pays on a given CPU (it needs
AVX512-BF16 or AMX to).

    OMP_NUM_THREADS=1 python benchmarks/flow/cpu_bf16_step.py --preset emoji64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from flowtok.config import load_preset
from flowtok.flow.model import TextImageFlow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="emoji64")
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()

    cfg = load_preset(args.preset)
    model = TextImageFlow(cfg, "t2i")
    B = cfg.train_flow.batch_size
    feats = torch.randn(B, cfg.K, cfg.text.feature_dim)
    z = torch.randn(B, cfg.K, cfg.C)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset}, "
          f"batch {B}")
    for precision in ("fp32", "bf16"):
        times = []
        for i in range(args.steps):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss, _ = model.loss(feats, z, generator=torch.Generator().manual_seed(i))
            loss.backward()
            times.append(time.perf_counter() - start)
        print(f"{precision}: {statistics.median(times):.3f} s/step")


if __name__ == "__main__":
    main()
