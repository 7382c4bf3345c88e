"""Sampling settings (steps, guidance, temperature) on one model, in minutes (issue 24, sixth pass).

For each setting: the 32 partial prompts ("a purple triangle") x 8 samples judged on their
stated attributes, where the unstated position and size land (TV against uniform), the mean
pairwise pixel distance among one caption's samples, and the 200 canonical prompts once. Uses
training wordings only, so a setting chosen here has not seen the held-out wording sets.

    python benchmarks/flow/guidance_sweep.py runs/V_preset/model 20,1,1 20,1.5,1 20,2,1 50,1.5,1

Prints one JSON line per STEPS,GUIDANCE,TEMPERATURE.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from diversity_eval import generate  # this folder's script (run as a script, it is on sys.path)

from flowtok.data.shapes import canonical_prompts, partial_prompts
from flowtok.eval.diversity import pixel_diversity
from flowtok.eval.shapes_eval import score_images
from flowtok.pipeline import FlowTokPipeline

PER_PROMPT = 8


def pixel_spread(images: np.ndarray, prompts: int) -> float:
    """Mean pairwise per-pixel MSE among one prompt's samples, averaged over prompts."""
    groups = images.reshape(prompts, PER_PROMPT, *images.shape[1:]).astype(np.float32) / 255
    return float(np.mean([pixel_diversity(g) for g in groups]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("settings", nargs="+", help="STEPS,GUIDANCE,TEMPERATURE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = FlowTokPipeline.from_pretrained(args.model, device="cpu")
    partial, canon = partial_prompts(32, seed=0), canonical_prompts(200, seed=0)
    repeated = [p for p in partial for _ in range(PER_PROMPT)]
    for spec in args.settings:
        steps, guidance, temperature = spec.split(",")
        t0 = time.perf_counter()
        images = generate(pipe, partial, PER_PROMPT, 1000, float(guidance), int(steps),
                          float(temperature))
        r = score_images(list(images), repeated)
        canon_images = generate(pipe, canon, 1, 0, float(guidance), int(steps), float(temperature))
        print(json.dumps({
            "steps": int(steps), "guidance": float(guidance), "temperature": float(temperature),
            "partial_stated_correct": r["all_correct"], "partial_shape": r["shape"],
            "tv_position": r["unstated"]["position"]["tv"], "tv_size": r["unstated"]["size"]["tv"],
            "pixel_spread": round(pixel_spread(images, len(partial)), 4),
            "canonical": score_images(list(canon_images), canon)["all_correct"],
            "s": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
