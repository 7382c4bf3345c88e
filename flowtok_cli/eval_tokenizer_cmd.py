"""`flowtok eval tokenizer`: reconstruction quality of a tokenizer on a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import BatchSizeOpt, DeviceOpt, JsonOpt

SHAPES_ATTRIBUTES = ("all_correct", "color", "shape", "size", "position", "count")


def tokenizer(
    folder: Annotated[Path, typer.Argument(help="Folder of images (recursive).")],
    tokenizer: Annotated[Path, typer.Option(
        "--tokenizer", "-t", help="Tokenizer folder, e.g. runs/tok/model.")],
    n: Annotated[int | None, typer.Option("--n", help="Score only the first N images.")] = None,
    batch_size: BatchSizeOpt = 100,
    grid: Annotated[Path | None, typer.Option(
        "--grid", help="Also save a PNG grid of originals over reconstructions here.")] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """PSNR and SSIM of encode -> decode (posterior mean) over a folder; when the folder's
    captions are shapes prompts, also ShapesEval on the reconstructions.

    Examples:
      flowtok eval tokenizer data/shapes/val --tokenizer runs/tok/model
      flowtok eval tokenizer imgs/ -t runs/tok/model --n 500 --json
    """
    import numpy as np

    from flowtok.data.imagefolder import load_folder
    from flowtok.device import resolve_device
    from flowtok.errors import DataError
    from flowtok.eval.recon import mean_psnr, reconstruct, reconstruction_grid, ssim
    from flowtok.tokenizer.model import Tokenizer
    from flowtok.train.tokenizer_task import shapes_prompts

    tok = Tokenizer.from_pretrained(tokenizer, device=resolve_device(device))
    data = load_folder(folder, tok.cfg.image_size, limit=n, background=tok.cfg.background)
    for name, why in data.failed:
        common.warn(f"skipped {name}: {why}")
    if len(data.images) == 0:
        raise DataError(f"{folder}: no readable images")
    recon = reconstruct(tok, data.images, batch_size)
    per_image = ssim(recon, data.images)
    result: dict = {"n": len(data.images), "psnr": mean_psnr(recon, data.images),
                    "ssim": float(np.mean(per_image)), "failed": len(data.failed)}
    prompts = shapes_prompts([r.caption for r in data.records])
    if prompts is not None:
        from flowtok.eval.shapes_eval import score_images

        scores = score_images(list(recon), prompts, [r.name for r in data.records])
        result["shapes"] = {k: scores.get(k) for k in SHAPES_ATTRIBUTES}
        result["shapes_failures"] = scores.get("failures", [])[:20]
    if grid is not None:
        k = min(16, len(recon))
        reconstruction_grid(data.images[:k], recon[:k]).save(grid)
        result["grid"] = str(grid)
    if json_out:
        common.print_json(result)
        return
    rows = [("images", str(result["n"])), ("PSNR (dB)", f"{result['psnr']:.2f}"),
            ("SSIM", f"{result['ssim']:.4f}")]
    for k, v in result.get("shapes", {}).items():
        rows.append((f"ShapesEval {k}", "-" if v is None else f"{100 * v:.1f}%"))
    common.print_table(rows, title=f"tokenizer {tokenizer} on {folder}")
