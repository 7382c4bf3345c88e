"""Bar a over several seeds: the 200 canonical prompts' all-correct per seed, and what the misses
are (issue 24, sixth pass). One seed of 200 prompts moves by a point or two from seed to seed.

    python benchmarks/flow/canonical_seeds.py runs/V_preset/model --seeds 0 7 1007 2007 3007

Prints one JSON line: per-seed all-correct, their mean, and the wrong images by scene kind and by
the attributes judged wrong. Guidance and temperature default to the model's.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np
import torch
from diversity_eval import generate  # this folder's scripts (run as a script, it is on sys.path)
from heldout_wordings import scene_kind

from flowtok.data.shapes import canonical_prompts
from flowtok.eval.shapes_eval import score_images
from flowtok.pipeline import FlowTokPipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 7, 1007, 2007, 3007])
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = FlowTokPipeline.from_pretrained(args.model, device="cpu")
    canon = canonical_prompts(200, seed=0)
    per_seed, kinds, wrong = [], Counter(), Counter()
    for seed in args.seeds:
        images = generate(pipe, canon, 1, seed, args.guidance, None, args.temperature)
        result = score_images(list(images), canon)
        per_seed.append(result["all_correct"])
        for f in result["failures"]:
            kinds[scene_kind(f["prompt"])] += 1
            wrong["+".join(sorted(f["wrong"]))] += 1
    print(json.dumps({"model": args.model, "guidance": args.guidance,
                      "temperature": args.temperature, "seeds": args.seeds,
                      "all_correct": per_seed, "mean": round(float(np.mean(per_seed)), 4),
                      "wrong_by_kind": dict(kinds), "wrong_attributes": dict(wrong)}))


if __name__ == "__main__":
    main()
