"""Each training image's style: the value of one metadata.jsonl field (``flow.style_key``).

Emoji data hold two drawings of most names (Noto and Twemoji, field "style"). A text -> image
flow trained on both under one caption must split one source distribution into two pictures and
on a CPU budget draws blends of them; told which drawing it is learning, it keeps each whole and
sampling takes the styles in turn (flowtok.pipeline, ``FlowTokPipeline.style_indices``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from flowtok.data.imagefolder import read_metadata_field
from flowtok.errors import DataError


def style_values(folder: str | Path, names: list[str], key: str) -> list[str]:
    """The ``key`` field of every image in ``names`` (relative file names), from the folder's
    metadata.jsonl; an image without it is a DataError naming it."""
    found = read_metadata_field(Path(folder), (key,))
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{folder}: {len(missing)} images have no {key!r} field in metadata.jsonl "
                        f"(e.g. {missing[0]}); add it or drop --set flow.style_key")
    return [found[n] for n in names]


def style_indices(values: list[str], styles: tuple[str, ...]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """(n,) indices of ``values`` in ``styles``, and the styles: the sorted distinct values
    when ``styles`` is empty. A value outside a given list is a DataError."""
    styles = styles or tuple(sorted(set(values)))
    index = {s: i for i, s in enumerate(styles)}
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise DataError(f"style values {unknown} are not in flow.styles {list(styles)}")
    return torch.tensor([index[v] for v in values], dtype=torch.long), styles


def attach_styles(flow_cfg, folder: str | Path, latents) -> None:
    """Read ``flow_cfg.style_key`` for every image of ``latents`` (a LatentSet of ``folder``),
    set ``latents.styles`` and, when empty, ``flow_cfg.styles`` (the sorted distinct values)."""
    values = style_values(folder, latents.names, flow_cfg.style_key)
    latents.styles, flow_cfg.styles = style_indices(values, tuple(flow_cfg.styles))
