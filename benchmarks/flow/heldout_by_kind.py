"""Held-out wording accuracy split by scene kind, over several seeds (issue 24, bar d).

diversity_eval.py scores each held-out set once (one seed, one number); this splits the same
150 prompts of each set into full (one object, every attribute stated), two-object and partial
(size and / or place unstated) scenes, as heldout_wordings.py names them, and averages N
seeds, to see where the failures are:

    python benchmarks/flow/heldout_by_kind.py runs/I_plain/model --seeds 2 --temperature 0.7

Prints one JSON line: canonical all-correct (seed 0), and per set the seed-mean all-correct,
the per-kind accuracy and the prompts wrong in at least half of the seeds.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
import torch
from diversity_eval import generate  # this folder's scripts (run as a script, it is on sys.path)
from heldout_wordings import scene_kind

from flowtok.data.shapes import canonical_prompts
from flowtok.data.shapes_wordings import (
    HELDOUT_STYLES,
    TRAINING_STYLES,
    heldout_prompts,
    training_style,
    validation_style,
)
from flowtok.eval.shapes_eval import score_images
from flowtok.pipeline import FlowTokPipeline

SEED_STRIDE = 1000  # seed s draws with seed s * SEED_STRIDE, far from diversity_eval's seeds


def correct_per_seed(pipe, prompts, truths, seeds, guidance, temperature) -> np.ndarray:
    """(seeds, prompts) booleans: was the image of each prompt right under each seed."""
    rows = []
    for s in range(seeds):
        images = generate(pipe, prompts, 1, s * SEED_STRIDE, guidance, None, temperature)
        result = score_images(list(images), truths)
        wrong = {f["index"] for f in result["failures"]}
        rows.append([i not in wrong for i in range(len(prompts))])
    return np.asarray(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n", type=int, default=150, help="prompts per held-out set")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--avoid", default="wider", choices=(*sorted(TRAINING_STYLES), "none"),
                    help="never use a wording this training style makes (default wider: the "
                         "widest, so models trained with any style get the same prompts)")
    ap.add_argument("--sets", nargs="+", default=list(HELDOUT_STYLES),
                    choices=(*HELDOUT_STYLES, "val"),
                    help="wording sets to score (default the held-out ones; val: the validation "
                         "set, for choosing between models)")
    args = ap.parse_args()
    avoid = None if args.avoid == "none" else training_style(args.avoid)
    styles = {name: validation_style() if name == "val" else HELDOUT_STYLES[name]
              for name in args.sets}
    torch.set_num_threads(1)
    pipe = FlowTokPipeline.from_pretrained(args.model, device="cpu")
    canon = canonical_prompts(200, seed=0)
    ok = correct_per_seed(pipe, canon, canon, 1, args.guidance, args.temperature)
    out: dict = {"model": args.model, "seeds": args.seeds, "temperature": args.temperature,
                 "guidance": args.guidance, "avoid": args.avoid, "canonical": float(ok.mean())}
    for name, style in styles.items():
        pairs = heldout_prompts(args.n, seed=0, style=style, avoid=avoid)
        words, truths = [w for w, _ in pairs], [c for _, c in pairs]
        ok = correct_per_seed(pipe, words, truths, args.seeds, args.guidance, args.temperature)
        by_kind = defaultdict(list)
        for o, t in zip(ok.mean(0), truths):
            by_kind[scene_kind(t)].append(o)
        out[name] = round(float(ok.mean()), 4)
        out[f"{name}_kinds"] = {k: round(float(np.mean(v)), 3) for k, v in by_kind.items()}
        out[f"{name}_counts"] = {k: len(v) for k, v in by_kind.items()}
        out[f"{name}_wrong"] = [w for w, o in zip(words, ok.mean(0)) if o < 0.5]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
