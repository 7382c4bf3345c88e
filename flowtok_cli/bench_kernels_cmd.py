"""`flowtok bench kernels`: each fused op under every provider, with achieved FLOP/s or GB/s."""

from __future__ import annotations

from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import DeviceOpt, JsonOpt, SeedOpt


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def kernels(
    ops: Annotated[str | None, typer.Option(
        "--ops", help="Comma list: attention, layernorm_modulate, residual_layernorm_modulate, "
        "gated_residual, euler_cfg_step (default: all).")] = None,
    providers: Annotated[str | None, typer.Option(
        "--providers", help="Comma list: plain (torch ops + SDPA, no flowtok kernel: the 1.00x "
        "reference), fused (auto dispatch), triton, cuda, xformers, sdpa-flash, sdpa-efficient, "
        "sdpa-cudnn, sdpa-math, sdpa, eager (the torch reference), compile, compile(plain), "
        "compile(fused), graph(plain), graph(fused) (CUDA graphs: CUDA only) (default: all; "
        "CPU: all but the compile ones).")] = None,
    modes: Annotated[str, typer.Option("--modes", help="fwd, fwd+bwd or both.")] = "fwd,fwd+bwd",
    dtype: Annotated[str | None, typer.Option(
        "--dtype", help="bf16 | fp16 | fp32 (default: bf16 on CUDA, fp32 on CPU).")] = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", "-b", help="Batch (default 128 = 2 CFG passes x 64 on CUDA, 2 on CPU).")] = None,
    heads: Annotated[int | None, typer.Option(
        "--heads", help="Attention heads (default 16 on CUDA, 2 on CPU).")] = None,
    tokens: Annotated[int, typer.Option("--tokens", help="Sequence length.")] = 77,
    head_dim: Annotated[int, typer.Option("--head-dim", help="Attention head dim.")] = 72,
    width: Annotated[int | None, typer.Option(
        "--width", help="Width of the adaLN / residual / Euler rows (default 1152 on CUDA, "
        "256 on CPU).")] = None,
    repeats: Annotated[int | None, typer.Option(
        "--repeats", help="Timed calls per row, median reported (default 50 CUDA, 5 CPU).")] = None,
    warmup: Annotated[int | None, typer.Option(
        "--warmup", help="Untimed calls first (default 10 CUDA, 1 CPU).")] = None,
    tune: Annotated[bool, typer.Option(
        "--tune", help="Also time Triton attention under each candidate tile config (CUDA).")
    ] = False,
    save_dispatch: Annotated[bool, typer.Option(
        "--save-dispatch/--no-save-dispatch", help="Record the fastest backend per op and "
        "shape class for this device, which auto dispatch then follows (FLOWTOK_KERNELS_CACHE "
        "names the file; off disables).")] = True,
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Time attention, LayerNorm+modulate (and its fused residual form), the gated residual and
    the Euler/CFG step under every provider that can run them (plain PyTorch, the 1.00x
    reference of the "vs plain" column; auto-dispatched fused ops; Triton, the CUDA extension,
    xformers, each SDPA backend, the torch reference, torch.compile of plain / fused / the
    reference, CUDA graphs of plain / fused), forward and forward+backward.
    Reports median ms, TFLOP/s (attention) or GB/s (the rest) and the share of this device's
    measured matmul / copy ceiling; L2 is flushed before each timed call. On CPU it runs small
    shapes, and its absolute numbers mean nothing.

    Examples:
      flowtok bench kernels
      flowtok bench kernels --ops attention --tune --json > attention.json
      flowtok bench kernels --batch 64 --width 1152 --providers triton,eager,compile
      flowtok bench kernels --device cpu --providers eager,sdpa --json
    """
    from flowtok.bench.kernels import MODES, OPS, KernelBenchOptions, run_kernel_bench

    opts = KernelBenchOptions(
        device=device, dtype=dtype, batch=batch, heads=heads, tokens=tokens, head_dim=head_dim,
        width=width, ops=_split(ops) or OPS, providers=_split(providers),
        modes=_split(modes) or MODES, repeats=repeats, warmup=warmup, tune=tune,
        save_dispatch=save_dispatch, seed=seed)
    result = run_kernel_bench(opts)
    if json_out:
        common.print_json(result)
        return
    _print_table(result)


def _fmt(value, spec: str) -> str:
    width = spec.split(".")[0]
    return format("-", f">{width}") if value is None else format(value, spec)


def _print_table(result: dict) -> None:
    dev = result["device"]
    ceil = result["ceilings"]
    typer.echo(f"flowtok bench kernels on {dev['name']} ({dev['type']}), {result['dtype']}; "
               f"attention {result['shapes']['attention']}, rows {result['shapes']['rows']}")
    typer.echo(f"ceilings: matmul {ceil['matmul']['tflops']:.3g} TFLOP/s, copy "
               f"{ceil['copy']['gbps']:.4g} GB/s; {result['timing']['method']}, median of "
               f"{result['timing']['repeats']}")
    for note in result["notes"]:
        common.warn(note)
    header = (f"{'op':<28} {'mode':<8} {'provider':<28} {'ms':>9} {'TFLOP/s':>8} {'GB/s':>8} "
              f"{'%ceil':>6} {'vs SDPA':>7} {'vs plain':>8}")
    typer.echo(header)
    skipped: dict[tuple[str, str], list[str]] = {}  # (status, reason) -> "op mode provider"
    for r in result["rows"]:
        if r["status"] != "ok":
            skipped.setdefault((r["status"], r["reason"]), []).append(
                f"{r['op']} {r['mode']} {r['provider']}")
            continue
        typer.echo(f"{r['op']:<28} {r['mode']:<8} {r['provider']:<28} {r['median_ms']:>9.4f} "
                   f"{_fmt(r['tflops'], '8.3g')} {_fmt(r['gbps'], '8.4g')} "
                   f"{_fmt(r['pct_of_ceiling'], '6.1f')} {_fmt(r['vs_fastest_sdpa'], '7.2f')} "
                   f"{_fmt(r.get('vs_plain'), '8.2f')}")
    for (status, reason), rows in skipped.items():  # one line per cause, not one per row
        typer.echo(f"{status} ({reason}): {len(rows)} row(s): {', '.join(rows)}")
    dispatch = result.get("dispatch") or {}
    if dispatch.get("path"):
        picks = "; ".join(f"{op} {cls}: {c['backend']}"
                          for op, classes in dispatch["choices"].items()
                          for cls, c in classes.items())
        typer.echo(f"auto dispatch now follows these measurements ({dispatch['path']}): {picks}")
