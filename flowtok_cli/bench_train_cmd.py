"""`flowtok bench train`: step time, samples/s and MFU of text-to-image flow training."""

from __future__ import annotations

from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import ConfigOpt, DeviceOpt, JsonOpt, PresetOpt, SetOpt

GIB = 1024**3


def train(
    preset: PresetOpt = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", "-b", help="Samples per step (default: the preset's, at most 256 on CUDA, "
        "32 on CPU).")] = None,
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help="Autocast dtype over fp32 weights: bf16 | fp16 | fp32 (default: bf16 on "
        "CUDA, fp32 on CPU).")] = None,
    repeats: Annotated[int | None, typer.Option(
        "--repeats", help="Timed steps (median; default 10 CUDA, 3 CPU).")] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", help="Untimed steps first (default 3 CUDA, 1 CPU).")] = None,
    ema: Annotated[bool, typer.Option("--ema/--no-ema", help="Update an EMA copy each step, "
                                      "as the trainer does.")] = True,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and data.")] = 0,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Step time, samples/s and MFU of text-to-image flow training on random data.

    One step as the trainer runs it: projector + flow under autocast, AdamW, grad clipping,
    EMA. Model FLOPs = 3 x the forward of projector, alignment head and flow per sample; MFU
    divides them by this device's measured matmul ceiling. On a CPU it runs small presets
    only; its numbers mean nothing as absolutes.

    Examples:
      flowtok bench train --preset XL --batch 256
      flowtok bench train --preset B --dtype bf16 --json
      flowtok bench train --preset tiny --device cpu
    """
    import torch

    from flowtok.bench.train import TrainBenchOptions, run_train_bench

    if preset is None and config is None:
        cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        preset = "XL" if cuda else "tiny"
    cfg = common.resolve_cli_config(preset, config, overrides)
    r = run_train_bench(cfg, TrainBenchOptions(batch=batch, dtype=dtype, device=device,
                                               repeats=repeats, warmup=warmup, ema=ema, seed=seed))
    if json_out:
        common.print_json(r)
        return
    dev, c = r["device"], r["ceiling"]
    mem = r["peak_memory_bytes"]
    rows = [
        ("step", f"{r['step_ms']:.2f} ms (min {r['step_min_ms']:.2f}, max {r['step_max_ms']:.2f})"),
        ("samples/s", f"{r['samples_per_s']:.1f}"),
        ("model FLOPs/sample", (f"{r['flops_per_sample']['total'] / 1e9:.2f} GFLOP "
                               f"({r['flops_per_sample']['definition']})")),
        ("achieved", f"{r['tflops_per_s']:.3f} TFLOP/s"),
        ("MFU (measured ceiling)", (f"{100 * r['mfu']:.1f}% of {c['tflops']:.2f} TFLOP/s "
                                   f"({c['dtype']} GEMM {'x'.join(map(str, c['shape']))})")),
        ("MFU (datasheet)", "-" if r["mfu_datasheet"] is None
         else f"{100 * r['mfu_datasheet']:.1f}% of {dev['datasheet_tflops']:.0f} TFLOP/s"),
        ("peak memory", "-" if mem is None else f"{mem / GIB:.2f} GiB"),
        ("parameters", f"{r['params'] / 1e6:.1f}M (projector + flow)"),
        ("timing", (f"median of {r['timing']['repeats']} after {r['timing']['warmup']} warm-up, "
                   f"{r['timing']['method']}")),
    ]
    common.print_table(rows, title=(
        f"flowtok bench train: preset {r['preset']}, batch {r['batch']}, {r['dtype']} on "
        f"{dev['name']} ({dev['type']}); {r['weights']}; EMA {'on' if r['ema'] else 'off'}"))
    for note in r["notes"][1:]:
        typer.echo(f"note: {note}")
