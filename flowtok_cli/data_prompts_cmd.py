"""`flowtok data prompts`: the canonical shapes prompts that ShapesEval scores text -> image on,
or partial prompts ("a red circle") that leave size and position free, to measure diversity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli.options import SeedOpt

KINDS = ("canonical", "partial")


def prompts(
    out: Annotated[Path, typer.Option("--out", "-o", help="Text file to write, one prompt per line.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of prompts.")] = 200,
    seed: SeedOpt = 0,
    two_object_prob: Annotated[
        float, typer.Option("--two-object-prob", min=0.0, max=1.0, help="Share of two-object prompts.")
    ] = 0.2,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="canonical: fully stated prompts; partial: 'a {color} {shape}' only, every "
            "colour x shape equally often (--two-object-prob ignored).",
        ),
    ] = "canonical",
) -> None:
    """Write a balanced, distinct list of shapes prompts (every colour, shape, size and cell
    equally often), the list `flowtok train flow` scores during training.

    --kind partial writes prompts that state neither size nor position, each colour x shape
    equally often; repeating them measures what a model chooses on its own.

    Examples:
      flowtok data prompts -o prompts.txt --n 200
      flowtok generate --prompts prompts.txt --model runs/t2i/model -o out/t2i && flowtok eval shapes out/t2i
      flowtok data prompts -o partial.txt --n 64 --kind partial
    """
    from flowtok.atomic import write_text_atomic
    from flowtok.data.shapes import canonical_prompts, partial_prompts
    from flowtok_cli.common import usage_error

    if kind not in KINDS:
        raise usage_error(f"--kind {kind}: expected one of {', '.join(KINDS)}")
    if out.is_dir():
        raise usage_error(f"{out}: is a folder; pass a file name with -o")
    if kind == "partial":
        lines = partial_prompts(n, seed=seed)
    else:
        lines = canonical_prompts(n, seed=seed, two_object_fraction=two_object_prob)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "".join(p + "\n" for p in lines))
    typer.echo(f"{out}: {len(lines)} prompts", err=True)
