"""What per-caption precision / recall a text -> image model can reach at best: the tokenizer's
reconstructions of real images it never saw, scored like samples.

A sample is decoded by the tokenizer, so the score of perfectly placed latents is the score of
reconstructions. Three rows per caption, all against the training images (``--real``):

- ``fresh``: new real images (another seed of `flowtok data shapes`): the metric's own ceiling
  at this number of images;
- ``recon``: the tokenizer's reconstructions of those same images (posterior mean): the ceiling
  any model on this tokenizer can reach;
- ``samples`` (``--samples``, optional): a generated folder (e.g. runs/div/NAME/partial).

    python benchmarks/flow/recon_ceiling.py --tokenizer runs/tok_shapes/model \
        --real data/shapes_p50/train --fresh runs/ceiling/fresh/train \
        --samples runs/div/F_std05_final/partial --features inception
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from diversity_eval import write_folder  # this folder's script: same metadata.jsonl layout
from PIL import Image

from flowtok.data.shapes import partial_prompts
from flowtok.eval.diversity import diversity_between, normalize_caption
from flowtok.eval.recon import reconstruct
from flowtok.tokenizer.model import Tokenizer

METRICS = ("diversity_ratio", "feature_diversity_ratio", "precision", "recall", "fid")


def pick_fresh(folder: Path, captions: list[str], per_caption: int) -> dict[str, list[Path]]:
    """Up to per_caption image files of each caption from a data folder's metadata.jsonl."""
    wanted = {normalize_caption(c) for c in captions}
    picked: dict[str, list[Path]] = defaultdict(list)
    for line in (folder / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        cap = normalize_caption(row["text"])
        if cap in wanted and len(picked[cap]) < per_caption:
            picked[cap].append(folder / row["file_name"])
    return picked


def subset(folder: Path, captions: set[str], out: Path) -> Path:
    """A folder of links to the images of these captions only (with its metadata.jsonl), so the
    Inception features of the rest are never computed."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in (folder / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        if normalize_caption(row["text"]) in captions:
            link = out / row["file_name"]
            if not link.exists():
                link.symlink_to((folder / row["file_name"]).resolve())
            lines.append(line)
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return out


def summary(gen: Path, real: str, features: str, size: int) -> dict:
    s = diversity_between(gen, real, features=features, pixel_size=size)["summary"]
    return {k: round(s[k]["median"], 4) for k in METRICS
            if isinstance(s.get(k), dict) and s[k].get("median") is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--real", required=True)
    ap.add_argument("--fresh", required=True, help="a data folder of new images (another seed)")
    ap.add_argument("--samples", default=None)
    ap.add_argument("--per-caption", type=int, default=64)
    ap.add_argument("--captions", type=int, default=8,
                    help="score the first N of the 32 captions (Inception on a CPU is slow)")
    ap.add_argument("--features", default="inception", choices=["inception", "pixels"])
    ap.add_argument("--out", default="runs/ceiling")
    ap.add_argument("--noise-psnr", type=float, nargs="*", default=[],
                    help="also score the fresh images plus Gaussian noise at these PSNRs (dB): how "
                         "clean a rendering these features ask for")
    ap.add_argument("--skip-recon", action="store_true", help="only the fresh and noise rows")
    a = ap.parse_args()

    # the captions benchmarks/flow/diversity_eval.py scores
    captions = partial_prompts(32, seed=0)[: a.captions]
    keep = {normalize_caption(c) for c in captions}
    out = Path(a.out)
    real = subset(Path(a.real), keep, out / "real_subset")
    picked = pick_fresh(Path(a.fresh), captions, a.per_caption)
    files = [f for c in sorted(picked) for f in picked[c]]
    prompts = [c for c in sorted(picked) for _ in picked[c]]
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    tok = Tokenizer.from_pretrained(a.tokenizer, device=torch.device("cpu")).eval()
    rows = {"fresh": write_folder(out / "fresh_set", images, prompts)}
    if not a.skip_recon:
        rows["recon"] = write_folder(out / "recon_set", reconstruct(tok, images), prompts)
    rng = np.random.default_rng(0)
    for db in a.noise_psnr:
        sd = 255.0 / 10 ** (db / 20)  # PSNR = 20 log10(255 / rms error)
        noisy = np.clip(images + rng.normal(0, sd, images.shape), 0, 255).round().astype(np.uint8)
        rows[f"noise_{db:g}dB"] = write_folder(out / f"noise_{db:g}dB_set", noisy, prompts)
    if a.samples:
        rows["samples"] = subset(Path(a.samples), keep, out / "samples_subset")
    result = {"features": a.features, "captions": len(picked), "images": len(files)}
    for name, folder in rows.items():
        result[name] = summary(folder, str(real), a.features, images.shape[1])
        print(name, json.dumps(result[name]), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
