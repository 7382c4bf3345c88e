"""Which latent tokens does a text -> image model get right? Error / variance per token.

For training captions, generate one latent per caption (the model's own sampling: steps,
guidance, temperature) and compare it with the caption's real latent token by token:

    ratio_k = E |x_k - z_k|^2 / Var(z_k)        (k = token; 0 = coarsest with a linear basis)

0 means the token is reproduced, 1 means the model knows nothing about it beyond the data mean
(or adds as much error as it removes). On emoji64 this showed the blur: token 0 at 0.01, tokens
2-31 at 1.0 (benchmarks/RESULTS.md).

    slope_k = <x_k - m_k, z_k - m_k> / |z_k - m_k|^2     (m = the data mean)

splits the error: a flow that regresses to the mean draws the right detail too faintly (slope
below 1, little else), while a wrong guess shows as a large ratio with a slope near 1.

    python benchmarks/flow/per_token_error.py runs/t2i_final/model --data data/emoji64_google/train
"""

from __future__ import annotations

import argparse
import json

import torch

from flowtok.data.imagefolder import load_folder
from flowtok.eval.emoji_eval import image_latents
from flowtok.pipeline import FlowTokPipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", help="a model folder with t2i/ (default: the shipped model)", nargs="?")
    ap.add_argument("--data", required=True, help="the flow's training folder (metadata.jsonl)")
    ap.add_argument("-n", type=int, default=200, help="captions scored (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=None,
                    help="source noise scale (default: the model's flow.temperature)")
    ap.add_argument("--guidance", type=float, default=None,
                    help="CFG scale (default: the model's flow.guidance)")
    args = ap.parse_args()

    pipe = FlowTokPipeline.from_pretrained(args.model, device="cpu")
    fc = pipe.config.flow  # the model's settings, read only: the options are passed as arguments
    temperature = fc.temperature if args.temperature is None else args.temperature
    guidance = fc.guidance if args.guidance is None else args.guidance
    loaded = load_folder(args.data, pipe.tokenizer.cfg.image_size)
    images, captions = list(loaded.images), [r.caption for r in loaded.records]
    K, C = pipe.config.K, pipe.config.C
    real = image_latents(pipe, images).view(-1, K, C)
    pick = torch.randperm(len(captions), generator=torch.Generator().manual_seed(args.seed))[:args.n]
    feats = pipe.text_encoder.encode([captions[i] for i in pick.tolist()])
    made = pipe.generate_latents(feats, [args.seed + i for i in range(len(pick))], fc.steps,
                                 guidance, temperature=temperature).float().cpu()
    err = (made - real[pick]).pow(2).sum(-1).mean(0)  # (K,)
    var = real.var(0).sum(-1)  # (K,)
    dev_made, dev_real = made - real.mean(0), real[pick] - real.mean(0)
    slope = (dev_made * dev_real).sum((0, 2)) / dev_real.pow(2).sum((0, 2))  # (K,)
    ratio = (err / var).tolist()
    share = (var / var.sum()).tolist()
    print(json.dumps({"model": args.model or "default", "n": len(pick),
                      "temperature": temperature, "guidance": guidance,
                      "ratio": [round(r, 3) for r in ratio],
                      "slope": [round(v, 3) for v in slope.tolist()],
                      "variance_share": [round(s, 4) for s in share],
                      "rel_err_median": float(((made - real[pick]).flatten(1).norm(dim=1)
                                               / real[pick].flatten(1).norm(dim=1)).median())}))


if __name__ == "__main__":
    main()
