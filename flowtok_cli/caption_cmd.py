"""`flowtok caption`: image -> text with the same flow run from image latent to text latent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import DeviceOpt, JsonOpt, ModelOpt, StepsOpt

# the readable formats, as flowtok.data.imagefolder.IMAGE_EXTENSIONS lists them (kept in step by
# a test: importing that module here would slow down --help)
IMAGE_FORMATS = "png, jpg, jpeg, webp, bmp, gif, tif, tiff"


def caption(
    images: Annotated[list[Path], typer.Argument(help=f"Image files ({IMAGE_FORMATS}).")],
    model: ModelOpt = None,
    steps: StepsOpt = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a caption for each image (image latent -> text latent by flow, then the decoder).

    Unreadable files are reported and the exit code is 1 after the readable ones are captioned.

    Examples:
      flowtok caption img.png
      flowtok caption a.png b.jpg --model runs/i2t/model --json
    """
    from flowtok.data.imagefolder import load_image
    from flowtok.errors import ConfigError, DataError
    from flowtok.pipeline import FlowTokPipeline

    if steps is not None:
        from flowtok.sampling_settings import check_steps

        check_steps(steps, option="--steps")
    pipe = FlowTokPipeline.from_pretrained(model, device=device)
    if pipe.i2t is None:
        raise ConfigError(f"{model}: this model folder has no image-to-text part (i2t/)")
    size = pipe.tokenizer.cfg.image_size
    arrays, names, failed = [], [], []
    for path in images:
        try:
            if path.is_dir():
                raise DataError(f"{path}: is a folder; pass image files, e.g. {path}/*.png")
            if not path.is_file():
                raise DataError(common.describe_missing(path))
            arrays.append(load_image(path, size, pipe.tokenizer.cfg.background))
            names.append(str(path))
        except DataError as e:
            failed.append(str(e))
    captions = pipe.caption(arrays, num_inference_steps=steps) if arrays else []
    results = [{"image": n, "caption": c} for n, c in zip(names, captions)]
    if json_out:
        common.print_json({"captions": results, "errors": failed})
    else:
        for r in results:
            typer.echo(f"{r['image']}\t{r['caption']}" if len(images) > 1 else r["caption"])
    if failed and json_out:
        common.echo_error(f"{len(failed)} of {len(images)} image(s) could not be read", 1,
                          errors=failed)
    else:
        for msg in failed:
            common.echo_error(msg, 1)
    if failed:
        raise typer.Exit(code=1)
