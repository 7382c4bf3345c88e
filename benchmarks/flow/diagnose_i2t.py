"""Where does an image -> text flow go wrong? Loads the EMA model of a run's latest checkpoint
and reports, on 300 held-out shapes images: caption all-correct per number of Euler steps, the
caption decoder's accuracy on the *true* z_text (its ceiling), the flow endpoint's error against
z_text, the distance to the nearest other caption's z_text, and some failures.

    python benchmarks/flow/diagnose_i2t.py runs/i2t_shapes --tokenizer runs/tok3000 --steps 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from flowtok.config import load_config
from flowtok.eval.shapes_eval import caption_matches
from flowtok.safe_load import load_safetensors
from flowtok.train.build import build_flow_task
from flowtok.train.checkpoint import latest_checkpoint

N = 300


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--train", default="data/shapes/train")
    ap.add_argument("--val", default="data/shapes/val")
    ap.add_argument("--steps", default="20")
    a = ap.parse_args()
    ckpt = latest_checkpoint(Path(a.run))
    cfg = load_config(ckpt / "config.json")
    # the vocabulary comes from the train (and val) captions
    task = build_flow_task(cfg, "i2t", a.tokenizer, a.train, val=a.val, val_limit=None,
                           device="cpu")
    val, enc = task.val, task.encoder
    task.model.load_state_dict(load_safetensors(ckpt / "ema_model.safetensors"))
    model = task.model.eval()
    truth = val.captions[:N]
    print(ckpt)
    for steps in [int(s) for s in a.steps.split(",")]:
        caps = task.caption_latents(model, val.mean[:N], steps=steps)
        ok = [caption_matches(c, t) for c, t in zip(caps, truth)]
        print(f"steps {steps}: caption all-correct {sum(ok) / N:.3f}")
    z = model.text_latent(task.text.feats[task.text.lookup(truth)].float(), None)
    ceiling = enc.tokenizer.decode_ids(model.decoder.decode(z))
    print(f"decoder on the true z_text: {sum(map(caption_matches, ceiling, truth)) / N:.3f}")
    err = model.latent_to_text_latent(val.mean[:N], cfg.flow.steps) - z
    print(f"flow endpoint error RMS {err.pow(2).mean().sqrt():.3f} (z_text RMS {z.pow(2).mean().sqrt():.3f})")
    unique = list(dict.fromkeys(truth))
    zu = model.text_latent(task.text.feats[task.text.lookup(unique)].float(), None).flatten(1)
    d = torch.cdist(zu, zu).fill_diagonal_(float("inf"))
    print(f"nearest other caption's z_text: {(d.min(1).values / zu.shape[1] ** 0.5).median():.3f} RMS per value")
    for c, t, o in list(zip(caps, truth, ok))[:N]:
        if not o:
            print(f"  {t!r} -> {c!r}")


if __name__ == "__main__":
    main()
