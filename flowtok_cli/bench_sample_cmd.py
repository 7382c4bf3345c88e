"""`flowtok bench sample`: text-to-image throughput, latency, memory and FLOP/s per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import ConfigOpt, DeviceOpt, JsonOpt, PresetOpt, SetOpt

GIB = 1024**3


def sample(
    preset: PresetOpt = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Images per batch.")] = 64,
    steps: Annotated[int, typer.Option("--steps", help="Euler steps.")] = 20,
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help="bf16 | fp16 | fp32 (default: bf16 on CUDA, fp32 on CPU).")] = None,
    guidance: Annotated[float | None, typer.Option(
        "--guidance", help="CFG scale; 1 runs one pass per step (default: the preset's).")] = None,
    compare: Annotated[bool, typer.Option(
        "--compare", help="Also time the flow stage under eager, torch.compile, each kernel and "
        "SDPA backend, CUDA graphs, and a 2D-latent DiT baseline.")] = False,
    compile_mode: Annotated[str, typer.Option(
        "--compile", help="torch.compile in --compare: auto (CUDA only) | on | off.")] = "auto",
    text_encoder: Annotated[str | None, typer.Option(
        "--text-encoder", help="clip | minilm | tiny, random weights (default: clip for B/XL/H, "
        "tiny for small presets).")] = None,
    repeats: Annotated[int | None, typer.Option(
        "--repeats", help="Timed repeats per measurement (median; default 5 CUDA, 3 CPU).")] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", help="Untimed calls first (default 2 CUDA, 1 CPU).")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Also save a PNG chart here (needs matplotlib: pip install matplotlib).")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and inputs.")] = 0,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Text-to-image throughput, latency, memory and FLOP/s, end to end and per stage.

    Images/s and ms/image for text encoding, flow steps with both CFG passes, and decoding;
    batch-1 latency; peak memory; FLOP/s as a share of this device's measured matmul ceiling.
    Weights are random: speed does not depend on their values. --compare also times the flow
    stage against plain PyTorch (separate torch ops + SDPA, no flowtok kernel: the 1.00x
    reference): fused kernels, compile(plain), compile(fused), each kernel and SDPA backend,
    CUDA graphs of each (CUDA only), and a 2D-latent DiT baseline. On a CPU it runs small presets only; its numbers mean nothing as absolutes.

    Examples:
      flowtok bench sample --preset XL --batch 64 --steps 20 --dtype bf16
      flowtok bench sample --preset XL --compare --json > xl.json
      flowtok bench sample --preset tiny --batch 8 --compare --device cpu
      flowtok bench sample --preset H --plot h100.png
    """
    import torch

    from flowtok.bench.plot import require_matplotlib, save_plot
    from flowtok.bench.sample import SampleBenchOptions, run_sample_bench

    if plot is not None:
        require_matplotlib()  # fail before a long run, not after
    if preset is None and config is None:
        cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        preset = "XL" if cuda else "tiny"
    cfg = common.resolve_cli_config(preset, config, overrides)
    opts = SampleBenchOptions(batch=batch, steps=steps, guidance=guidance, dtype=dtype,
                              device=device, repeats=repeats, warmup=warmup, compare=compare,
                              compile=compile_mode, text_encoder=text_encoder, seed=seed)
    result = run_sample_bench(cfg, opts)
    if plot is not None:
        save_plot(result, plot)
        result["plot"] = str(plot)
    if json_out:
        common.print_json(result)
        return
    print_sample_report(result)


def format_table(headers: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)
                 ) -> list[str]:
    """Columns in ``left`` left-aligned (names, notes), the others right-aligned (numbers)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [line(headers), *(line(r) for r in rows)]


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def print_sample_report(r: dict) -> None:
    dev = r["device"]
    echo = typer.echo
    echo(f"flowtok bench sample: preset {r['preset']}, batch {r['batch']}, {r['steps']} steps x "
         f"{r['cfg_passes']} CFG passes, {r['dtype']} on {dev['name']} ({dev['type']}, "
         f"torch {dev['torch']})")
    echo(f"weights: {r['weights']}")
    echo(f"text encoder: {r['text_encoder']['label']}")
    c = r["ceiling"]
    peak = f"; datasheet {dev['datasheet_tflops']:.0f} TFLOP/s" if dev["datasheet_tflops"] else ""
    echo(f"matmul ceiling: {c['tflops']:.2f} TFLOP/s measured ({c['dtype']} GEMM "
         f"{'x'.join(map(str, c['shape']))}){peak}")
    t = r["timing"]
    echo(f"timing: median of {t['repeats']} after {t['warmup']} warm-up, {t['method']}")
    echo("")
    labels = {"text": "text encoding", "flow": f"flow ({r['steps']} x {r['cfg_passes']} passes)",
              "decode": "decoding", "end_to_end": "end to end"}
    rows = []
    for key, label in labels.items():
        s = r["stages"][key]
        rows.append([label, _num(s["ms_per_batch"]), _num(s["ms_per_image"], ".3f"),
                     _num(s["images_per_s"], ".1f"), _num(s["flops_per_image"] / 1e9, ".3g"),
                     _num(s["tflops_per_s"], ".3f"), _num(s["pct_of_ceiling"], ".1f")])
    for line in format_table(["stage", "ms/batch", "ms/image", "img/s", "GFLOP/img", "TFLOP/s",
                              "% ceiling"], rows):
        echo("  " + line)
    echo(f"  batch-1 latency (both CFG passes): {r['batch1_latency_ms']:.2f} ms")
    mem = r["peak_memory_bytes"]
    echo(f"  peak memory: {'-' if mem is None else f'{mem / GIB:.2f} GiB'}")
    echo("")
    echo("paper figures, other hardware (not comparable as absolutes):")
    for p in r["paper"]:
        echo(f"  {p['model']}: {p['images_per_s']} img/s on {p['hardware']}, {p['dtype']}, "
             f"batch {p['batch']}, {p['steps']} steps")
    cmp_ = r.get("compare")
    if cmp_:
        echo("")
        echo(f"compare ({cmp_['stage']}, batch {cmp_['batch']}):")
        rows = [[row["name"], row["status"], _num(row["ms_per_batch"]),
                 _num(row.get("images_per_s"), ".1f"), _num(row.get("ratio_vs_plain"), ".2f"),
                 row["reason"] or ""] for row in cmp_["rows"]]
        for line in format_table(["variant", "status", "ms/batch", "img/s", "vs plain", "note"],
                                 rows, left=(0, 1, 5)):
            echo("  " + line)
        if cmp_["flowtok_over_2d"] is not None:
            echo(f"  FlowTok flow stage is {cmp_['flowtok_over_2d']:.2f}x the 2D-latent baseline's "
                 "speed")
    for note in r["notes"][1:]:
        echo(f"note: {note}")
    if r.get("plot"):
        echo(f"plot: {r['plot']}")
