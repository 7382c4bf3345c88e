"""`flowtok data shapes`: write the procedural shapes data set (docs/shapes.md) as an image folder."""

from __future__ import annotations

from typing import Annotated

import typer

from flowtok_cli.common import print_json, print_table, usage_error
from flowtok_cli.options import JsonOpt, OutOpt, SeedOpt


def _val_fraction(val: float, n: int) -> float:
    """--val below 1 is a fraction of --n; 1 or more is a count of images."""
    if val < 0:
        raise usage_error(f"--val {val}: expected a fraction below 1 or a count of images")
    if val < 1:
        return val
    if val != int(val) or val >= n:
        raise usage_error(f"--val {val}: a count of validation images must be a whole number below --n {n}")
    return int(val) / n


def shapes(
    out: OutOpt,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 20000,
    size: Annotated[
        int, typer.Option("--size", help="Canvas side in pixels: 32 or 64 (any multiple of 16 from 32).")
    ] = 32,
    seed: SeedOpt = 0,
    val: Annotated[
        float,
        typer.Option("--val", help="Validation split: a fraction below 1 (0.05) or a count (1000)."),
    ] = 0.0,
    two_object_prob: Annotated[
        float,
        typer.Option("--two-object-prob", min=0.0, max=1.0, help="Share of two-object scenes."),
    ] = 0.2,
    partial: Annotated[
        float,
        typer.Option(
            "--partial",
            help="Probability that a one-object caption leaves out its size, position or both "
            "(e.g. 'a red circle'); images are unchanged.",
        ),
    ] = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Write the procedural shapes data set: PNGs + metadata.jsonl ({"file_name", "text"}).

    Image i depends only on (--seed, i). --val puts the last images in OUT/val/, the rest in OUT/train/.

    --partial P makes a share P of one-object captions partial ("a red circle", "a large red
    circle", "a red circle at the top"); the images stay byte-identical to the set without it.

    OUT/dataset.json records the arguments. An earlier shapes data set in OUT is replaced.

    Examples:
      flowtok data shapes -o data/shapes --n 20000 --size 32 --seed 0
      flowtok data shapes -o data/shapes64 --n 5000 --size 64 --val 0.05
      flowtok data shapes -o data/shapes --n 20000 --val 1000 --json
      flowtok data shapes -o data/shapes_partial --n 20000 --partial 0.5
    """
    from tqdm import tqdm

    from flowtok.data.shapes import check_size, write_dataset

    check_size(size)  # ConfigError -> exit 2 before any file is written
    fraction = _val_fraction(val, n)
    with tqdm(total=n, unit="img", desc="shapes", disable=None, leave=False) as bar:
        info = write_dataset(
            out, n, size, seed, fraction, two_object_prob, progress=bar.update, partial=partial
        )
    if json_out:
        print_json(info)
        return
    splits = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
    print_table(
        [
            ("folder", info["out"]),
            ("images", f"{info['n']} ({splits})"),
            ("two-object", str(info["two_object_scenes"])),
            ("partial", f"{info['partial_captions']} captions (--partial {info['partial']:g})"),
            ("size", f"{info['size']} px"),
            ("seed", str(info["seed"])),
        ],
        "shapes data set written",
    )
