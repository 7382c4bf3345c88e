"""Where does a text -> image flow go wrong? Loads the EMA model of a run's latest checkpoint
and reports (1) the held-out flow loss per band of t, and (2) ShapesEval on the 200 canonical
prompts against the number of Euler steps and the guidance scale.

    python benchmarks/flow/diagnose.py runs/flowexp/NAME --tokenizer runs/tok/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from flowtok.config import load_config
from flowtok.data.shapes import canonical_prompts
from flowtok.eval.shapes_eval import score_images
from flowtok.flow.objective import flow_loss
from flowtok.safe_load import load_safetensors
from flowtok.train.build import build_flow_task
from flowtok.train.checkpoint import latest_checkpoint
from flowtok.train.flow_task import FlowTask

BANDS = [(0.0, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.0)]


@torch.no_grad()
def loss_per_band(task: FlowTask, model, n: int = 300) -> dict[str, float]:
    val = task.val
    idx = task.text.lookup(val.captions[:n])
    feats = task.text.feats[idx].float()
    g = torch.Generator().manual_seed(0)
    mean, logvar = model.projector(feats)
    z_text = model.text_latent(feats, torch.randn(mean.shape, generator=g))
    x1 = model.normalize(val.mean[:n])
    ind = torch.zeros(n, dtype=torch.long)
    out = {}
    for lo, hi in BANDS:
        t = lo + (hi - lo) * torch.rand(n, generator=g)
        out[f"{lo}-{hi}"] = round(flow_loss(model.flow, z_text, x1, t, ind, model.cfg.flow.sigma_min).item(), 4)
    out["posterior_std"] = round(torch.exp(0.5 * logvar).mean().item(), 4)
    out["z_text_rms"] = round(mean.pow(2).mean().sqrt().item(), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--steps", default="1,5,20,50")
    ap.add_argument("--guidance", default="1,3")
    a = ap.parse_args()
    ckpt = latest_checkpoint(Path(a.run))
    cfg = load_config(ckpt / "config.json")
    prompts = canonical_prompts(200, seed=0)
    # the held-out images serve as both sets: the run's latent statistics come with its weights
    task = build_flow_task(cfg, "t2i", a.tokenizer, "data/shapes/val", val="data/shapes/val",
                           val_limit=None, eval_prompts=len(prompts), device="cpu")
    task.model.load_state_dict(load_safetensors(ckpt / "ema_model.safetensors"))
    model = task.model.eval()
    report = {"run": a.run, "loss_per_t": loss_per_band(task, model), "shapes": {}}
    for s in [int(x) for x in a.steps.split(",")]:
        for gs in [float(x) for x in a.guidance.split(",")]:
            sc = score_images(list(task.generate(model, prompts, steps=s, guidance=gs)), prompts)
            report["shapes"][f"steps{s}_g{gs}"] = {k: round(v, 3) for k, v in sc.items() if isinstance(v, float)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
