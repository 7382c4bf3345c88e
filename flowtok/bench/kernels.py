"""What `flowtok bench kernels` measures: each fused op under every provider that can run it.

Ops and what their rows report:
- attention (B, H, N, D): TFLOP/s (forward 4·B·H·N²·D; forward+backward 3.5x that, the
  FlashAttention convention) as a share of the measured matmul ceiling, and speed relative to
  the fastest SDPA backend (target on an H100 at 128 x 16 x 77 x 72: >= 1.0x forward,
  >= 0.9x forward+backward).
- layernorm_modulate, residual_layernorm_modulate, gated_residual, euler_cfg_step (B, N, D):
  GB/s of the bytes each must move at least, as a share of the measured copy bandwidth
  (target >= 80%). The Euler step is timed at the activation shape so bandwidth is
  measurable; at the real latent size (64 x 77 x 16) it is launch-bound (use CUDA graphs).
Providers: ``plain`` (flowtok.bench.plain: separate torch ops, SDPA for attention; never a
flowtok kernel; every row's ``vs_plain`` is plain's time over its own, so plain is 1.00x),
``fused`` (the flowtok_kernels op as ``auto`` dispatches it by the static rule), the
flowtok_kernels backends (triton, cuda, xformers; `sdpa-*` per SDPA backend), ``eager`` (the
PyTorch reference the dispatcher's ``torch`` backend runs), ``compile`` (torch.compile of the
reference), ``compile(plain)`` and ``compile(fused)``, and on CUDA ``graph(plain)`` and
``graph(fused)`` (one call captured in a CUDA graph and replayed; forward only). A provider
that cannot run is a row with status ``unavailable`` and the reason.

Dispatch by measurement: unless ``save_dispatch`` is off, the run records per op and mode the
fastest of the backends ``auto`` can pick (triton, cuda, xformers, sdpa, and eager as
``torch``; at least two of them measured) in flowtok_kernels.measured's cache for this device
and torch version, and ``auto`` follows it from then on (a norm op stays unfused where torch
measured faster). The run itself times ``fused`` by the static rule.

``run_kernel_bench`` returns a JSON-ready dict (schema ``flowtok.bench.kernels/1``)::

    schema, device {type, name, torch, cuda, capability, memory_bytes, threads}, dtype, notes,
    timing {method, statistic, warmup, repeats}, ceilings {matmul {...}, copy {...}},
    shapes {attention [B, H, N, D], rows [B, N, D]},
    rows [{op, mode (fwd | fwd+bwd), provider, status (ok | unavailable | failed), reason,
           median_ms, p20_ms, p80_ms, tflops, gbps, pct_of_ceiling, vs_fastest_sdpa, vs_plain}],
    dispatch {path (None: not written), device_key, choices {op: {shape class: {backend, ms
              {backend: median ms}, shape}}}}
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import flowtok_kernels as fk
from flowtok.bench import timing
from flowtok.device import resolve_device
from flowtok.errors import ConfigError
from flowtok_kernels import measured, reference

SCHEMA = "flowtok.bench.kernels/1"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
OPS = ("attention", "layernorm_modulate", "residual_layernorm_modulate", "gated_residual",
       "euler_cfg_step")
MODES = ("fwd", "fwd+bwd")
SDPA_BACKENDS = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-efficient": "EFFICIENT_ATTENTION",
                 "sdpa-cudnn": "CUDNN_ATTENTION", "sdpa-math": "MATH"}
COMPILED = ("compile", "compile(plain)", "compile(fused)")
GRAPHED = ("graph(plain)", "graph(fused)")
PROVIDERS = ("plain", "fused", "triton", "cuda", "xformers", *SDPA_BACKENDS, "sdpa", "eager",
             *COMPILED, *GRAPHED)
# the providers that are backends auto can pick, by the name dispatch gives them
DISPATCH_BACKENDS = {"triton": "triton", "cuda": "cuda", "xformers": "xformers", "sdpa": "sdpa",
                     "eager": "torch"}
ATTENTION_BWD_FLOP_FACTOR = 2.5  # backward = 2.5 x forward FLOPs (5 matmuls vs 2)
CPU_NOTE = ("CPU run: absolute numbers mean nothing here (no GPU, shared cores, small shapes); "
            "only ratios within this run say anything, and Triton is not timed (its CPU "
            "interpreter is a test tool)")


@dataclass
class KernelBenchOptions:
    """Shapes default to FlowTok's on CUDA (CFG batch 2 x 64, 77 tokens, 16 heads of 72, XL
    width 1152) and to small ones on CPU."""

    device: str | None = None
    dtype: str | None = None
    batch: int | None = None
    heads: int | None = None
    tokens: int = 77
    head_dim: int = 72
    width: int | None = None
    ops: tuple[str, ...] = OPS
    providers: tuple[str, ...] | None = None  # None: all (on CPU all but compile)
    modes: tuple[str, ...] = MODES
    repeats: int | None = None
    warmup: int | None = None
    tune: bool = False
    save_dispatch: bool = True  # record the fastest backends for auto (flowtok_kernels.measured)
    seed: int = 0
    notes: list[str] = field(default_factory=list)


GPU_DEFAULTS = {"batch": 128, "heads": 16, "width": 1152, "repeats": 50, "warmup": 10}
CPU_DEFAULTS = {"batch": 2, "heads": 2, "width": 256, "repeats": 5, "warmup": 1}


def _check_choices(values, allowed, flag):
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(f"{flag} {','.join(bad)}: choose from {', '.join(allowed)}")


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One op at one shape: inputs, the work it must do, and how each provider runs it."""

    op: str
    inputs: list[torch.Tensor]
    flops: float  # forward FLOPs (attention) or 0
    bytes_fwd: float  # minimum bytes moved by the forward
    bytes_bwd: float  # ... and by the backward


def _flowtok(op: str, backend: str):
    fn = getattr(fk, "euler_cfg_step_" if op == "euler_cfg_step" else op)
    return lambda *a: fn(*a, backend=backend)


def _reference(op: str):
    return getattr(reference, "euler_cfg_step_" if op == "euler_cfg_step" else op)


def _sdpa(backend_name: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def run(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v)
    return run


def _plain(op: str):
    from flowtok.bench import plain

    return plain.OPS["euler_cfg_step_" if op == "euler_cfg_step" else op]


def _cuda_graphed(fn):
    """``fn`` captured in a CUDA graph on its first call (after a side-stream warm-up), then
    replayed; the arguments must be the same tensors every call (the bench's static inputs)."""
    state: dict = {}

    def run(*args):
        if "graph" not in state:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    fn(*args)
            torch.cuda.current_stream().wait_stream(side)
            state["graph"] = torch.cuda.CUDAGraph()
            with torch.cuda.graph(state["graph"]):
                state["out"] = fn(*args)
        state["graph"].replay()
        return state["out"]
    return run


def _provider_fn(op: str, provider: str, compiled: dict) -> Callable[..., object]:
    """The callable for ``provider``; raises fk.BackendUnavailable / ValueError when it has none."""
    if provider == "eager":
        return _reference(op)
    if provider == "plain":
        return _plain(op)
    if provider == "fused":
        return _flowtok(op, "auto")
    if provider in COMPILED:
        inner = {"compile": "eager", "compile(plain)": "plain", "compile(fused)": "fused"}[provider]
        if (op, provider) not in compiled:
            compiled[op, provider] = torch.compile(_provider_fn(op, inner, compiled))
        return compiled[op, provider]
    if provider in GRAPHED:
        return _cuda_graphed(_provider_fn(op, provider[len("graph("):-1], compiled))
    if provider in SDPA_BACKENDS or provider in ("sdpa", "xformers"):
        if op != "attention":
            raise ValueError(f"{provider} runs attention only")
        if provider in SDPA_BACKENDS:
            return _sdpa(SDPA_BACKENDS[provider])
    return _flowtok(op, provider)


def make_case(op: str, shape_attn, shape_rows, dtype, device, seed: int) -> Case:
    g = torch.Generator(device="cpu").manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g)).to(device, dtype)

    es = torch.empty((), dtype=dtype).element_size()
    b, n, d = shape_rows
    row_bytes = b * n * d * es
    mod = b * d * es
    if op == "attention":
        bb, h, nn_, hd = shape_attn
        qkv = [randn(bb, h, nn_, hd) for _ in range(3)]
        io = bb * h * nn_ * hd * es
        return Case(op, qkv, 4.0 * bb * h * nn_ * nn_ * hd, 4 * io, 8 * io)
    if op == "layernorm_modulate":
        inputs = [randn(b, n, d), randn(b, d, scale=0.1), randn(b, d, scale=0.1)]
        return Case(op, inputs, 0.0, 2 * row_bytes + 2 * mod, 3 * row_bytes + 4 * mod)
    if op == "residual_layernorm_modulate":
        inputs = [randn(b, n, d), randn(b, d, scale=0.1), randn(b, n, d),
                  randn(b, d, scale=0.1), randn(b, d, scale=0.1)]
        return Case(op, inputs, 0.0, 4 * row_bytes + 3 * mod, 6 * row_bytes + 6 * mod)
    if op == "gated_residual":
        inputs = [randn(b, n, d), randn(b, d, scale=0.1), randn(b, n, d)]
        return Case(op, inputs, 0.0, 3 * row_bytes + mod, 3 * row_bytes + 2 * mod)
    if op == "euler_cfg_step":
        inputs = [randn(b, n, d), randn(b, n, d), randn(b, n, d),
                  torch.tensor(0.05, device=device), torch.tensor(4.0, device=device)]
        return Case(op, inputs, 0.0, 4 * row_bytes, 0.0)
    raise AssertionError(op)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def _timed_fn(fn, case: Case, mode: str):
    """A no-argument callable for one timed call of ``fn`` in ``mode``."""
    inputs = case.inputs
    if case.op == "euler_cfg_step":
        x0 = inputs[0].clone()
        # in place: each call advances x; fine for timing (same work every step)
        return lambda: fn(*inputs), lambda: inputs[0].copy_(x0)
    if mode == "fwd":
        return (lambda: fn(*inputs)), None
    leaves = [t.detach().requires_grad_() if t.is_floating_point() else t for t in inputs]
    grad_inputs = [t for t in leaves if t.requires_grad]
    out = fn(*leaves)
    outs = out if isinstance(out, tuple) else (out,)
    upstream = [torch.randn_like(o) for o in outs]

    def step():
        res = fn(*leaves)
        res = res if isinstance(res, tuple) else (res,)
        return torch.autograd.grad(res, grad_inputs, upstream)
    return step, None


def _row(case: Case, mode: str, provider: str, **values) -> dict:
    row = {"op": case.op, "mode": mode, "provider": provider, "status": "ok", "reason": "",
           "median_ms": None, "p20_ms": None, "p80_ms": None, "tflops": None, "gbps": None,
           "pct_of_ceiling": None, "vs_fastest_sdpa": None, "vs_plain": None}
    row.update(values)
    return row


def measure(case: Case, mode: str, provider: str, fn, device, repeats, warmup,
            ceilings: dict) -> dict:
    """Time ``fn`` on ``case`` in ``mode`` and turn the median into FLOP/s or bytes/s."""
    try:
        with torch.no_grad() if mode == "fwd" else contextlib.nullcontext():
            call, reset = _timed_fn(fn, case, mode)
            call()  # first call: compiles, loads, or raises
    except (fk.BackendUnavailable, ValueError, NotImplementedError) as e:
        return _row(case, mode, provider, status="unavailable", reason=_first_line(e))
    except RuntimeError as e:  # e.g. an SDPA backend with no kernel for this shape or dtype
        no_kernel = any(m in str(e) for m in ("No available kernel", "No viable backend"))
        status = "unavailable" if no_kernel else "failed"
        return _row(case, mode, provider, status=status, reason=_first_line(e))
    with torch.no_grad() if mode == "fwd" else contextlib.nullcontext():
        t = timing.time_call(call, device, repeats, warmup, flush_l2=True)
    if reset is not None:
        reset()
    seconds = t.median_ms * 1e-3
    values = {"median_ms": t.median_ms, "p20_ms": t.p20_ms, "p80_ms": t.p80_ms}
    if case.op == "attention":
        flops = case.flops * (1 + (ATTENTION_BWD_FLOP_FACTOR if mode == "fwd+bwd" else 0))
        values["tflops"] = flops / seconds / 1e12
        values["pct_of_ceiling"] = 100 * values["tflops"] / ceilings["matmul"]["tflops"]
    else:
        moved = case.bytes_fwd + (case.bytes_bwd if mode == "fwd+bwd" else 0)
        values["gbps"] = moved / seconds / 1e9
        values["pct_of_ceiling"] = 100 * values["gbps"] / ceilings["copy"]["gbps"]
    return _row(case, mode, provider, **values)


def _forward_with(tri, scale, cfg, q, k, v):
    return tri.launch_forward(q, k, v, scale, cfg)


def _backward_with(tri, do, o, lse, scale, cfg, q, k, v):
    return tri.launch_backward(do, q, k, v, o, lse, scale, cfg)


def _attention_tuning_rows(case: Case, mode: str, device, repeats, warmup, ceilings) -> list[dict]:
    """Triton attention under each candidate tile configuration (GPU tuning aid)."""
    from flowtok_kernels.triton_ops import attention as tri

    q, k, v = case.inputs
    n, d = q.shape[2], q.shape[3]
    scale = d**-0.5
    o, lse = tri.attention_fwd(q, k, v, scale)
    do = torch.randn_like(o)
    rows = []
    for cfg in tri.tuning_candidates(n, k.shape[2], d, q.dtype, backward=mode != "fwd"):
        label = (f"triton[m{cfg.block_m},n{cfg.block_n},w{cfg.num_warps}"
                 f"{',loop' if not cfg.one_kv_block else ''}]")
        if mode == "fwd":
            fn = functools.partial(_forward_with, tri, scale, cfg)
        else:
            fn = functools.partial(_backward_with, tri, do, o, lse, scale, cfg)
        rows.append(measure(case, "fwd", label, fn, device, repeats, warmup, ceilings)
                    | {"mode": mode})
        if mode != "fwd" and rows[-1]["tflops"]:  # backward alone: 2.5x forward FLOPs
            rows[-1]["tflops"] *= ATTENTION_BWD_FLOP_FACTOR
            rows[-1]["pct_of_ceiling"] *= ATTENTION_BWD_FLOP_FACTOR
            rows[-1]["reason"] = "backward kernels only"
    return rows


def run_kernel_bench(opts: KernelBenchOptions) -> dict:
    """Time every (op, mode, provider) in ``opts`` on one device; see the module docstring."""
    _check_choices(opts.ops, OPS, "--ops")
    _check_choices(opts.providers or (), PROVIDERS, "--providers")
    _check_choices(opts.modes, MODES, "--modes")
    device = resolve_device(opts.device)
    on_gpu = device.type == "cuda"
    providers = opts.providers or (PROVIDERS if on_gpu else
                                   tuple(p for p in PROVIDERS if p not in COMPILED))
    defaults = GPU_DEFAULTS if on_gpu else CPU_DEFAULTS
    dtype_name = opts.dtype or ("bf16" if on_gpu else "fp32")
    if dtype_name not in DTYPES:
        raise ConfigError(f"--dtype {dtype_name!r}: choose one of {', '.join(DTYPES)}")
    dtype = DTYPES[dtype_name]
    batch = opts.batch or defaults["batch"]
    heads = opts.heads or defaults["heads"]
    width = opts.width or defaults["width"]
    repeats = opts.repeats or defaults["repeats"]
    warmup = opts.warmup if opts.warmup is not None else defaults["warmup"]
    for name, value in (("--batch", batch), ("--heads", heads), ("--tokens", opts.tokens),
                        ("--head-dim", opts.head_dim), ("--width", width),
                        ("--repeats", repeats)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    notes = list(opts.notes) + ([] if on_gpu else [CPU_NOTE])
    if opts.providers is None and not on_gpu:
        notes.append("torch.compile (compile, compile(plain), compile(fused)) is skipped on CPU "
                     "by default (Inductor's C++ build takes minutes); name it in --providers "
                     "to include it")
    ceilings = {"matmul": timing.matmul_ceiling(device, dtype), "copy": timing.copy_bandwidth(device)}
    shape_attn = (batch, heads, opts.tokens, opts.head_dim)
    shape_rows = (batch, opts.tokens, width)
    compiled: dict = {}
    rows: list[dict] = []
    with measured.disabled():  # `fused` is timed as the static rule picks, not as a past run did
        _measure_all(opts, providers, shape_attn, shape_rows, dtype, device, repeats, warmup,
                     ceilings, compiled, rows)
    _add_sdpa_ratios(rows)
    _add_plain_ratios(rows)
    choices = dispatch_choices(rows, dtype, shape_attn, shape_rows)
    path = None
    if opts.save_dispatch and choices:
        path = measured.record(device, choices, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return {
        "schema": SCHEMA, "device": timing.device_info(device), "dtype": dtype_name,
        "notes": notes,
        "timing": {"method": timing.timing_method(device, flush_l2=True), "statistic": "median",
                   "warmup": warmup, "repeats": repeats},
        "ceilings": ceilings,
        "shapes": {"attention": list(shape_attn), "rows": list(shape_rows)},
        "rows": rows,
        "dispatch": {"path": None if path is None else str(path),
                     "device_key": measured.device_key(device), "choices": choices},
    }


def dispatch_choices(rows: list[dict], dtype: torch.dtype, shape_attn, shape_rows) -> dict:
    """{op: {shape class: {backend, ms, shape}}}: per op and mode, the fastest of the backends
    auto can pick, where at least two of them ran (one alone decides nothing)."""
    out: dict[str, dict] = {}
    for op in OPS:
        for mode in MODES:
            ms = {DISPATCH_BACKENDS[r["provider"]]: r["median_ms"] for r in rows
                  if r["op"] == op and r["mode"] == mode and r["status"] == "ok"
                  and r["provider"] in DISPATCH_BACKENDS and r["median_ms"]}
            if len(ms) < 2:
                continue
            shape = shape_attn if op == "attention" else shape_rows
            cls = measured.shape_class(op, dtype, keys=shape_attn[2],
                                       elements=math.prod(shape_rows),
                                       backward=mode == "fwd+bwd")
            out.setdefault(op, {})[cls] = {"backend": min(ms, key=ms.get), "ms": ms,
                                           "shape": list(shape)}
    return out


def _measure_all(opts, providers, shape_attn, shape_rows, dtype, device, repeats, warmup,
                 ceilings, compiled, rows) -> None:
    on_gpu = device.type == "cuda"
    for op in opts.ops:
        case = make_case(op, shape_attn, shape_rows, dtype, device, opts.seed)
        for mode in opts.modes:
            if mode == "fwd+bwd" and op == "euler_cfg_step":
                continue  # sampling only: no backward
            for provider in providers:
                if provider == "triton" and not on_gpu:
                    rows.append(_row(case, mode, provider, status="unavailable",
                                     reason="Triton needs a CUDA device (its CPU interpreter is "
                                     "a test tool, not a benchmark)"))
                    continue
                if provider in GRAPHED and (not on_gpu or mode != "fwd"):
                    why = ("CUDA graphs need a CUDA device" if not on_gpu else
                           "graph rows time the forward only (the sampling path)")
                    rows.append(_row(case, mode, provider, status="unavailable", reason=why))
                    continue
                try:
                    fn = _provider_fn(op, provider, compiled)
                except ValueError:
                    continue  # e.g. sdpa-* for a non-attention op: not a row at all
                rows.append(measure(case, mode, provider, fn, device, repeats, warmup, ceilings))
            if opts.tune and op == "attention" and on_gpu:
                rows.extend(_attention_tuning_rows(case, mode, device, repeats, warmup, ceilings))


def _add_sdpa_ratios(rows: list[dict]) -> None:
    """vs_fastest_sdpa = fastest SDPA backend's time / this row's time, per attention mode."""
    for mode in MODES:
        sdpa = [r["median_ms"] for r in rows if r["op"] == "attention" and r["mode"] == mode
                and r["status"] == "ok" and r["provider"].startswith("sdpa")]
        if not sdpa:
            continue
        best = min(sdpa)
        for r in rows:
            if (r["op"] == "attention" and r["mode"] == mode and r["status"] == "ok"
                    and r["reason"] != "backward kernels only"):
                r["vs_fastest_sdpa"] = best / r["median_ms"] if r["median_ms"] else math.nan


def _add_plain_ratios(rows: list[dict]) -> None:
    """vs_plain = the plain row's time / this row's time, per (op, mode): plain is 1.00x."""
    plain = {(r["op"], r["mode"]): r["median_ms"] for r in rows
             if r["provider"] == "plain" and r["status"] == "ok" and r["median_ms"]}
    for r in rows:
        ref = plain.get((r["op"], r["mode"]))
        if (ref and r["status"] == "ok" and r["median_ms"]
                and r["reason"] != "backward kernels only"):
            r["vs_plain"] = ref / r["median_ms"]
