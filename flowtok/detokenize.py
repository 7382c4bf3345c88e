"""Latent shards -> PNGs + metadata.jsonl: the inverse of tokenizing a folder of images
(flowtok.data.tokenize_parts), for looking at what a tokenizer keeps.

Each latent is decoded to ``OUT/<its image's relative name>.png`` and listed with its caption in
OUT/metadata.jsonl, so the folder reads back like the one that was tokenized.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flowtok.data.shards import read_shards
from flowtok.errors import ConfigError
from flowtok.image_files import save_png, write_metadata
from flowtok.tokenizer.model import Tokenizer, to_uint8_images


@torch.no_grad()
def decode_shards(latents: Path, out: Path, tokenizer: Path | None = None, *,
                  batch_size: int = 64, sample: bool = False, seed: int = 0,
                  device: str | torch.device | None = None) -> tuple[int, Path]:
    """Decode every latent of the shards folder ``latents`` with ``tokenizer`` (default: the
    one recorded in LATENTS/tokenizer.json): the posterior mean, or with ``sample`` a posterior
    sample drawn from ``seed``. Returns (images written, the tokenizer folder used). A tokenizer
    of another latent shape is a ConfigError."""
    from flowtok.device import resolve_device

    shards = read_shards(latents)
    path = tokenizer or Path(shards.tokenizer["path"])
    tok = Tokenizer.from_pretrained(path, device=resolve_device(device))
    K, C = tok.cfg.num_latent_tokens, tok.cfg.token_channels
    if (shards.tokenizer["K"], shards.tokenizer["C"]) != (K, C):
        raise ConfigError(f"{latents} holds {shards.tokenizer['K']}x{shards.tokenizer['C']} "
                          f"latents but {path} decodes {K}x{C}")
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(0, len(shards), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(shards)))
        z = shards.sample(idx, gen) if sample else shards.mean[idx].float()  # (B, K, C)
        for j, img in zip(idx.tolist(), to_uint8_images(tok.decode(z))):
            name = Path(shards.file_names[j]).with_suffix(".png").as_posix()
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            save_png(Image.fromarray(img), out / name, {})
            rows.append({"file_name": name, "text": shards.captions[j]})
    write_metadata(out, rows)
    return len(rows), path
