"""Held-out PSNR of a plain PCA code on an image data set: the linear baseline the emoji64
tokenizer starts from (flowtok/tokenizer/linear_basis.py).

    python benchmarks/tokenizer/pca_baseline.py --train data/emoji64/train --val data/emoji64/val \
        --components 512 768 1024 [--hflip]

Prints one JSON line per component count: val and train PSNR (of the set's MSE, on uint8
reconstructions, as `flowtok eval tokenizer` scores).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from flowtok.data.imagefolder import load_folder
from flowtok.eval.recon import mean_psnr
from flowtok.tokenizer.linear_basis import LinearBasis
from flowtok.tokenizer.model import to_uint8_images, uint8_to_float

TRAIN_SCORED = 300  # training images scored (the fit's own data: an upper bound)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--components", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--hflip", action="store_true", help="fit on the images and their mirrors")
    args = ap.parse_args()
    train = load_folder(args.train, args.size).images
    val = load_folder(args.val, args.size).images
    fit_on = uint8_to_float(torch.from_numpy(train))
    if args.hflip:
        fit_on = torch.cat([fit_on, fit_on.flip(-1)])
    for n in args.components:
        basis = LinearBasis(args.size, num_tokens=n, channels=1)
        stats = basis.fit(fit_on)

        def recon(images: np.ndarray, basis: LinearBasis = basis) -> np.ndarray:
            x = uint8_to_float(torch.from_numpy(images))
            return to_uint8_images(basis.decode(basis.encode(x), args.size).clamp(-1, 1))

        print(json.dumps({"components": n, "hflip": args.hflip, **stats,
                          "val_psnr": mean_psnr(recon(val), val),
                          "train_psnr": mean_psnr(recon(train[:TRAIN_SCORED]),
                                                  train[:TRAIN_SCORED])}))


if __name__ == "__main__":
    main()
