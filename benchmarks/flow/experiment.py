"""Time-boxed flow-recipe experiment on shapes: train t2i or i2t for M minutes with a cosine
schedule sized to the box, then score with ShapesEval (t2i: 200 canonical prompts, a guidance
sweep) or caption accuracy (i2t: held-out images). Appends one JSON line to
benchmarks/flow/results.jsonl.

    python benchmarks/flow/experiment.py NAME --tokenizer runs/tok/model --minutes 8 \
        [--task t2i] [--set flow.normalize_latents=true ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flowtok.config import apply_overrides, resolve_config
from flowtok.eval.shapes_eval import score_images
from flowtok.train.build import build_flow_task, flow_trainer

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--train", default="data/shapes/train")
    ap.add_argument("--val", default="data/shapes/val")
    ap.add_argument("--task", default="t2i")
    ap.add_argument("--minutes", type=float, default=8)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--guidance", default="1,2,3,4,6")
    ap.add_argument("--out", default="runs/flowexp")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = resolve_config("shapes", None, a.set)
    task = build_flow_task(cfg, a.task, a.tokenizer, a.train, val=a.val, val_limit=None,
                           eval_prompts=200, device="cpu")
    prompts = task.eval_prompts
    # size the cosine schedule to the time box from a short timing run
    t0 = time.perf_counter()
    for s in range(5):
        loss, _ = task.loss(task.batch(s, torch.Generator().manual_seed(s)), s)
        loss.backward()
    s_per_step = (time.perf_counter() - t0) / 5 * 1.15  # + optimizer/EMA overhead
    steps = max(50, int(a.minutes * 60 / s_per_step))
    sized = apply_overrides(task.cfg, [
        f"train_flow.max_steps={steps}", f"train_flow.eval_every={max(1, steps // 4)}",
        f"train_flow.ckpt_every={steps}",
        f"train_flow.warmup_steps={min(cfg.train_flow.warmup_steps, steps // 10)}"])
    out = ROOT / a.out / a.name
    trainer = flow_trainer(task, out, cfg=sized)
    start = time.perf_counter()
    res = trainer.fit(max_minutes=a.minutes * 1.5)
    minutes = (time.perf_counter() - start) / 60
    model = trainer.ema_modules()["model"].eval()
    record = {"name": a.name, "task": a.task, "overrides": a.set, "steps": res["step"],
              "minutes": round(minutes, 2), "s_per_step": round(minutes * 60 / max(1, res["step"]), 3),
              "eval": res["eval"]}
    if a.task == "t2i":
        sweep = {}
        for g in [float(x) for x in a.guidance.split(",")]:
            images = task.generate(model, prompts, guidance=g)
            sc = score_images(list(images), prompts)
            sweep[g] = {k: round(v, 3) for k, v in sc.items() if isinstance(v, float)}
        record["guidance_sweep"] = sweep
        record["best_all_correct"] = max(v["all_correct"] for v in sweep.values())
    with open(ROOT / "benchmarks" / "flow" / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
