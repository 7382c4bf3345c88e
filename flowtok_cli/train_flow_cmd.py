"""`flowtok train flow`: train text -> image (t2i) or image -> text (i2t) on tokenizer latents."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common, launch
from flowtok_cli.options import ConfigOpt, DeviceOpt, JsonOpt, OutOpt, PresetOpt, SetOpt


def flow(
    data: Annotated[Path, typer.Option(
        "--data", help="Training images with captions (metadata.jsonl), or webdataset .tar "
        "shards of latents from `flowtok tokenize --format webdataset`.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="Trained tokenizer folder.")],
    out: OutOpt,
    task: Annotated[str, typer.Option("--task", help="t2i (text -> image) or i2t (image -> text).")] = "t2i",
    val: Annotated[Path | None, typer.Option("--val", help="Held-out images with captions.")] = None,
    eval_prompts: Annotated[int, typer.Option(
        "--eval-prompts", help="Canonical shapes prompts scored by ShapesEval at each evaluation "
        "(t2i on shapes data; 0 disables).")] = 200,
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue exactly from OUT/checkpoints/latest.")] = False,
    init: Annotated[Path | None, typer.Option(
        "--init", help="Start from this model folder's weights for --task (same config).")] = None,
    decoder_only: Annotated[bool, typer.Option(
        "--decoder-only", help="i2t with --init: freeze the projector and flow, and train the "
        "caption decoder on the flow's own endpoints.")] = False,
    max_minutes: Annotated[float | None, typer.Option(
        "--max-minutes", help="Stop cleanly (with a checkpoint) after this many minutes.")] = None,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    nproc: launch.NprocOpt = 1,
    shuffle_buffer: Annotated[int, typer.Option(
        "--shuffle-buffer", min=1, help="Streamed samples held per data slot (webdataset "
        "--data).")] = 1000,
) -> None:
    """Train one direction of FlowTok; the EMA model is exported to OUT/model/ (a model folder
    that `flowtok generate --model` / `flowtok caption --model` read).

    Examples:
      flowtok train flow --data data/shapes/train --val data/shapes/val --tokenizer runs/tok/model -o runs/t2i
      flowtok train flow --task i2t --data data/shapes/train --val data/shapes/val --tokenizer runs/tok/model -o runs/i2t
      flowtok train flow ... --set train_flow.max_steps=4000 --max-minutes 30
      flowtok train flow --task i2t --data data/emoji64/train --tokenizer runs/tok/model \
          --preset emoji64 --init runs/i2t/model --decoder-only -o runs/i2t_dec
      flowtok tokenize imgs/ -o wds/ -t runs/tok/model --format webdataset
      flowtok train flow --data wds/ --tokenizer runs/tok/model -o runs/t2i --preset XL --nproc 8

    Under torchrun, batch_size is per process: global batch = batch_size x processes x
    train_flow.grad_accum (see docs/scale-out.md).
    """
    from flowtok.config import load_config
    from flowtok.errors import ConfigError
    from flowtok.train.build import build_flow_task, flow_trainer

    launch.relaunch(nproc)
    if task not in ("t2i", "i2t"):
        raise ConfigError(f"--task {task!r}: use t2i or i2t")
    if resume and (out / "config.json").is_file() and preset is None and config is None and not overrides:
        cfg = load_config(out / "config.json")
    else:
        cfg = common.resolve_cli_config(preset, config, overrides)
    if decoder_only:
        cfg.train_flow.decoder_only = True
    if cfg.train_flow.decoder_only and (init is None or task != "i2t"):
        raise common.usage_error("--decoder-only needs --task i2t and --init MODEL_FOLDER (the "
                                 "image -> text model whose flow to keep)")
    flow_task = build_flow_task(
        cfg, task, tokenizer, data, val=val, eval_prompts=eval_prompts, init=init, device=device,
        shuffle_buffer=shuffle_buffer,
        on_encode=lambda folder: typer.echo(f"encoding {folder} with the tokenizer …", err=True))
    trainer = flow_trainer(flow_task, out, progress=not json_out and common.is_tty())
    common.fit_and_report(trainer, out, resume, max_minutes, json_out, "flow training", [("task", task)])
