"""How many latent tokens does a picture need? Decode real latents cut to their first k tokens.

For each named training emoji, keep the real tokenizer latent's first k tokens, set the rest to
the data mean (what a text -> image flow that knows nothing about them regresses to), decode,
and put the flow's own sample for the prompt "a NAME" in the last column:

    columns: k = 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 32, then the flow's sample

With a linear basis (coarse to fine) this is the target for `per_token_error.py`: the flow's
sample looks like the column whose tokens it reproduces (benchmarks/RESULTS.md, third pass).

    python benchmarks/flow/token_truncation.py --data data/emoji64_google/train -o trunc.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from flowtok.data.imagefolder import load_folder
from flowtok.eval.emoji_eval import image_latents
from flowtok.pipeline import FlowTokPipeline

KEEP = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", nargs="?", help="a model folder with t2i/ (default: the shipped model)")
    ap.add_argument("--data", required=True, help="the flow's training folder (metadata.jsonl)")
    ap.add_argument("--names", nargs="+", default=["cat", "pizza", "tropical fish", "dog", "rocket"],
                    help="training captions to show, one row each")
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the grid")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    args = ap.parse_args()

    from PIL import Image

    pipe = FlowTokPipeline.from_pretrained(args.model, device="cpu")
    loaded = load_folder(args.data, pipe.tokenizer.cfg.image_size,
                         background=pipe.tokenizer.cfg.background)
    captions = [r.caption for r in loaded.records]
    missing = [n for n in args.names if n not in captions]
    if missing:
        raise SystemExit(f"{args.data}: no training caption {missing[0]!r}")
    K, C = pipe.config.K, pipe.config.C
    keep = [k for k in KEEP if k <= K]
    real = image_latents(pipe, list(loaded.images)).view(-1, K, C)
    mean = real.mean(0)
    feats = pipe.text_encoder.encode([f"a {n}" for n in args.names])
    # temperature 0, the posterior mean: one deterministic sample
    made = pipe.generate_latents(feats, [0] * len(args.names), pipe.config.flow.steps,
                                 pipe.config.flow.guidance, temperature=0.0).float().cpu()
    rows = []
    for row, name in enumerate(args.names):
        z = real[captions.index(name)]
        cut = [torch.cat([z[:k], mean[k:]]) for k in keep]
        rows.append(np.concatenate(list(pipe.decode(torch.stack(cut + [made[row]]))), 1))
    grid = Image.fromarray(np.concatenate(rows, 0))
    grid.resize((grid.width * args.scale, grid.height * args.scale), Image.NEAREST).save(args.out)
    print(f"{args.out}: rows {', '.join(args.names)}; columns k = {keep} then the flow's sample")


if __name__ == "__main__":
    main()
