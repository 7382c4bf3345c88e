"""`flowtok eval diversity`: per-caption diversity, precision / recall and FID of generated images
against real images of the same captions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import BatchSizeOpt, DeviceOpt, InceptionWeightsOpt, JsonOpt

CAPTION_WIDTH = 40  # longer captions are shortened in the table (the JSON has them whole)
COLUMNS = (("n_gen", "n_gen", "d"), ("n_real", "n_real", "d"), ("k", "k", "d"),
           ("diversity", "diversity_ratio", ".3f"), ("feat_div", "feature_diversity_ratio", ".3f"),
           ("precision", "precision", ".3f"), ("recall", "recall", ".3f"), ("fid", "fid", ".2f"))
SUMMARY = (("diversity ratio (pixels)", "diversity_ratio"),
           ("diversity ratio (features)", "feature_diversity_ratio"),
           ("precision", "precision"), ("recall", "recall"), ("FID per caption", "fid"))


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _short(text: str) -> str:
    return text if len(text) <= CAPTION_WIDTH else text[:CAPTION_WIDTH - 1] + "…"


def _stat(stat: dict) -> str:
    if not stat["n"]:
        return "-"
    return f"median {stat['median']:.3f}  mean {stat['mean']:.3f}  ({stat['n']} captions)"


def diversity(
    gen: Annotated[Path, typer.Argument(help="Generated images with metadata.jsonl (captions).")],
    real: Annotated[Path, typer.Option(
        "--real", help="Real images with metadata.jsonl, or a data set root holding "
        "train/ (and val/).")],
    min_samples: Annotated[int, typer.Option(
        "--min-samples", min=2, help="Score captions with at least this many images on "
        "both sides.")] = 2,
    k: Annotated[int, typer.Option(
        "--k", "-k", min=1, help="Neighbours for the precision / recall manifolds (lowered to "
        "n - 1 for small captions).")] = 3,
    min_fid: Annotated[int, typer.Option(
        "--min-fid", min=2, help="Per-caption FID only with at least this many images per "
        "side.")] = 50,
    features: Annotated[str, typer.Option(
        "--features", help="inception (FID network, needs its weights) or pixels (raw "
        "pixels, no network).")] = "inception",
    pixel_size: Annotated[int, typer.Option(
        "--pixel-size", min=1, help="Side images are resized to for the pixel metrics.")] = 64,
    batch_size: BatchSizeOpt = 50,
    weights: InceptionWeightsOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Per-caption diversity of generated images against real images of the same caption.

    For every caption with at least --min-samples images in GEN and in --real (captions are
    matched lowercased, whitespace collapsed, final period dropped): the diversity ratio (mean
    pairwise pixel MSE among generated images / the same among real ones; below 1 means less
    varied than the data, 0 means one image per caption), the same ratio in Inception features,
    improved precision (fidelity) and recall (coverage) of Kynkäänniemi et al. 2019, and FID
    where both sides have --min-fid images. Then the median and mean over captions.

    Examples:
      flowtok eval diversity runs/t2i/samples --real data/shapes
      flowtok eval diversity out/gen --real data/shapes/val --features pixels --json
      flowtok eval diversity out/gen --real data/emoji/train --k 5 --min-fid 100 --device cuda
    """
    from flowtok.eval.diversity import diversity_between

    result = diversity_between(gen, real, min_samples=min_samples, k=k, min_fid=min_fid,
                               features=features, pixel_size=pixel_size, batch_size=batch_size,
                               device=device, weights=weights)
    if json_out:
        common.print_json(result)
        return
    header = f"  {'caption':<{CAPTION_WIDTH}}" + "".join(f"  {name:>9}" for name, _, _ in COLUMNS)
    typer.echo(f"Diversity: {gen} vs {real} ({result['features']} features)")
    typer.echo(header)
    for row in result["captions"]:
        cells = "".join(f"  {_cell(row[key], fmt):>9}" for _, key, fmt in COLUMNS)
        typer.echo(f"  {_short(row['caption']):<{CAPTION_WIDTH}}{cells}")
    summary = result["summary"]
    rows = [(label, _stat(summary[key])) for label, key in SUMMARY]
    rows += [("captions scored", str(summary["captions_scored"])),
             ("captions skipped", (f"{summary['captions_skipped']} (fewer than "
                                   f"{result['min_samples']} images on a side)"))]
    common.print_table(rows, "summary:")
