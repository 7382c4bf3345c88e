"""Emoji retrieval metrics for a model trained on `flowtok data emoji`: prompt fidelity and captions.

Both are nearest-neighbour ranks over every emoji of the data set, so they need no extra model:

* prompt fidelity: generate one image per emoji name, encode it with the model's own tokenizer
  (posterior mean) and rank every emoji by the distance from that latent to its nearest real
  image (either style); the prompted emoji should come first.
* captioning: caption real emoji images, embed the captions and every emoji name with the model's
  text encoder (mean-pooled token features, L2-normalised: the sentence embedding MiniLM was
  trained for) and rank the names by cosine similarity; the true name should come first.

The score is top-k accuracy (k = 1 and 5) over the chosen names/images.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowtok.errors import DataError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class EmojiRecord:
    """One image of the data set: its file, its emoji name (the caption) and split."""

    path: Path
    name: str
    split: str


def read_emoji_dataset(root: str | Path) -> list[EmojiRecord]:
    """Every image of a `flowtok data emoji` folder (root/{train,val}/metadata.jsonl)."""
    root = Path(root)
    records = []
    for split in SPLITS:
        meta = root / split / "metadata.jsonl"
        if not meta.is_file():
            continue
        for line_no, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                records.append(EmojiRecord(root / split / row["file_name"], row["text"], split))
            except (json.JSONDecodeError, KeyError) as e:
                raise DataError(f"{meta}:{line_no}: not a metadata record ({e})") from e
    if not records:
        raise DataError(f"{root}: no train/metadata.jsonl or val/metadata.jsonl; "
                        "make one with `flowtok data emoji -o DIR`")
    return records


def pick(items: list, n: int, seed: int) -> list:
    """A seeded sample of n items (all of them, shuffled, when there are fewer)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    return items[:n]


def topk_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rank (0 = best) of each row's target column; higher score is better, ties count against."""
    own = scores.gather(1, target[:, None])
    return (scores > own).sum(1) + (scores == own).sum(1) - 1


def summarize(ranks: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    out = {f"top{k}": float((ranks < k).float().mean()) for k in ks}
    out["mean_rank"] = float(ranks.float().mean() + 1)
    out["n"] = len(ranks)
    return out


@torch.no_grad()
def image_latents(pipe, images: list[Path | np.ndarray], batch_size: int = 128) -> torch.Tensor:
    """Tokenizer posterior means (n, K*C) of image files or uint8 (H, W, 3) arrays at the
    tokenizer's resolution."""
    from flowtok.data.imagefolder import load_image

    size, bg = pipe.tokenizer.cfg.image_size, pipe.tokenizer.cfg.background
    out = []
    for i in range(0, len(images), batch_size):
        arr = np.stack([im if isinstance(im, np.ndarray) else load_image(im, size, bg)
                        for im in images[i:i + batch_size]])
        out.append(pipe.tokenizer.encode(torch.from_numpy(arr)).mean.flatten(1).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def sentence_embeddings(text_encoder, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Mean-pooled, L2-normalised token features of the text encoder (n, D)."""
    out = []
    for i in range(0, len(texts), batch_size):
        chunk = texts[i:i + batch_size]
        ids, mask = text_encoder.tokenize(chunk)
        dev = next(text_encoder.parameters()).device
        feats = text_encoder(ids.to(dev), mask.to(dev)).float()
        m = mask.to(dev)[..., None].float()
        pooled = (feats * m).sum(1) / m.sum(1).clamp(min=1.0)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
    return torch.cat(out)


def nearest_emoji_scores(queries: torch.Tensor, reals: torch.Tensor, real_name_idx: torch.Tensor,
                         n_names: int) -> torch.Tensor:
    """Score (n_queries, n_names) = minus the distance to the nearest real image of each name."""
    # exact differences, not the |a|^2 + |b|^2 - 2ab shortcut, whose rounding can reorder close
    # neighbours
    dist = torch.cdist(queries, reals, compute_mode="donot_use_mm_for_euclid_dist")  # (q, r)
    best = torch.full((len(queries), n_names), float("inf"))
    best.scatter_reduce_(1, real_name_idx[None].expand(len(queries), -1), dist, reduce="amin")
    return -best


def prompt_fidelity(pipe, records: list[EmojiRecord], split: str = "train", n: int = 200,
                    seed: int = 0, steps: int | None = None, guidance: float | None = None,
                    progress=None, temperature: float | None = None) -> dict:
    """Generate one image per emoji name and rank the prompted emoji among all of them.
    ``temperature``: the pipeline's sampling temperature (None: the model's)."""
    names = sorted({r.name for r in records})
    index = {nm: i for i, nm in enumerate(names)}
    chosen = pick(sorted({r.name for r in records if r.split == split}), n, seed)
    if not chosen:
        raise DataError(f"no emoji in the {split} split")
    images = pipe(chosen, num_inference_steps=steps, guidance_scale=guidance, seed=seed,
                  progress=progress, temperature=temperature)
    gen = image_latents(pipe, [np.asarray(im.convert("RGB")) for im in images])
    reals = image_latents(pipe, [r.path for r in records])
    real_idx = torch.tensor([index[r.name] for r in records])
    scores = nearest_emoji_scores(gen, reals, real_idx, len(names))
    ranks = topk_ranks(scores, torch.tensor([index[c] for c in chosen]))
    top = scores.topk(5, dim=1).indices
    examples = [{"prompt": c, "rank": int(r) + 1, "nearest": [names[j] for j in t]}
                for c, r, t in zip(chosen, ranks.tolist(), top.tolist())]
    return {**summarize(ranks), "split": split, "candidates": len(names), "examples": examples}


def caption_retrieval(pipe, records: list[EmojiRecord], split: str = "train", n: int = 200,
                      seed: int = 0, steps: int | None = None, guidance: float | None = None,
                      batch_size: int = 64, progress=None) -> dict:
    """Caption real images and rank their true names among all emoji names (text-encoder space)."""
    names = sorted({r.name for r in records})
    index = {nm: i for i, nm in enumerate(names)}
    chosen = pick([r for r in records if r.split == split], n, seed)
    if not chosen:
        raise DataError(f"no emoji images in the {split} split")
    captions = []
    for i in range(0, len(chosen), batch_size):
        chunk = chosen[i:i + batch_size]
        captions.extend(pipe.caption([r.path for r in chunk], num_inference_steps=steps,
                                     guidance_scale=guidance))
        if progress is not None:
            progress(len(chunk))
    enc = pipe.text_encoder
    scores = sentence_embeddings(enc, captions) @ sentence_embeddings(enc, names).T
    ranks = topk_ranks(scores, torch.tensor([index[r.name] for r in chosen]))
    exact = float(np.mean([c.strip().lower() == r.name.lower() for c, r in zip(captions, chosen)]))
    examples = [{"image": str(r.path), "true": r.name, "caption": c, "rank": int(k) + 1}
                for r, c, k in zip(chosen, captions, ranks.tolist())]
    return {**summarize(ranks), "exact": exact, "split": split, "candidates": len(names),
            "examples": examples}
