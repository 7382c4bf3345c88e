"""`flowtok eval fid`: Fréchet Inception Distance between two image folders (or .npz statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import BatchSizeOpt, DeviceOpt, InceptionWeightsOpt, JsonOpt


def fid(
    real: Annotated[Path, typer.Argument(help="Reference images: a folder, or an .npz of mu/sigma.")],
    fake: Annotated[Path, typer.Argument(help="Generated images: a folder, or an .npz of mu/sigma.")],
    batch_size: BatchSizeOpt = 50,
    cache_stats: Annotated[Path | None, typer.Option(
        "--cache-stats", help="Reuse REAL's statistics from this .npz, or write them there "
        "(checked against REAL's file names and sizes).")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="Processes decoding and resizing images.")] = 0,
    weights: InceptionWeightsOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """FID with the standard TF Inception-v3 pool3 features and clean-fid resizing.

    Images are resized to 299x299 per channel with PIL bicubic on float values (clean-fid's
    "clean" mode) and scored by the 2015 TF Inception graph that FID papers use; the distance is
    computed in float64 without scipy. The network's weights are converted once, offline (see
    docs/eval.md); nothing is downloaded. FID depends on the number of images: compare sets of
    equal size (the paper protocols use 30K).

    Examples:
      flowtok eval fid data/coco/val2014 out/coco_samples
      flowtok eval fid data/coco/val2014 out/samples --cache-stats stats/coco_val.npz --json
      flowtok eval fid stats/coco_val.npz out/samples --device cuda --batch-size 200
    """
    from flowtok.eval.fid import fid_between

    result = fid_between(real, fake, batch_size=batch_size, device=device,
                         cache_stats=cache_stats, num_workers=workers, weights=weights)
    for w in result["warnings"]:
        common.warn(w)
    if json_out:
        common.print_json(result)
        return
    def source(side: dict) -> str:
        return f"{side['path']} ({side['n']} images, from {side['from']})"

    common.print_table([("FID", f"{result['fid']:.3f}"), ("real", source(result["real"])),
                        ("fake", source(result["fake"])), ("features", result["features"]),
                        ("resize", result["resize"])])
