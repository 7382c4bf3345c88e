"""Score a shapes text -> image model on everything issue 24 asks, in one run, and append one JSON
line to benchmarks/flow/diversity_experiments.jsonl:

- canonical: ShapesEval all-correct on the 200 canonical prompts (every attribute stated);
- partial: the 32 colour x shape prompts that state neither size nor position ("a red circle"),
  ``--per-prompt`` samples each: stated-attribute accuracy, total-variation distance of the
  drawn positions (9 cells) and sizes (2) from the data's, and per caption against the real
  images with that caption (``--real``): pixel pairwise-diversity ratio, precision / recall
  (k-NN manifolds; Inception features with ``--features inception``), all as medians;
- heldout, heldout2: ShapesEval on prompts in wordings no training caption uses
  (flowtok.data.shapes_wordings.heldout_prompts in each of HELDOUT_STYLES; the second set was
  written after the first had been scored), judged against their canonical caption;
- source: sigma of z_text against the distance between different captions' mu, as sampled.

    python benchmarks/flow/diversity_eval.py NAME --model runs/X/model --real data/shapes_p/train
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from flowtok.data.shapes import canonical_prompts, partial_prompts
from flowtok.data.shapes_wordings import HELDOUT_STYLES, heldout_prompts, training_style
from flowtok.eval.diversity import diversity_between
from flowtok.eval.shapes_eval import score_images
from flowtok.pipeline import FlowTokPipeline

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "benchmarks" / "flow" / "diversity_experiments.jsonl"


def write_folder(folder: Path, images: np.ndarray, prompts: list[str]) -> Path:
    """An image folder with metadata.jsonl, as `flowtok generate` writes it."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (im, p) in enumerate(zip(images, prompts)):
        Image.fromarray(im).save(folder / f"{i:05d}.png")
        lines.append(json.dumps({"file_name": f"{i:05d}.png", "text": p}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def save_grid(tiles: np.ndarray, path: str, zoom: int = 3) -> None:
    """(rows, cols, S, S, 3) uint8 -> one PNG, one prompt per row, nearest-neighbour zoom."""
    from PIL import Image

    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in tiles], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom), Image.NEAREST).save(path)


def generate(pipe: FlowTokPipeline, prompts: list[str], n: int, seed: int,
             guidance: float | None = None, steps: int | None = None,
             temperature: float | None = None) -> np.ndarray:
    """uint8 (len(prompts) * n, S, S, 3): image j of prompt i uses seed ``seed + i * n + j``."""
    images = pipe(prompts, num_images_per_prompt=n, seed=seed, batch_size=256,
                  guidance_scale=guidance, num_inference_steps=steps, temperature=temperature)
    return np.stack([np.asarray(im.convert("RGB")) for im in images])


@torch.no_grad()
def source_spread(pipe: FlowTokPipeline, prompts: list[str], temperature: float) -> dict[str, float]:
    """sigma of z_text (effective: floor and temperature included) vs the captions' mu distances."""
    model = pipe.t2i
    feats = pipe.text_encoder.encode(prompts).to(pipe.device)
    mean, logvar = model.projector(feats)
    floor = model.source_min_std
    sigma = (logvar.exp() + floor**2).sqrt() * temperature
    d = torch.cdist(mean.flatten(1), mean.flatten(1))
    off = d[~torch.eye(len(prompts), dtype=torch.bool)]
    return {"sigma_mean": float(sigma.mean()), "mu_distance_mean": float(off.mean()),
            "mu_distance_min": float(off.min()),
            "noise_norm": float(sigma.flatten(1).pow(2).sum(1).sqrt().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--model", required=True)
    ap.add_argument("--real", required=True, help="training images with partial captions")
    ap.add_argument("--per-prompt", type=int, default=32)
    ap.add_argument("--heldout", type=int, default=150)
    ap.add_argument("--features", default="pixels", choices=["pixels", "inception"])
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--grid", default=None, help="write an 8-per-prompt grid PNG of 8 prompts here")
    ap.add_argument("--grid-heldout", default=None,
                    help="the same for the first 8 held-out wordings (8 samples each)")
    ap.add_argument("--grid-set", default="heldout3", choices=sorted(HELDOUT_STYLES),
                    help="held-out set of the --grid-heldout prompts (default: the blind-written one)")
    ap.add_argument("--out", default=None, help="folder for the generated sets (default runs/div/NAME)")
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    pipe = FlowTokPipeline.from_pretrained(a.model, device="cpu")
    temp = pipe.config.flow.temperature if a.temperature is None else a.temperature
    row: dict = {"name": a.name, "model": a.model, "temperature": temp,
                 "guidance": pipe.config.flow.guidance if a.guidance is None else a.guidance,
                 "steps": a.steps or pipe.config.flow.steps}
    g, st = a.guidance, a.steps

    canon = canonical_prompts(200, seed=0)
    res = score_images(list(generate(pipe, canon, 1, 0, g, st, temp)), canon)
    row["canonical_all_correct"] = res["all_correct"]

    partial = partial_prompts(32, seed=0)
    images = generate(pipe, partial, a.per_prompt, 1000, g, st, temp)
    prompts = [p for p in partial for _ in range(a.per_prompt)]
    res = score_images(list(images), prompts)
    row["partial_stated_correct"] = res["all_correct"]
    row["tv_position"] = res["unstated"]["position"]["tv"]
    row["tv_size"] = res["unstated"]["size"]["tv"]
    row["position_counts"] = res["unstated"]["position"]["counts"]
    out = Path(a.out or ROOT / "runs" / "div" / a.name)
    gen = write_folder(out / "partial", images, prompts)
    div = diversity_between(gen, a.real, features=a.features, pixel_size=images.shape[1])["summary"]
    for k in ("diversity_ratio", "feature_diversity_ratio", "precision", "recall", "fid"):
        if isinstance(div.get(k), dict):
            row[f"{k}_median"] = div[k]["median"]

    if a.heldout:  # both held-out wording sets (HELDOUT_STYLES), same scenes, one image each
        for key, style in HELDOUT_STYLES.items():
            pairs = heldout_prompts(a.heldout, seed=0, style=style)
            wordings, truth = [w for w, _ in pairs], [c for _, c in pairs]
            res = score_images(list(generate(pipe, wordings, 1, 0, g, st, temp)), truth)
            row[f"{key}_all_correct"] = res["all_correct"]
    row["source"] = source_spread(pipe, partial, temp)
    row["eval_s"] = round(time.perf_counter() - t0, 1)
    if a.grid:
        save_grid(images.reshape(len(partial), a.per_prompt, *images.shape[1:])[:8, :8], a.grid)
    if a.grid_heldout:  # wordings no training style makes (the widest included)
        first = [w for w, _ in heldout_prompts(8, seed=0, style=HELDOUT_STYLES[a.grid_set],
                                               avoid=training_style("wider"))]
        save_grid(generate(pipe, first, 8, 0, g, st, temp).reshape(8, 8, *images.shape[1:]), a.grid_heldout)
        row["grid_heldout_prompts"] = first
    print(json.dumps(row))
    if not a.no_log:
        with open(LOG, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
