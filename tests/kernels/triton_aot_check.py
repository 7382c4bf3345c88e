"""Compile every Triton launch of flowtok_kernels for an NVIDIA GPU without one (sm_90 by default).

The interpreter runs kernels as Python, so it cannot catch what only the GPU compiler rejects
(layouts, dot shapes, register limits). This script runs each launcher on meta tensors with the
launch recorded instead of executed, then compiles the recorded kernels with triton.compile for
a target architecture and prints one JSON line per kernel (name, shapes, registers, spills).
Run it in a process WITHOUT TRITON_INTERPRET (tests/kernels/test_kernel_triton_aot.py does):
    python tests/kernels/triton_aot_check.py [CAPABILITY=90] [--quick]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import ClassVar

import torch
import triton

_TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
                 torch.int32: "i32", torch.int64: "i64"}
_LAUNCH_OPTIONS = ("num_warps", "num_stages")


class _Recorder:
    """Stands in for ``wrap_triton(kernel)`` in the launchers: records ``[grid](*args, **kwargs)``
    calls instead of running them."""

    calls: ClassVar[list] = []

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            _Recorder.calls.append((self.kernel, grid, args, kwargs))
        return record


def _signature(kernel, args, kwargs):
    names = kernel.arg_names
    signature, constexprs = {}, {}
    for name, value in zip(names, args):
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + _TRITON_TYPES[value.dtype]
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            signature[name] = "i32" if abs(value) < 2**31 else "i64"
        else:
            signature[name] = "fp32"
    for name, value in kwargs.items():
        if name in _LAUNCH_OPTIONS:
            continue
        signature[name] = "constexpr"
        constexprs[name] = value
    return signature, constexprs


def _ptxas_usage(ptx: str, arch: str) -> dict:
    """Registers and spill bytes reported by ptxas -v for the kernel's PTX."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(int(re.sub(r"\D", "", arch))).path
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        out = subprocess.run([ptxas, f"-arch={arch}", "-v", f.name, "-o", os.devnull],
                             capture_output=True, text=True, check=True).stderr
    finally:
        os.unlink(f.name)
    regs = re.search(r"Used (\d+) registers", out)
    spill = re.search(r"(\d+) bytes spill stores", out)
    return {"registers": int(regs.group(1)) if regs else None,
            "spill_bytes": int(spill.group(1)) if spill else 0}


def launches(cases):
    """Run each (launcher, args) case on meta tensors; return the recorded kernel launches."""
    from flowtok_kernels.triton_ops import attention, euler_cfg, gated_residual, layernorm_modulate

    for module in (attention, euler_cfg, gated_residual, layernorm_modulate):
        module.wrap_triton = _Recorder
    _Recorder.calls = []
    for fn, args in cases:
        fn(*args)
    return list(_Recorder.calls)


FULL = {"dtypes": (torch.bfloat16, torch.float16, torch.float32),
        "attention": ((77, 72), (77, 64), (77, 80), (77, 96), (77, 128), (300, 72)),
        "others": True}
QUICK = {"dtypes": (torch.bfloat16,), "attention": ((77, 72),), "others": False}


def default_cases(plan=FULL):
    """(launcher, args) on meta tensors for every kernel variant in ``plan``."""
    from flowtok_kernels.triton_ops import attention, euler_cfg, gated_residual, layernorm_modulate

    meta = {"device": "meta"}
    cases = []
    for dtype in plan["dtypes"]:
        for n, d in plan["attention"]:
            q = torch.empty(2, 3, n, d, dtype=dtype, **meta)
            lse = torch.empty(2, 3, n, dtype=torch.float32, **meta)
            cases.append((attention.attention_fwd, (q, q, q, d**-0.5)))
            cases.append((attention.attention_bwd, (q, q, q, q, q, lse, d**-0.5)))
        x = torch.empty(2, 77, 1152, dtype=dtype, **meta)
        mod = torch.empty(2, 1152, dtype=dtype, **meta)
        stats = torch.empty(2, 77, dtype=torch.float32, **meta)
        cases.append((layernorm_modulate.residual_layernorm_modulate_fwd,
                      (x, mod, x, mod, mod, 1e-6)))
        cases.append((layernorm_modulate.residual_layernorm_modulate_bwd,
                      (x, x, x, mod, x, mod, stats, stats)))
        if not plan["others"]:
            continue
        cases.append((layernorm_modulate.layernorm_modulate_fwd, (x, mod, mod, 1e-6)))
        cases.append((layernorm_modulate.layernorm_modulate_bwd, (x, x, mod, mod, stats, stats)))
        cases.append((gated_residual.gated_residual_fwd, (x, mod, x)))
        cases.append((gated_residual.gated_residual_bwd, (x, mod, x)))
        scalar = torch.empty((), dtype=torch.float32, **meta)
        cases.append((euler_cfg.euler_cfg_step_, (x, x, x, scalar, scalar)))
    return cases


def main(capability: int = 90, quick: bool = False) -> int:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", capability, 32)
    arch = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"
    failures = 0
    for kernel, grid, args, kwargs in launches(default_cases(QUICK if quick else FULL)):
        signature, constexprs = _signature(kernel, args, kwargs)
        options = {k: kwargs[k] for k in _LAUNCH_OPTIONS if k in kwargs}
        row = {"kernel": kernel.__name__, "grid": list(grid),
               "dtypes": sorted({v for v in signature.values() if v.startswith("*")}),
               **{k: v for k, v in constexprs.items()}, **options}
        try:
            compiled = triton.compile(ASTSource(kernel, signature, constexprs), target=target,
                                      options=options)
            row.update(_ptxas_usage(compiled.asm["ptx"], arch))
            row["ok"] = True
        except Exception as e:  # noqa: BLE001 - reported per kernel, counted below
            row.update(ok=False, error=f"{type(e).__name__}: {str(e)[:400]}")
            failures += 1
        print(json.dumps(row, default=str), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("run without TRITON_INTERPRET=1: interpreted kernels cannot be compiled")

    argv = [a for a in sys.argv[1:] if a != "--quick"]
    sys.exit(main(int(argv[0]) if argv else 90, quick="--quick" in sys.argv))
