"""Deepen a trained flow transformer without changing what it computes.

A DiT block with adaLN-Zero is the identity when its two gates are zero. So new blocks appended
after the trained ones, with zero modulation rows (gates 0, shift 0, scale 0) and freshly
initialised attention / MLP weights, leave the velocity exactly as it was; training then opens
the gates. This buys a memorising model more capacity without discarding the epochs it already
has (benchmarks/RESULTS.md, text -> image third pass).
"""

from __future__ import annotations

import torch

from flowtok.flow.transformer import FlowTransformer

MODS_PER_BLOCK = 6  # shift1, scale1, gate1, shift2, scale2, gate2
FINAL_MODS = 2  # the final layer's shift, scale


def grow_flow(old: FlowTransformer, new: FlowTransformer) -> None:
    """Copy ``old`` into the deeper ``new`` (same width, heads, MLP; new.depth > old.depth): every
    trained weight is kept, blocks old.depth.. stay as ``new`` initialised them, and their rows of
    the shared adaLN GEMM are zeroed, so ``new`` computes what ``old`` did."""
    if new.width != old.width or new.depth <= old.depth:
        raise ValueError(f"grow_flow needs the same width and a larger depth, got width "
                         f"{old.width} -> {new.width}, depth {old.depth} -> {new.depth}")
    w, d0 = old.width, old.depth
    src = old.state_dict()
    dst = new.state_dict()
    for name, value in src.items():
        if name.startswith("adaln."):
            continue
        if dst[name].shape != value.shape:
            raise ValueError(f"grow_flow: {name} is {tuple(value.shape)} in the trained model and "
                             f"{tuple(dst[name].shape)} in the new one (only depth may change)")
        dst[name] = value.clone()
    kept = MODS_PER_BLOCK * d0 * w  # rows of the trained blocks' modulation
    for part in ("weight", "bias"):
        old_p, new_p = src[f"adaln.1.{part}"], torch.zeros_like(dst[f"adaln.1.{part}"])
        new_p[:kept] = old_p[:kept]
        new_p[-FINAL_MODS * w:] = old_p[-FINAL_MODS * w:]  # the final layer's rows move to the end
        dst[f"adaln.1.{part}"] = new_p
    new.load_state_dict(dst, strict=True)
