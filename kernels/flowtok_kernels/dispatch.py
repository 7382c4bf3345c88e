"""Backend selection for each fused op. Per-call argument > FLOWTOK_KERNELS env var > auto.

Backends: ``triton`` (triton_ops/), ``cuda`` (csrc/, optional build), ``xformers`` and ``sdpa``
(attention only), ``torch`` (reference.py). Rules:
- An explicitly requested backend that cannot run raises ``BackendUnavailable`` saying why.
  FLOWTOK_KERNELS counts as explicit for the ops it names a backend of; ``sdpa`` / ``xformers``
  there concern attention only, and the other ops keep ``auto``.
- ``auto`` falls back quietly; ``backend_report`` says what it picks and why.
- On CPU ``auto`` is SDPA for attention and the reference for the rest. It never picks
  Triton there: the interpreter (TRITON_INTERPRET=1) exists for tests only.
- ``auto`` first asks ``measured`` which backend `flowtok bench kernels` last measured fastest
  on this device (name + torch version) for the op and the call's shape class, and takes it when
  it can run the call (so a norm op stays unfused where torch measured faster). Without a
  measurement the static rule below applies.
- On CUDA ``auto`` prefers the csrc build for the memory-bound ops (lowest launch overhead)
  then Triton; for attention, Triton up to ``SHORT_KEYS`` keys in fp16/bf16 (the shape its
  tiles were designed for) and SDPA otherwise (FlashAttention-2 / cuDNN win on long rows).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from flowtok_kernels import measured, reference

BACKENDS = ("auto", "triton", "cuda", "xformers", "sdpa", "torch")
ENV_VAR = "FLOWTOK_KERNELS"
SHORT_KEYS = measured.SHORT_KEYS  # attention: the short-sequence regime (FlowTok's 77 tokens)
TRITON_MAX_HEAD_DIM = 256

# What each op can run on, and what auto tries on a CUDA device, in order.
IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "attention": ("triton", "cuda", "xformers", "sdpa", "torch"),
    "layernorm_modulate": ("triton", "cuda", "torch"),
    "residual_layernorm_modulate": ("triton", "cuda", "torch"),
    "gated_residual": ("triton", "cuda", "torch"),
    "euler_cfg_step": ("triton", "cuda", "torch"),
}
# attention: PyTorch's SDPA. On an H200 (torch 2.11, bf16, 128 x 16 heads x 77 x 72; benchmarks/
# RESULTS.md "GPU check") SDPA took 0.052 ms forward and 0.29 ms forward + backward, the Triton
# kernel 0.43 / 2.58 ms when launched eagerly (0.072 ms forward inside a CUDA graph: most of
# its time is host-side launch cost), the csrc kernel 1.63 / 5.29 ms. `flowtok bench kernels`
# on a user's GPU still overrides this per shape class (flowtok_kernels.measured).
AUTO_ORDER_CUDA: dict[str, tuple[str, ...]] = {
    "attention": ("sdpa",),
    "layernorm_modulate": ("cuda", "triton", "torch"),
    "residual_layernorm_modulate": ("cuda", "triton", "torch"),
    "gated_residual": ("cuda", "triton", "torch"),
    "euler_cfg_step": ("cuda", "triton", "torch"),
}
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here."""


# ----------------------------------------------------------------------------- availability

_module_cache: dict[str, Any] = {}


def _triton_ops():
    """The Triton op modules, or the ImportError's text (triton missing or broken)."""
    if "triton" not in _module_cache:
        try:
            from flowtok_kernels.triton_ops import (
                _op,
                attention,
                euler_cfg,
                gated_residual,
                layernorm_modulate,
            )

            _module_cache["triton"] = {
                "attention": attention, "layernorm_modulate": layernorm_modulate,
                "gated_residual": gated_residual, "euler_cfg_step": euler_cfg,
                "interpreted": _op.is_interpreted(attention._attn_fwd_kernel),
            }
        except ImportError as e:
            _module_cache["triton"] = f"{type(e).__name__}: {e}"
    return _module_cache["triton"]


def _cuda_ext():
    if "cuda" not in _module_cache:
        from flowtok_kernels import cuda

        _module_cache["cuda"] = cuda
    return _module_cache["cuda"]


def csrc_status() -> dict[str, Any]:
    """{"built": bool, "reason": str} for the csrc/ CUDA extension (loads it once)."""
    return _cuda_ext().status()


def _interpreter_on(mods: dict) -> bool:
    """The kernels were decorated by the interpreter and it is still switched on (triton reads
    the variable again while running them)."""
    return mods["interpreted"] and os.environ.get("TRITON_INTERPRET") == "1"


def _why_not(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device`` at all (None: it can)."""
    if backend in ("torch", "sdpa"):
        return None
    if backend == "triton":
        mods = _triton_ops()
        if isinstance(mods, str):
            return f"triton is not importable ({mods})"
        if device.type == "cuda" or (device.type == "cpu" and _interpreter_on(mods)):
            return None
        return (f"Triton kernels need a CUDA tensor, got {device.type} (the interpreter, "
                "TRITON_INTERPRET=1 set both when they are imported and when they run, is for "
                "tests only)")
    if backend == "cuda":
        status = csrc_status()
        if not status["built"]:
            return f"the csrc extension is not loaded: {status['reason']}"
        if device.type != "cuda":
            return f"the csrc extension runs on CUDA tensors only, got {device.type}"
        return None
    if backend == "xformers":
        if importlib.util.find_spec("xformers") is None:
            return "xformers is not installed (pip install 'flowtok[xformers]')"
        if device.type != "cuda":
            return f"xformers runs on CUDA tensors only, got {device.type}"
        return None
    raise AssertionError(backend)


def _requested(op: str, backend: str | None) -> tuple[str, bool]:
    """(backend name, explicitly requested?) after per-call > env var > auto."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown kernel backend {backend!r}; choose one of "
                             f"{', '.join(BACKENDS)}")
        return backend, backend != "auto"
    env = os.environ.get(ENV_VAR, "").strip()
    if not env or env == "auto":
        return "auto", False
    if env not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={env!r} is not a kernel backend; choose one of "
                         f"{', '.join(BACKENDS)}")
    if env not in IMPLEMENTED[op]:
        return "auto", False  # e.g. FLOWTOK_KERNELS=sdpa says nothing about layer norms
    return env, True


_auto_memo: dict[tuple, tuple[str, str]] = {}
measured.on_change(_auto_memo.clear)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _rows_class(op: str, x: torch.Tensor, *others: torch.Tensor) -> str:
    """The measured-dispatch shape class of a row op's call (see flowtok_kernels.measured)."""
    return measured.shape_class(op, x.dtype, elements=x.numel(),
                                backward=_needs_grad(x, *others))


def _choose(op: str, backend: str | None, device: torch.device,
            unsupported: Callable[[str, bool], str | None], key: tuple = (),
            cls: str | None = None) -> tuple[str, str]:
    """(backend, reason). ``unsupported(name, explicit)`` rejects arguments a backend cannot
    take (explicit requests skip limits that are only about speed); ``key`` holds everything
    it looks at and ``cls`` is the call's measured-dispatch shape class, so auto's choice is
    computed once per (op, device type, key, cls): dispatch costs a dict lookup per call, not a
    string of checks, in every block of every step."""
    name, explicit = _requested(op, backend)
    if not explicit:
        memo_key = (op, device.type, key, cls)
        if memo_key not in _auto_memo:
            _auto_memo[memo_key] = _choose_auto(op, device, unsupported, cls)
        return _auto_memo[memo_key]
    if name not in IMPLEMENTED[op]:
        raise BackendUnavailable(f"{op} has no {name!r} backend; choose one of "
                                 f"{', '.join(IMPLEMENTED[op])}")
    why = _why_not(name, device) or unsupported(name, True)
    if why:
        raise BackendUnavailable(f"{op} backend {name!r} cannot run here: {why}")
    return name, "requested" if backend else f"{ENV_VAR}={name}"


def _measured_choice(op: str, device: torch.device,
                     unsupported: Callable[[str, bool], str | None],
                     cls: str | None) -> tuple[tuple[str, str] | None, str]:
    """((backend, reason) measured fastest and able to run this call, or None; why not)."""
    if cls is None:
        return None, ""
    entry = measured.lookup(op, device, cls)
    if entry is None:
        return None, ""
    cand = entry["backend"]
    why = (None if cand in IMPLEMENTED[op] else f"{op} has no {cand!r} backend")
    why = why or _why_not(cand, device) or unsupported(cand, True)  # hard limits only
    if why is None and cand == "triton" and _triton_ops()["interpreted"]:
        why = "TRITON_INTERPRET=1 is set (kernels would run as Python)"
    if why:
        return None, f"measured fastest {cand!r} cannot run this call ({why}); "
    times = entry.get("ms") or {}
    detail = ", ".join(f"{b} {ms:.4g} ms" for b, ms in sorted(times.items(), key=lambda kv: kv[1])
                       if isinstance(ms, (int, float)))
    return (cand, f"measured fastest on this device by flowtok bench kernels ({cls}"
            + (f": {detail}" if detail else "") + ")"), ""


def _choose_auto(op: str, device: torch.device, unsupported: Callable[[str, bool], str | None],
                 cls: str | None = None) -> tuple[str, str]:
    choice, note = _measured_choice(op, device, unsupported, cls)
    if choice is not None:
        return choice
    name, reason = _static_auto(op, device, unsupported)
    return name, note + reason


def _static_auto(op: str, device: torch.device,
                 unsupported: Callable[[str, bool], str | None]) -> tuple[str, str]:
    fallback = "sdpa" if op == "attention" else "torch"
    if device.type != "cuda":
        reason = "PyTorch's fused SDPA" if op == "attention" else "PyTorch reference"
        return fallback, f"no CUDA device: {reason} (Triton's interpreter is for tests only)"
    skipped = []
    for cand in AUTO_ORDER_CUDA[op]:
        why = _why_not(cand, device) or unsupported(cand, False)
        if why is None and cand == "triton" and _triton_ops()["interpreted"]:
            why = "TRITON_INTERPRET=1 is set (kernels would run as Python)"
        if why is None:
            return cand, _AUTO_REASON[cand] + (f" (skipped {'; '.join(skipped)})" if skipped
                                               else "")
        skipped.append(f"{cand}: {why}")
    return fallback, "; ".join(skipped)


_AUTO_REASON = {
    "cuda": "csrc CUDA kernel (least launch overhead)",
    "triton": "fused Triton kernel",
    "sdpa": "PyTorch SDPA (FlashAttention-2 / cuDNN / memory-efficient)",
    "torch": "PyTorch reference",
}


# ----------------------------------------------------------------------------- ops


def _attention_unsupported(q: torch.Tensor, k: torch.Tensor) -> Callable[[str, bool], str | None]:
    def check(name: str, explicit: bool) -> str | None:
        if name != "triton":
            return None
        if q.shape[-1] > TRITON_MAX_HEAD_DIM:
            return f"head dim {q.shape[-1]} > {TRITON_MAX_HEAD_DIM}"
        if q.dtype not in (torch.float32, *_LOW_PRECISION):
            return f"dtype {q.dtype} (fp32, fp16, bf16 only)"
        if not explicit and (k.shape[-2] > SHORT_KEYS or q.dtype not in _LOW_PRECISION):
            return (f"tuned for <= {SHORT_KEYS} keys in fp16/bf16, got {k.shape[-2]} keys in "
                    f"{q.dtype}")
        return None
    return check


def _attention_key(q: torch.Tensor, k: torch.Tensor) -> tuple:
    """What ``_attention_unsupported`` looks at."""
    return (q.dtype, q.shape[-1] > TRITON_MAX_HEAD_DIM, k.shape[-2] > SHORT_KEYS)


def _xformers_attention(q, k, v, scale):
    import xformers.ops as xops

    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2),
                                          v.transpose(1, 2), scale=scale)
    return out.transpose(1, 2)


def attention(q, k, v, scale=None, backend: str | None = None):
    """Non-causal attention. q (B, H, N_Q, D), k, v (B, H, N_K, D) -> (B, H, N_Q, D), q.dtype.

    ``scale`` defaults to D ** -0.5. Differentiable on every backend.
    """
    name, _ = _choose("attention", backend, q.device, _attention_unsupported(q, k),
                      _attention_key(q, k), measured.shape_class(
                          "attention", q.dtype, keys=k.shape[-2], backward=_needs_grad(q, k, v)))
    if name == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    if name == "triton":
        return _triton_ops()["attention"].attention(q, k, v, scale)
    if name == "cuda":
        return _cuda_ext().attention(q, k, v, scale)
    if name == "xformers":
        return _xformers_attention(q, k, v, 1.0 / math.sqrt(q.shape[-1]) if scale is None
                                   else scale)
    return reference.attention(q, k, v, scale)


def _no_limits(name: str, explicit: bool) -> str | None:
    return None


def layernorm_modulate(x, shift, scale, eps: float = 1e-6, backend: str | None = None):
    """adaLN: LN(x) * (1 + scale) + shift. x (B, N, D); shift, scale (B, D) -> (B, N, D)."""
    name, _ = _choose("layernorm_modulate", backend, x.device, _no_limits, (),
                      _rows_class("layernorm_modulate", x, shift, scale))
    if name == "triton":
        return _triton_ops()["layernorm_modulate"].layernorm_modulate(x, shift, scale, eps)
    if name == "cuda":
        return _cuda_ext().layernorm_modulate(x, shift, scale, eps)
    return reference.layernorm_modulate(x, shift, scale, eps)


def residual_layernorm_modulate(x, gate, y, shift, scale, eps: float = 1e-6,
                                backend: str | None = None):
    """x_new = x + gate * y; h = LN(x_new) * (1 + scale) + shift; returns (x_new, h).

    x, y (B, N, D); gate, shift, scale (B, D). One kernel instead of gated_residual followed
    by layernorm_modulate (reads x, y once; writes x_new, h once).
    """
    name, _ = _choose("residual_layernorm_modulate", backend, x.device, _no_limits, (),
                      _rows_class("residual_layernorm_modulate", x, gate, y, shift, scale))
    if name == "triton":
        return _triton_ops()["layernorm_modulate"].residual_layernorm_modulate(
            x, gate, y, shift, scale, eps)
    if name == "cuda":
        return _cuda_ext().residual_layernorm_modulate(x, gate, y, shift, scale, eps)
    return reference.residual_layernorm_modulate(x, gate, y, shift, scale, eps)


def gated_residual(x, gate, y, backend: str | None = None):
    """adaLN-Zero residual x + gate * y. x, y (B, N, D); gate (B, D) -> (B, N, D)."""
    name, _ = _choose("gated_residual", backend, x.device, _no_limits, (),
                      _rows_class("gated_residual", x, gate, y))
    if name == "triton":
        return _triton_ops()["gated_residual"].gated_residual(x, gate, y)
    if name == "cuda":
        return _cuda_ext().gated_residual(x, gate, y)
    return reference.gated_residual(x, gate, y)


def euler_cfg_step_(x, v_u, v_c, dt, s, backend: str | None = None):
    """In place: x <- x + dt * (v_u + s * (v_c - v_u)); returns x.

    x, v_u, v_c: same shape (x contiguous for the fused kernels); dt, s: device tensors with
    one value or one per sample ((B, 1, ..., 1)), so a captured CUDA graph can be replayed
    after writing new values into them.
    """
    name, _ = _choose("euler_cfg_step", backend, x.device, _no_limits, (),
                      _rows_class("euler_cfg_step", x))
    if name == "triton":
        return _triton_ops()["euler_cfg_step"].euler_cfg_step(x, v_u, v_c, dt, s)
    if name == "cuda":
        return _cuda_ext().euler_cfg_step_(x, v_u, v_c, dt, s)
    return reference.euler_cfg_step_(x, v_u, v_c, dt, s)


# ----------------------------------------------------------------------------- report


def backend_report(device: str | torch.device | None = None) -> dict[str, dict[str, str]]:
    """Which backend each op would use on ``device`` (FLOWTOK_KERNELS applied), and why.

    Judged for flowtok's sampling shape (forward only): attention at 77 tokens, head dim 72;
    the row ops at XL's 128 x 77 x 1152; bf16 (fp32 on CPU). A backend measured fastest by
    `flowtok bench kernels` (flowtok_kernels.measured) says so in its reason.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    q = torch.empty((1, 1, 77, 72), dtype=dtype, device="meta")
    report = {}
    for op in IMPLEMENTED:
        check = _attention_unsupported(q, q) if op == "attention" else _no_limits
        key = _attention_key(q, q) if op == "attention" else ()
        cls = measured.shape_class(op, dtype, keys=77, elements=128 * 77 * 1152)
        try:
            name, reason = _choose(op, None, dev, check, key, cls)
        except BackendUnavailable as e:
            name, reason = "unavailable", str(e)
        report[op] = {"backend": name, "reason": reason}
    return report
