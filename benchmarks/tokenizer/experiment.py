"""Small controlled tokenizer-recipe experiments on shapes data (CPU, time-boxed).

Each run trains with the common Trainer for --minutes of wall time and appends one JSON line to
benchmarks/tokenizer/experiments.jsonl (recipe, steps, s/step, held-out PSNR/SSIM[/ShapesEval]).
Variants that have no config field yet (loss weights, decoder refinement head) are set here.

  python benchmarks/tokenizer/experiment.py NAME --train DIR --val DIR --minutes 4 \
      [--set tokenizer.patch_size=8 ...] [--edge 0.5] [--refine light]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from flowtok.config import resolve_config
from flowtok.data.imagefolder import load_folder
from flowtok.tokenizer.losses import ReconLossWeights
from flowtok.train.tokenizer_task import TokenizerTask
from flowtok.train.trainer import Trainer


class ConvRefine(torch.nn.Module):
    """3x3 convolution after unpatchify (the paper's final conv): smooths patch seams. Starts as
    the identity (residual with a zero-initialised conv) so it never slows early training.
    (The tokenizer's conv_refine builds LightRefine instead; this is the ablation's baseline.)"""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        torch.nn.init.zeros_(self.conv.weight)
        torch.nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)

HERE = Path(__file__).parent


def cached(folder: str, size: int):
    cache = Path("/tmp/tokx/cache") / (Path(folder).resolve().as_posix().replace("/", "_") + f".{size}.npz")
    cache.parent.mkdir(parents=True, exist_ok=True)
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return z["images"], list(z["captions"])
    loaded = load_folder(folder, size)
    caps = [r.caption or "" for r in loaded.records]
    np.savez(cache, images=loaded.images, captions=np.array(caps))
    return loaded.images, caps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--preset", default="shapes")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--l1", type=float, default=0.0)
    ap.add_argument("--edge", type=float, default=0.0)
    ap.add_argument("--refine", default=None, help="override the decoder refinement: none|paper|light")
    ap.add_argument("--out", default="/tmp/tokx/exp")
    ap.add_argument("--auto-steps", action="store_true")
    ap.add_argument("--no-abs-pos", action="store_true")
    ap.add_argument("--probe-steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = resolve_config(args.preset, None, args.set)
    size = cfg.tokenizer.image_size
    train_images, _ = cached(args.train, size)
    val_images, val_caps = cached(args.val, size)
    task = TokenizerTask(cfg, train_images, val_images, val_caps,
                         loss_weights=ReconLossWeights(l2=1.0, l1=args.l1, edge=args.edge))
    if args.refine is not None:
        from flowtok.tokenizer import model as tm

        dec = task.tokenizer.decoder
        dec.refine = {"none": torch.nn.Identity(), "paper": ConvRefine(),
                      "light": tm.LightRefine()}[args.refine]
    if args.auto_steps:  # size the cosine schedule to the time box from a measured s/step
        import copy

        probe = copy.deepcopy(task.tokenizer)
        opt = torch.optim.AdamW(probe.parameters(), 1e-4)
        x = task.batch(0, None)
        t = time.time()
        for _ in range(args.probe_steps):
            r, _p = probe(x)
            ((r - x) ** 2).mean().backward()
            opt.step()
            opt.zero_grad()
        sps = (time.time() - t) / args.probe_steps
        cfg.train_tokenizer.max_steps = max(50, int(args.minutes * 60 / sps * 0.95))
        args.set.append(f"(auto) max_steps={cfg.train_tokenizer.max_steps} probe_s_per_step={sps:.3f}")
    if args.no_abs_pos:  # the paper's RoPE-only tokenizer: absolute positions fixed at zero
        for prm in (task.tokenizer.encoder.patch_pos, task.tokenizer.decoder.mask_pos):
            prm.requires_grad_(False).zero_()
    out = Path(args.out) / args.name
    trainer = Trainer(task, cfg.train_tokenizer, out, full_config=cfg, device="cpu",
                      progress=False)
    t0 = time.time()
    res = trainer.fit(max_minutes=args.minutes * 1.1)
    row = {"name": args.name, "preset": args.preset, "set": args.set, "l1": args.l1, "edge": args.edge,
           "refine": args.refine, "minutes": (time.time() - t0) / 60, "steps": res["step"],
           "s_per_step": (time.time() - t0) / max(1, res["step"]),
           "params": sum(p.numel() for p in task.tokenizer.parameters()),
           "threads": args.threads, **res["eval"]}
    with open(HERE / "experiments.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
