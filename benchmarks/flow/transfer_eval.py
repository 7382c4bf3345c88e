"""Does a text -> image model trained on a user's class-captioned folder draw the class, and the
class's variety? For the `varied` preset's transfer check (issue 24, benchmarks/flow/mnist_data.py).

Per caption ("a handwritten digit 3"): n samples, then
- fidelity: a k-nearest-neighbour classifier on the training images' pixels (no extra model;
  its accuracy on the real held-out images is printed beside it as the reference);
- variety: `flowtok eval diversity` against the training images (pixel and Inception features).

    python benchmarks/flow/transfer_eval.py --model runs/mnist_flow/model --data data/mnist \
        --grid benchmarks/flow/mnist_grid.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from diversity_eval import write_folder  # this folder's script: same metadata.jsonl layout
from PIL import Image

from flowtok.eval.diversity import diversity_between
from flowtok.pipeline import FlowTokPipeline

METRICS = ("diversity_ratio", "feature_diversity_ratio", "precision", "recall", "fid")
KNN_K = 5


def read_split(folder: Path, side: int) -> tuple[np.ndarray, list[str]]:
    """Grey images (N, side*side) in [0, 1] and their captions, from metadata.jsonl."""
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    ims = [grey(Image.open(folder / r["file_name"]), side) for r in rows]
    return np.stack(ims), [r["text"] for r in rows]


def grey(im: Image.Image, side: int) -> np.ndarray:
    im = im.convert("L")
    if im.size != (side, side):
        im = im.resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.float32).ravel() / 255.0


def knn_predict(queries: np.ndarray, refs: np.ndarray, ref_labels: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """Majority label among the k nearest references (squared L2 on pixels)."""
    d = torch.cdist(torch.from_numpy(queries), torch.from_numpy(refs))
    idx = d.topk(k, largest=False).indices.numpy()
    votes = ref_labels[idx]
    return np.array([np.bincount(v).argmax() for v in votes])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="folder with train/ and val/ (metadata.jsonl)")
    ap.add_argument("--per-caption", type=int, default=32)
    ap.add_argument("--side", type=int, default=28, help="side the classifier compares at")
    ap.add_argument("--features", nargs="+", default=["pixels", "inception"])
    ap.add_argument("--grid", default=None, help="write an 8-per-caption grid PNG here")
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guidance", type=float, default=None, help="default: the model's")
    ap.add_argument("--temperature", type=float, default=None, help="default: the model's")
    a = ap.parse_args()
    t0 = time.perf_counter()
    data = Path(a.data)
    refs, ref_caps = read_split(data / "train", a.side)
    val, val_caps = read_split(data / "val", a.side)
    captions = sorted(set(ref_caps))
    label = {c: i for i, c in enumerate(captions)}
    ref_y = np.array([label[c] for c in ref_caps])
    real_acc = float((knn_predict(val, refs, ref_y) == np.array([label[c] for c in val_caps])).mean())

    pipe = FlowTokPipeline.from_pretrained(a.model, device="cpu")
    images = pipe(captions, num_images_per_prompt=a.per_caption, seed=a.seed, batch_size=256,
                  guidance_scale=a.guidance, temperature=a.temperature)
    prompts = [c for c in captions for _ in range(a.per_caption)]
    gen = np.stack([grey(im, a.side) for im in images])
    pred = knn_predict(gen, refs, ref_y)
    truth = np.array([label[c] for c in prompts])
    per_caption = {c: float((pred[truth == i] == i).mean()) for i, c in enumerate(captions)}

    out = Path(a.out or Path("runs") / "transfer" / f"{Path(a.model).parent.name}_g{a.guidance}")
    write_folder(out, np.stack([np.asarray(im.convert("RGB")) for im in images]), prompts)
    row = {"model": a.model,
           "temperature": pipe.config.flow.temperature if a.temperature is None else a.temperature,
           "guidance": pipe.config.flow.guidance if a.guidance is None else a.guidance,
           "knn_accuracy_generated": float((pred == truth).mean()),
           "knn_accuracy_real_val": real_acc, "per_caption_accuracy": per_caption}
    for kind in a.features:
        s = diversity_between(out, data / "train", features=kind, pixel_size=images[0].size[0])["summary"]
        row[kind] = {k: round(s[k]["median"], 4) for k in METRICS
                     if isinstance(s.get(k), dict) and s[k].get("median") is not None}
    if a.grid:
        side = images[0].size[0]
        grid = Image.new("RGB", (8 * side, len(captions) * side))
        for r in range(len(captions)):
            for c in range(min(8, a.per_caption)):
                grid.paste(images[r * a.per_caption + c].convert("RGB"), (c * side, r * side))
        grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(a.grid)
    row["eval_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
