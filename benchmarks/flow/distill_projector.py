"""Post-hoc wording distillation of a text -> image model's projector (issue 24, bar d; tried,
not shipped: no held-out gain beyond what wider training wordings give, RESULTS "Fourth pass").

Only the text projector is trained, the flow is frozen: for every training caption, P
TRAIN_STYLE paraphrases (seed 1, so not the ones the flow was trained on) are pushed onto the
frozen teacher's mu (and, weakly, log-variance) of the caption itself. If unseen wordings fail
because their z_text lands away from the caption's, this pulls the wordings together.

    python benchmarks/flow/distill_projector.py runs/G_frames/model runs/distill/G_d1 \
        --data data/shapes_p50/train --steps 1500
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from flowtok.data.imagefolder import read_captions
from flowtok.data.shapes_wordings import training_variants
from flowtok.pipeline import FlowTokPipeline

LOGVAR_WEIGHT = 0.1  # the variance matters less than the mean: it is floored by text.min_std


def encode_variants(pipe, captions: list[str], paraphrases: int, seed: int) -> torch.Tensor:
    """(captions, 1 + paraphrases, L, D) text-encoder features; index 0 is the caption itself."""
    sentences = [v for c in captions for v in training_variants(c, paraphrases + 1, seed=seed)]
    with torch.no_grad():
        feats = torch.cat([pipe.text_encoder.encode(sentences[i:i + 1024])
                           for i in range(0, len(sentences), 1024)])
    return feats.view(len(captions), paraphrases + 1, *feats.shape[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--data", required=True, help="the training images' folder (its captions)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--paraphrases", type=int, default=24)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--cache", type=Path, default=None, help="save / reuse the encoded features")
    args = ap.parse_args()
    t0 = time.time()
    pipe = FlowTokPipeline.from_pretrained(args.model, device="cpu")
    captions = sorted(set(read_captions(Path(args.data)).values()))
    if args.cache is not None and args.cache.exists():
        feats = torch.load(args.cache, weights_only=True)
    else:
        feats = encode_variants(pipe, captions, args.paraphrases, seed=1)
        if args.cache is not None:
            torch.save(feats, args.cache)
    teacher = pipe.t2i.projector.eval()
    with torch.no_grad():
        target_mu, target_logvar = teacher(feats[:, 0])
    student = copy.deepcopy(teacher).train()
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    for step in range(args.steps):
        ci = torch.randint(len(captions), (args.batch_size,), generator=gen)
        vi = torch.randint(args.paraphrases + 1, (args.batch_size,), generator=gen)
        mu, logvar = student(feats[ci, vi])
        loss = ((mu - target_mu[ci]).pow(2).mean()
                + LOGVAR_WEIGHT * (logvar - target_logvar[ci]).pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    pipe.t2i.projector.load_state_dict(student.eval().state_dict())
    pipe.save_pretrained(args.out)
    print(f"saved {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
