"""`flowtok train tokenizer`: train the 1D image tokenizer on a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import ConfigOpt, DeviceOpt, JsonOpt, OutOpt, PresetOpt, SetOpt


def tokenizer(
    data: Annotated[Path, typer.Option("--data", help="Folder of training images (recursive).")],
    out: OutOpt,
    val: Annotated[Path | None, typer.Option(
        "--val", help="Held-out folder for PSNR / SSIM / ShapesEval and sample grids.")] = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue exactly from OUT/checkpoints/latest.")] = False,
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop cleanly (with a checkpoint) after this many minutes.")] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the image tokenizer; the EMA model is exported to OUT/model/.

    Writes OUT/config.json (resolved config), OUT/log.jsonl, OUT/samples/step_N.png,
    OUT/checkpoints/step_N/ and OUT/model/ (read it with Tokenizer.from_pretrained or
    `--tokenizer OUT/model`).

    Examples:
      flowtok data shapes -o data/shapes --n 20000 --size 32
      flowtok train tokenizer --data data/shapes/train --val data/shapes/val --preset shapes -o runs/tok
      flowtok train tokenizer --data imgs/ -o runs/tok --set train_tokenizer.max_steps=8000
      flowtok train tokenizer --data imgs/ -o runs/tok --resume --max-minutes 20
      OMP_NUM_THREADS=1 flowtok train tokenizer --data data/shapes/train -o runs/tok  # shared CPU

    The cosine schedule is sized in steps (train_tokenizer.max_steps); --max-minutes is a safety
    stop, so size max_steps to the time you have (shapes: 5000 steps ~ 22 CPU minutes).
    """
    from flowtok.config import load_config
    from flowtok.data.imagefolder import load_folder
    from flowtok.errors import DataError
    from flowtok.train.tokenizer_task import TokenizerTask
    from flowtok.train.trainer import Trainer

    if resume and (out / "config.json").is_file() and preset is None and config is None \
            and not overrides:
        cfg = load_config(out / "config.json")
    else:
        cfg = common.resolve_cli_config(preset, config, overrides)
    size = cfg.tokenizer.image_size
    train = load_folder(data, size)
    for name, why in train.failed:
        common.warn(f"skipped {name}: {why}")
    if len(train.images) == 0:
        raise DataError(f"{data}: no readable images; pass a folder of png/jpg/webp/bmp/gif files")
    val_images = val_captions = None
    if val is not None:
        v = load_folder(val, size)
        for name, why in v.failed:
            common.warn(f"skipped {name}: {why}")
        val_images, val_captions = v.images, [r.caption for r in v.records]
    task = TokenizerTask(cfg, train.images, val_images, val_captions)
    trainer = Trainer(task, cfg.train_tokenizer, out, full_config=cfg, device=device,
                      progress=not json_out and common.is_tty())
    common.fit_and_report(trainer, out, resume, max_minutes, json_out, "tokenizer training", None)
