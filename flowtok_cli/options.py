"""Option aliases shared by every command (defined once, as the typer docs suggest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok.config import preset_names
from flowtok_cli.common import set_json_errors

PresetOpt = Annotated[
    str | None,
    typer.Option("--preset", "-p", help=f"Preset name: {', '.join(preset_names())} (flowtok/presets/)."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file merged over the preset.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one field, e.g. --set flow.depth=8 (repeatable)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", callback=set_json_errors,
    help="Print machine-readable JSON instead of a table (errors: a JSON object on stderr).")]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda, cuda:1 … (default: cuda if available).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
InceptionWeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="Converted Inception weights (default: $FLOWTOK_FID_INCEPTION or "
                 "~/.cache/flowtok/fid_inception_v3.safetensors)."),
]

# model, sampling and batching options used by several commands (one definition each)
ModelOpt = Annotated[Path | None, typer.Option(
    "--model", "-m", help="Model folder (default: the model shipped with flowtok).")]
StepsOpt = Annotated[int | None, typer.Option(
    "--steps", min=1, help="Euler steps (default: the model's).")]
GuidanceOpt = Annotated[float | None, typer.Option(
    "--guidance", help="CFG scale; 1 = no guidance (default: the model's).")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.")]
