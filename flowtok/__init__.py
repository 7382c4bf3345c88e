"""flowtok: text-to-image and image-to-text by flow matching between compact 1D token latents.

The library never prints and never imports the CLI; heavy modules (torch) load lazily so that
``import flowtok`` stays cheap: ``from flowtok import FlowTokPipeline`` imports torch only then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it, imported on first use (PEP 562)
_LAZY = {
    "FlowTokPipeline": "flowtok.pipeline",
    "Tokenizer": "flowtok.tokenizer.model",
    "FlowTokConfig": "flowtok.config",
    "load_preset": "flowtok.config",
    "FlowTokError": "flowtok.errors",
    "ConfigError": "flowtok.errors",
    "DataError": "flowtok.errors",
    "CheckpointError": "flowtok.errors",
    "ArgumentError": "flowtok.errors",
    "NumericalError": "flowtok.errors",
}

__all__ = ["ArgumentError", "CheckpointError", "ConfigError", "DataError", "FlowTokConfig",
           "FlowTokError", "FlowTokPipeline", "NumericalError", "Tokenizer", "__version__",
           "load_preset"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from flowtok.config import FlowTokConfig, load_preset
    from flowtok.errors import (
        ArgumentError,
        CheckpointError,
        ConfigError,
        DataError,
        FlowTokError,
        NumericalError,
    )
    from flowtok.pipeline import FlowTokPipeline
    from flowtok.tokenizer.model import Tokenizer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'flowtok' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
