"""Image latents for the flow model: a tokenizer's posteriors (mean, logvar) of a set of images
with their captions, encoded from an image folder or taken from the head of a latent stream."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowtok.tokenizer.model import Tokenizer


@dataclass
class LatentSet:
    """Posteriors of a set of images with their captions: mean, logvar (n, K, C) float32."""

    mean: torch.Tensor
    logvar: torch.Tensor
    captions: list[str]
    names: list[str]
    styles: torch.Tensor | None = None  # (n,) style indices (flow.style_key), if the flow has styles


@torch.no_grad()
def encode_images(tokenizer: Tokenizer, images: np.ndarray, batch_size: int = 256,
                  progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, S, S, 3) -> posterior mean, logvar (n, K, C) on the CPU."""
    means, logvars = [], []
    for i in range(0, len(images), batch_size):
        post = tokenizer.encode(torch.from_numpy(images[i:i + batch_size]))
        means.append(post.mean.cpu())
        logvars.append(post.logvar.cpu())
        if progress is not None:
            progress(min(batch_size, len(images) - i))
    return torch.cat(means), torch.cat(logvars)


def latents_from_folder(tokenizer: Tokenizer, folder: str | Path, limit: int | None = None,
                        progress=None) -> LatentSet:
    """Encode an image folder with captions (metadata.jsonl or .txt sidecars) into a LatentSet."""
    from flowtok.data.imagefolder import load_folder
    from flowtok.errors import DataError

    loaded = load_folder(folder, tokenizer.cfg.image_size, limit, tokenizer.cfg.background)
    missing = [r.name for r in loaded.records if not r.caption]
    if missing:
        raise DataError(f"{folder}: {len(missing)} images have no caption (e.g. {missing[0]}); "
                        "add metadata.jsonl with file_name and text")
    if len(loaded.records) == 0:
        raise DataError(f"{folder}: no readable images found")
    mean, logvar = encode_images(tokenizer, loaded.images, progress=progress)
    return LatentSet(mean, logvar, [r.caption for r in loaded.records],
                     [r.name for r in loaded.records])


def stream_head(stream, n: int = 1024) -> LatentSet:
    """The first ``n`` samples of a webdataset ``SlotStreams`` of latents (decoding to
    webdataset.latent_sample tuples): latent statistics, caption vocabulary, sample grids."""
    rows = stream.head(n)
    return LatentSet(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
                     [r[2] for r in rows], [r[3] for r in rows])
