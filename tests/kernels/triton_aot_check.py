"""Compile flowtok's Triton kernels for NVIDIA GPUs without one, and report what each would use.

The interpreter runs kernels as Python, so it cannot show what only the GPU compiler decides
(layouts, vector widths, registers, spills, tensor-core instructions). This script records the
kernel launches of the real product path instead of executing them (FlowTransformer at a
preset's size on meta tensors: one CFG Euler sampling step in the model's dtype, then a forward
and backward for training), so every tensor arrives with the shapes and strides the model passes
(q, k, v are strided views of one qkv projection, the adaLN vectors are slices of one GEMM's
output). Each distinct launch is specialised the way Triton's own launcher specialises it
(integers divisible by 16, pointers 16-byte aligned, ones as constants), compiled for each
target with triton.compile and the ptxas / cuobjdump that ship with Triton, and reported as:
registers, spill bytes (ptxas -v), shared memory, resident blocks per SM (the CUDA occupancy
rules against the SM's limits), the widths of its global loads and stores (SASS: LDG.E.128 is a
16-byte vector access, .U16 a scalar 2-byte one) and its matrix instructions (HGMMA = wgmma,
HMMA = mma.sync).

Run it WITHOUT TRITON_INTERPRET (tests/kernels/test_kernel_triton_aot.py does):
    python tests/kernels/triton_aot_check.py [CAPABILITY ...] [--preset XL] [--batch 64]
        [--markdown] [--sweep]
CAPABILITY defaults to 90 (H100, compiled as sm_90a); 80 is the A100. One JSON line per kernel
and target, or with --markdown the table of benchmarks/RESULTS.md. --sweep adds synthetic
launches (fp16 / fp32, other head dims, long sequences) to the model's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import torch
import triton

_LAUNCH_OPTIONS = ("num_warps", "num_stages")


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class SM:
    """What one streaming multiprocessor holds (CUDA programming guide, compute capabilities)."""

    name: str
    arch: str
    smem_bytes: int  # shared memory per SM usable by blocks
    smem_reserved: int = 1024  # per resident block, taken by the system
    regs: int = 65536
    warps: int = 64
    blocks: int = 32
    reg_unit: int = 256  # registers are allocated per warp in units of 256
    sub_partitions: int = 4  # the register file is split among 4 warp schedulers


TARGETS = {
    90: SM("H100", "sm_90a", smem_bytes=228 * 1024),
    80: SM("A100", "sm_80", smem_bytes=164 * 1024),
}


def resident_blocks(registers: int, smem: int, warps: int, sm: SM) -> int:
    """Blocks of one kernel an SM holds at once (the CUDA occupancy calculator's rules)."""
    regs_per_warp = math.ceil(max(registers, 1) * 32 / sm.reg_unit) * sm.reg_unit
    warps_by_regs = (sm.regs // sm.sub_partitions // regs_per_warp) * sm.sub_partitions
    by_regs = warps_by_regs // warps
    by_smem = sm.smem_bytes // (smem + sm.smem_reserved)
    return min(by_regs, by_smem, sm.warps // warps, sm.blocks)


# ----------------------------------------------------------------------------- recording


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


def launches(run, capability: int = 90) -> list:
    """Call ``run()`` with every fused op routed to its Triton launcher, tiles chosen as on a
    GPU of ``capability``, and every launch recorded, not executed; returns the
    (kernel, grid, args, kwargs) launches."""
    from flowtok_kernels import dispatch
    from flowtok_kernels.triton_ops import attention, euler_cfg, gated_residual, layernorm_modulate

    modules = (attention, euler_cfg, gated_residual, layernorm_modulate)
    saved = [m.wrap_triton for m in modules], dispatch._choose
    arch = getattr(attention, "device_arch", None)  # absent before per-target tiles
    for module in modules:
        module.wrap_triton = _Recorder
    dispatch._choose = lambda *args, **kwargs: ("triton", "recorded for an AOT compile")
    if arch is not None:
        attention.device_arch = lambda device=None: capability
    _Recorder.calls = []
    try:
        run()
    finally:
        for module, wrap in zip(modules, saved[0]):
            module.wrap_triton = wrap
        dispatch._choose = saved[1]
        if arch is not None:
            attention.device_arch = arch
    return list(_Recorder.calls)


def model_run(preset: str = "XL", batch: int = 64, dtype: torch.dtype = torch.bfloat16):
    """What the product path launches: one CFG Euler step of the preset's flow transformer
    (2 x ``batch`` rows through the model, as ``flowtok generate`` runs it) and one training
    forward + backward of ``batch`` rows, all on meta tensors."""
    from flowtok.config import load_preset
    from flowtok.flow.sampler import euler_sample
    from flowtok.flow.transformer import FlowTransformer

    cfg = load_preset(preset)

    def run():
        with torch.device("meta"):
            model = FlowTransformer(cfg.flow, cfg.K, cfg.C).to(dtype)
            x0 = torch.empty(batch, cfg.K, cfg.C)
            euler_sample(lambda x, t, ind: model(x.to(dtype), t, ind), x0, steps=1,
                         guidance=2.0)
            t = torch.empty(batch)
            v = model(x0.to(dtype), t, torch.zeros(batch, dtype=torch.long))
            v.float().sum().backward()
    return run


def sweep_run(dtypes=(torch.float16, torch.float32),
              attention_shapes=((77, 64), (77, 80), (77, 96), (77, 128), (300, 72))):
    """Synthetic launches beyond the model's: other dtypes, head dims and lengths (contiguous)."""
    from flowtok_kernels.triton_ops import attention, layernorm_modulate

    def run():
        meta = {"device": "meta"}
        for dtype in dtypes:
            for n, d in attention_shapes:
                q = torch.empty(2, 3, n, d, dtype=dtype, **meta)
                lse = torch.empty(2, 3, n, dtype=torch.float32, **meta)
                attention.attention_fwd(q, q, q, d**-0.5)
                attention.attention_bwd(q, q, q, q, q, lse, d**-0.5)
            x = torch.empty(2, 77, 1152, dtype=dtype, **meta)
            mod = torch.empty(2, 1152, dtype=dtype, **meta)
            stats = torch.empty(2, 77, dtype=torch.float32, **meta)
            layernorm_modulate.residual_layernorm_modulate_fwd(x, mod, x, mod, mod, 1e-6)
            layernorm_modulate.residual_layernorm_modulate_bwd(x, x, x, mod, x, mod, stats, stats)
    return run


# ----------------------------------------------------------------------------- compiling


def _specialize(kernel, args, kwargs, backend):
    """(signature, constexprs, attrs, options) exactly as Triton's launcher derives them."""
    from triton.runtime.jit import create_function_from_signature

    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    return kernel._pack_args(backend, kwargs, bound, specialization, options)


def _tool(name: str) -> str:
    from triton.backends.nvidia import compiler

    return os.path.join(os.path.dirname(compiler.__file__), "bin", name)


def _run_tool(argv: list[str], data: bytes | str, suffix: str) -> str:
    mode = "wb" if isinstance(data, bytes) else "w"
    with tempfile.NamedTemporaryFile(mode, suffix=suffix, delete=False) as f:
        f.write(data)
    try:
        proc = subprocess.run([*argv, f.name], capture_output=True, text=True, check=True)
        return proc.stdout + proc.stderr
    finally:
        os.unlink(f.name)


def ptxas_usage(ptx: str, arch: str) -> dict:
    """Registers and spill bytes reported by ptxas -v for the kernel's PTX."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(int(re.sub(r"\D", "", arch))).path
    out = _run_tool([ptxas, f"-arch={arch}", "-v", "-o", os.devnull], ptx, ".ptx")
    regs = re.search(r"Used (\d+) registers", out)
    stores = re.search(r"(\d+) bytes spill stores", out)
    loads = re.search(r"(\d+) bytes spill loads", out)
    return {"registers": int(regs.group(1)) if regs else None,
            "spill_stores": int(stores.group(1)) if stores else 0,
            "spill_loads": int(loads.group(1)) if loads else 0}


_SASS_MEM = re.compile(r"\b(LDG|STG|LDGSTS|UTMALDG|UTMASTG)((?:\.[A-Z0-9_]+)*)")


def _width(modifiers: str) -> int:
    mods = modifiers.split(".")
    for bits, names in ((128, ("128",)), (64, ("64",)), (16, ("U16", "S16")), (8, ("U8", "S8"))):
        if any(m in names for m in mods):
            return bits
    return 32


def sass_summary(sass: str) -> dict:
    """Global accesses by width in bits ({"LDG": {"128": n, ...}, ...}) and matrix instructions
    ({"HGMMA": n, "HMMA": n})."""
    memory: dict[str, Counter] = {}
    for op, modifiers in _SASS_MEM.findall(sass):
        bits = "tma" if op.startswith("UTMA") else str(_width(modifiers))
        memory.setdefault("LDG" if op in ("LDG", "UTMALDG") else
                          "LDGSTS" if op == "LDGSTS" else "STG", Counter())[bits] += 1
    mma = Counter(re.findall(r"\b(HGMMA|HMMA|IMMA|DMMA)\b", sass))
    return {"global": {k: dict(sorted(v.items())) for k, v in sorted(memory.items())},
            "mma": dict(sorted(mma.items()))}


def compile_launch(kernel, args, kwargs, capability: int) -> dict:
    """One recorded launch compiled for ``capability`` -> its report row."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    sm = TARGETS[capability]
    target = GPUTarget("cuda", capability, 32)
    options, signature, constexprs, attrs = _specialize(kernel, args, kwargs,
                                                        make_backend(target))
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                              options=options.__dict__)
    row = ptxas_usage(compiled.asm["ptx"], sm.arch)
    row["smem"] = int(compiled.metadata.shared)
    row.update(sass_summary(_run_tool([_tool("cuobjdump"), "-sass"], compiled.asm["cubin"],
                                      ".cubin")))
    row["blocks_per_sm"] = resident_blocks(row["registers"], row["smem"],
                                           compiled.metadata.num_warps, sm)
    return row


def _describe(kernel, grid, args, kwargs) -> dict:
    """Name, grid, tensor shapes and strides, constexprs and launch options of one launch."""
    tensors = {name: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape),
                      "stride": list(v.stride())}
               for name, v in zip(kernel.arg_names, args) if isinstance(v, torch.Tensor)}
    consts = {k: v for k, v in kwargs.items() if k not in _LAUNCH_OPTIONS}
    opts = {k: kwargs[k] for k in _LAUNCH_OPTIONS if k in kwargs}
    return {"kernel": kernel.__name__, "grid": list(grid), **consts, **opts, "tensors": tensors}


def distinct(recorded) -> list:
    """Recorded launches that compile to different kernels (name, argument types and
    specialisation, constants, options), each once: the first launch of each stands for it."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    backend = make_backend(GPUTarget("cuda", 90, 32))
    out, seen = [], set()
    for kernel, grid, args, kwargs in recorded:
        key = (kernel.__name__, *map(repr, _specialize(kernel, args, kwargs, backend)))
        if key not in seen:
            seen.add(key)
            out.append((kernel, grid, args, kwargs))
    return out


def rows(capabilities=(90,), preset: str = "XL", batch: int = 64, sweep: bool = False):
    """Yield one report row per distinct launch of each target."""
    for cap in capabilities:
        recorded = launches(model_run(preset, batch), cap)
        if sweep:
            recorded += launches(sweep_run(), cap)
        for kernel, grid, args, kwargs in distinct(recorded):
            row = {**_describe(kernel, grid, args, kwargs), "target": TARGETS[cap].arch}
            try:
                row.update(compile_launch(kernel, args, kwargs, cap), ok=True)
            except Exception as e:  # noqa: BLE001 - reported per kernel, counted by the caller
                row.update(ok=False, error=f"{type(e).__name__}: {str(e)[:400]}")
            yield row


# ----------------------------------------------------------------------------- reporting


_VARIANT_KEYS = ("ONE_KV_BLOCK", "HAS_RESIDUAL", "HAS_DXNEW", "DT_PER_SAMPLE", "ALIGN")


def _variant(row: dict) -> str:
    """The launch in a few words: first tensor's dtype, shape (and strides when not
    contiguous), the variant flags and the tiles."""
    first = next(iter(row["tensors"].values()))
    shape, stride = first["shape"], first["stride"]
    dense = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    text = f"{first['dtype']} {'x'.join(map(str, shape))}"
    if stride != dense:
        text += f" strides {','.join(map(str, stride))}"
    parts = [text] + [f"{k}={int(row[k])}" for k in _VARIANT_KEYS if k in row]
    if "BLOCK_M" in row:
        tile = f"{row['BLOCK_M']}x{row['BLOCK_N']}" if "BLOCK_N" in row else f"{row['BLOCK_M']} rows"
        parts.append(f"tile {tile}, D {row['D0']}+{row['D1']}")
    return ", ".join(parts)


def _widths(counts: dict) -> str:
    return " ".join(f"{n}x{bits}" for bits, n in sorted(
        counts.items(), key=lambda kv: -1 if kv[0] == "tma" else -int(kv[0]))) or "-"


def markdown(report: list[dict]) -> str:
    """The RESULTS.md table: one line per kernel and target."""
    head = ("| kernel | launch | target | warps | registers | spill st/ld (B) | smem (B) "
            "| blocks/SM | global loads (n x bits) | global stores | MMA |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    first_seen: dict[str, int] = {}
    for r in report:
        first_seen.setdefault(r["kernel"], len(first_seen))
    lines = []
    for r in sorted(report, key=lambda r: (first_seen[r["kernel"]], r["target"] != "sm_90a")):
        if not r["ok"]:
            lines.append(f"| {r['kernel']} | {_variant(r)} | {r['target']} | failed: "
                         f"{r['error'][:80]} |||||||\n")
            continue
        g = r["global"]
        loads = _widths(g.get("LDG", {}))
        if g.get("LDGSTS"):
            loads += f" (cp.async {_widths(g['LDGSTS'])})"
        lines.append(
            f"| {r['kernel']} | {_variant(r)} | {r['target']} | {r.get('num_warps', 4)} "
            f"| {r['registers']} | {r['spill_stores']}/{r['spill_loads']} | {r['smem']} "
            f"| {r['blocks_per_sm']} | {loads} | {_widths(g.get('STG', {}))} "
            f"| {' '.join(f'{n}x{op}' for op, n in r['mma'].items()) or '-'} |\n")
    return head + "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capabilities", nargs="*", type=int, default=[90],
                        choices=sorted(TARGETS))
    parser.add_argument("--preset", default="XL")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--markdown", action="store_true", help="print the RESULTS.md table")
    parser.add_argument("--sweep", action="store_true", help="also synthetic shapes and dtypes")
    a = parser.parse_args(argv)
    report = []
    for row in rows(a.capabilities or [90], a.preset, a.batch, a.sweep):
        report.append(row)
        if not a.markdown:
            print(json.dumps(row, default=str), flush=True)
    if a.markdown:
        print(markdown(report), end="")
    return 0 if report and all(r["ok"] for r in report) else 1


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("run without TRITON_INTERPRET=1: interpreted kernels cannot be compiled")
    sys.exit(main())
