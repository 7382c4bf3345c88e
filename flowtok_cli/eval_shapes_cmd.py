"""`flowtok eval shapes`: score a folder of images against their prompts with ShapesEval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli.common import print_json, print_table, set_json_errors

ROWS = ("color", "shape", "size", "position", "count", "all_correct")


def shapes(
    folder: Annotated[Path, typer.Argument(help="Folder with images and metadata.jsonl.")],
    failures: Annotated[
        int, typer.Option("--failures", min=0, help="How many failed images to list in the table.")
    ] = 5,
    json_out: Annotated[
        bool, typer.Option("--json", callback=set_json_errors,
                           help="Print JSON (every failure included) instead of a table.")
    ] = False,
) -> None:
    """Score images against their prompts: colour, shape, size, position, count, all-correct.

    FOLDER holds images and a metadata.jsonl whose "text" is each image's prompt.

    Prompts outside the caption grammar score as wrong and are counted as unparseable.

    Size and position are scored only for prompts that state them (two-object prompts name no
    size; partial prompts such as "a red circle" may name neither).

    For one-object prompts that leave the position or size out, the table shows what the images
    chose (detected cells / sizes) and its total-variation distance from the data set's uniform
    choice (0 = same; per prompt for prompts given twice or more).

    Examples:
      flowtok eval shapes data/shapes/val
      flowtok eval shapes runs/t2i/samples --json
    """
    from flowtok.eval.shapes_eval import score_folder

    result = score_folder(folder)
    if json_out:
        print_json(result)
        return
    rows = []
    for key in ROWS:
        value = result[key]
        scored = result["scored"].get(key, result["n"])
        rows.append((key, "-" if value is None else f"{100 * value:6.2f}%  ({scored} images)"))
    rows.append(("unparseable", str(result["unparseable"])))
    for attr, part in result["unstated"].items():
        if not part["n"]:
            continue
        tv = "-" if part["tv"] is None else f"{part['tv']:.3f}"
        per_prompt = (
            "" if part["prompt_tv"] is None
            else f", per prompt {part['prompt_tv']:.3f} ({len(part['per_prompt'])} prompts)"
        )
        counted = f"{part['counted']} of {part['n']} images counted (one object seen)"
        rows.append((f"unstated {attr}", f"TV {tv}{per_prompt}; {counted}"))
        rows.append(("", ", ".join(f"{k} {v}" for k, v in part["counts"].items())))
    print_table(rows, f"ShapesEval: {folder} ({result['n']} images)")
    shown = result["failures"][:failures]
    if shown:
        failed = result["n"] - round(result["all_correct"] * result["n"])
        typer.echo(f"failures (first {len(shown)} of {failed}):")
        for f in shown:
            seen = "; ".join(f["seen"]) or "nothing"
            typer.echo(f"  {f.get('file_name', f['index'])}: {f['prompt']!r}  wrong: "
                       f"{', '.join(f['wrong'])}  seen: {seen}")
