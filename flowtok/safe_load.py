"""Loading weights from strangers safely: safetensors only, never pickle, clear errors.

Pickle files (.pt, .pth, .bin, .ckpt, .pkl) can run arbitrary code when loaded, so flowtok
refuses them with a message instead of opening them. Every other failure (missing file,
truncated or corrupted safetensors) becomes a one-line CheckpointError that names the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from flowtok.errors import CheckpointError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def refuse_pickle(path: str | Path) -> None:
    """Raise CheckpointError when ``path`` names a pickle file."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: is a pickle file ({path.suffix}); flowtok never loads pickle files because "
            "loading them can run arbitrary code; save the weights as safetensors first"
        )


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file onto the CPU; missing, pickled or damaged files raise
    CheckpointError with the path and what to do."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    refuse_pickle(path)
    if not path.is_file():
        folder = path.parent
        pickles = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES) \
            if folder.is_dir() else []
        if pickles:
            raise CheckpointError(
                f"{folder}: found {', '.join(pickles)} but flowtok never loads pickle files "
                f"(they can run code); convert them to {path.name} (safetensors) first"
            )
        raise CheckpointError(f"{path}: missing; is this a flowtok model or checkpoint folder?")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"{path}: corrupted or truncated safetensors file ({reason}); re-copy or re-export it"
        ) from e
