"""`flowtok bench report`: the records of scripts/gpu_check.sh as tables for RESULTS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import JsonOpt


def report(
    directory: Annotated[Path, typer.Argument(
        help="The folder scripts/gpu_check.sh wrote (its $OUT): NN_step.json files.")],
    json_out: JsonOpt = False,
) -> None:
    """Turn the JSON records of scripts/gpu_check.sh into markdown tables to paste into
    benchmarks/RESULTS.md: GPU name, torch / Triton / CUDA versions and the exact command, one
    row per step (ok, failed, timeout, skipped, or missing when the run was cut before it),
    then pytest -m gpu, bench kernels, bench train, bench sample (with --compare) and the
    speed targets of issue 25, each met, missed or not measured.

    Examples:
      flowtok bench report out/gpu_check
      flowtok bench report ~/gpu_run --json
    """
    from flowtok.bench.report import load_report, render_markdown

    result = load_report(directory)
    markdown = render_markdown(result)
    if json_out:
        common.print_json({**result, "markdown": markdown})
        return
    typer.echo(markdown, nl=False)
