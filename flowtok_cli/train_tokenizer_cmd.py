"""`flowtok train tokenizer`: train the 1D image tokenizer on a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common, launch
from flowtok_cli.options import ConfigOpt, DeviceOpt, JsonOpt, OutOpt, PresetOpt, SetOpt


def tokenizer(
    data: Annotated[Path, typer.Option(
        "--data", help="Folder of training images (recursive), or of webdataset .tar shards "
        "(key.jpg/png + key.txt), which are streamed through a shuffle buffer.")],
    out: OutOpt,
    val: Annotated[Path | None, typer.Option(
        "--val", help="Held-out folder for PSNR / SSIM / ShapesEval and sample grids.")] = None,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue exactly from OUT/checkpoints/latest.")] = False,
    init: Annotated[Path | None, typer.Option(
        "--init", help="Start from the weights of this tokenizer folder (same architecture).")
    ] = None,
    decoder_only: Annotated[bool, typer.Option(
        "--decoder-only", help="Freeze the encoder (that of --init, or the fitted PCA basis of "
        "tokenizer.linear_basis) and train the decoder, so flow models trained on its latents "
        "stay valid.")] = False,
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop cleanly (with a checkpoint) after this many minutes.")] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    nproc: launch.NprocOpt = 1,
    shuffle_buffer: Annotated[int, typer.Option(
        "--shuffle-buffer", min=1, help="Streamed samples held per data slot (webdataset "
        "--data).")] = 1000,
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
      flowtok train tokenizer --data imgs/ -o runs/tok_ft --init runs/tok/model --decoder-only
      flowtok train tokenizer --data data/emoji64/train --preset emoji64 -o runs/tok --decoder-only
      OMP_NUM_THREADS=1 flowtok train tokenizer --data data/shapes/train -o runs/tok  # shared CPU
      flowtok train tokenizer --data shards/ -o runs/tok --preset B --nproc 8  # 8 GPUs, DDP
      torchrun --nnodes 4 --nproc-per-node 8 --rdzv-endpoint HOST:29500 -m flowtok_cli train tokenizer ...

    Under torchrun, batch_size is per process: global batch = batch_size x processes x
    train_tokenizer.grad_accum (see docs/scale-out.md).

    The cosine schedule is sized in steps (train_tokenizer.max_steps); --max-minutes is a safety
    stop, so size max_steps to the time you have (shapes: 5000 steps ~ 22 CPU minutes).
    """
    from flowtok.config import load_config
    from flowtok.data.imagefolder import load_folder
    from flowtok.data.webdataset import SlotStreams, has_shards, image_of
    from flowtok.errors import DataError
    from flowtok.train.tokenizer_task import TokenizerTask
    from flowtok.train.trainer import Trainer

    launch.relaunch(nproc)
    if resume and (out / "config.json").is_file() and preset is None and config is None \
            and not overrides:
        cfg = load_config(out / "config.json")
    else:
        cfg = common.resolve_cli_config(preset, config, overrides)
    start = None
    if init is not None:
        from flowtok.tokenizer.model import Tokenizer

        start = Tokenizer.from_pretrained(init)
        if start.cfg != cfg.tokenizer and (preset or config or overrides):
            common.warn(f"the tokenizer architecture comes from --init {init}; the preset/config "
                        "supplies only the training recipe")
        cfg.tokenizer = start.cfg
    if decoder_only:
        cfg.train_tokenizer.decoder_only = True
    if cfg.train_tokenizer.decoder_only and init is None and not cfg.tokenizer.linear_basis:
        raise common.usage_error("--decoder-only needs --init TOKENIZER_FOLDER (the model whose "
                                 "encoder to keep) or tokenizer.linear_basis: true")
    size, bg = cfg.tokenizer.image_size, cfg.tokenizer.background
    if has_shards(data):
        train_images = SlotStreams(data, lambda s: image_of(s, size, bg), cfg.train_tokenizer.seed,
                                   shuffle_buffer)
    else:
        train = load_folder(data, size, background=bg)
        for name, why in train.failed:
            common.warn(f"skipped {name}: {why}")
        if len(train.images) == 0:
            raise DataError(f"{data}: no readable images; pass a folder of png/jpg/webp/bmp/gif "
                            "files")
        train_images = train.images
    val_images = val_captions = None
    if val is not None:
        v = load_folder(val, size, background=bg)
        for name, why in v.failed:
            common.warn(f"skipped {name}: {why}")
        val_images, val_captions = v.images, [r.caption for r in v.records]
    import torch

    torch.manual_seed(cfg.train_tokenizer.seed)  # reproducible init (torch's own seed is random)
    task = TokenizerTask(cfg, train_images, val_images, val_captions, init=start)
    trainer = Trainer(task, cfg.train_tokenizer, out, full_config=cfg, device=device,
                      progress=not json_out and common.is_tty())
    common.fit_and_report(trainer, out, resume, max_minutes, json_out, "tokenizer training", None)
