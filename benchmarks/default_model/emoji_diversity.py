"""Does `flowtok generate NAME -n 4` give different pictures of the right emoji? (issue 24, item 5)

The emoji data hold two drawings of each name (Noto, file `*_google.png`, and Twemoji,
`*_twitter.png`). For n names and k samples each (temperature as the model ships, or
--temperature), every sample's tokenizer latent is matched to its nearest real image:

- fidelity: the nearest real image is a drawing of the prompted name (top-1), or the name is
  among the 5 nearest names (top-5), as `flowtok eval emoji --what prompts` scores one sample;
- styles: share of names whose k samples land on both drawings (nearest real image of the
  prompted name in each style), i.e. "four visibly different pictures";
- pixel diversity ratio: mean pairwise pixel MSE among a name's k samples / the MSE between its
  two real drawings (median over names).

    python benchmarks/default_model/emoji_diversity.py --data data/emoji64 -n 100 -k 4 \
        --grid docs/assets/default_model_variety.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import numpy as np
import torch

from flowtok.eval.emoji_eval import image_latents, nearest_emoji_scores, pick, read_emoji_dataset
from flowtok.pipeline import FlowTokPipeline

GRID_NAMES = ("cat", "dog", "rocket", "red apple", "tiger face", "rainbow")


def style_of(path) -> str:
    return path.stem.rsplit("_", 1)[-1]


def save_grid(images: list, rows: int, cols: int, path: str, zoom: int = 2) -> None:
    from PIL import Image

    side = images[0].size[0]
    grid = Image.new("RGB", (cols * side, rows * side), "white")
    for i, im in enumerate(images[: rows * cols]):
        grid.paste(im.convert("RGB"), ((i % cols) * side, (i // cols) * side))
    grid.resize((grid.width * zoom, grid.height * zoom), Image.Resampling.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--data", required=True)
    ap.add_argument("-n", type=int, default=100, help="training names")
    ap.add_argument("-k", type=int, default=4, help="samples per name")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", default=None, help="PNG: k samples of a few names, one name per row")
    a = ap.parse_args()
    t0 = time.perf_counter()
    pipe = FlowTokPipeline.from_pretrained(a.model, device="cpu") if a.model else \
        FlowTokPipeline.from_pretrained(device="cpu")
    temperature = pipe.config.flow.temperature if a.temperature is None else a.temperature
    records = read_emoji_dataset(a.data)
    names = sorted({r.name for r in records})
    index = {nm: i for i, nm in enumerate(names)}
    chosen = pick(sorted({r.name for r in records if r.split == "train"}), a.n, a.seed)
    images = pipe(chosen, num_images_per_prompt=a.k, seed=a.seed, temperature=temperature)
    gen = image_latents(pipe, [np.asarray(im.convert("RGB")) for im in images])
    reals = image_latents(pipe, [r.path for r in records])
    real_idx = torch.tensor([index[r.name] for r in records])
    scores = nearest_emoji_scores(gen, reals, real_idx, len(names))
    target = torch.tensor([index[c] for c in chosen for _ in range(a.k)])
    own = scores.gather(1, target[:, None])
    rank = (scores > own).sum(1)
    nearest = torch.cdist(gen, reals).argmin(1)

    both, ratios = 0, []
    pix = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255 for im in images])
    for i, name in enumerate(chosen):
        rows = range(i * a.k, (i + 1) * a.k)
        styles = {style_of(records[int(nearest[j])].path) for j in rows
                  if records[int(nearest[j])].name == name}
        both += len(styles) >= 2
        pairs = [float(((pix[p] - pix[q]) ** 2).mean()) for p, q in itertools.combinations(rows, 2)]
        real = [r.path for r in records if r.name == name]
        if len(real) >= 2:
            from PIL import Image

            ra, rb = (np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255 for p in real[:2])
            ratios.append(statistics.mean(pairs) / max(float(((ra - rb) ** 2).mean()), 1e-12))
    row = {"model": a.model or "shipped", "temperature": temperature,
           "names": len(chosen), "samples_per_name": a.k,
           "top1": float((rank < 1).float().mean()), "top5": float((rank < 5).float().mean()),
           "both_styles": both / len(chosen),
           "pixel_diversity_ratio_median": statistics.median(ratios) if ratios else None,
           "eval_s": round(time.perf_counter() - t0, 1)}
    if a.grid:
        save_grid(pipe(list(GRID_NAMES), num_images_per_prompt=a.k, seed=a.seed,
                       temperature=temperature), len(GRID_NAMES), a.k, a.grid)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
