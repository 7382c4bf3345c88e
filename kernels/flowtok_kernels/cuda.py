"""The optional CUDA C++ backend: loads csrc/'s library and wraps ``torch.ops.flowtok.*``.

``python -m flowtok_kernels.build`` (``make build-ext``) compiles csrc/ with CMake against the
installed torch and copies the library next to this file (``_lib/``). Nothing here fails when
it is absent: ``status()`` says why, and ``dispatch`` only picks this backend when it loaded.
The ops' schemas live in csrc/flowtok_ops.cpp; their fake (shape) implementations come from
``flowtok_kernels.shapes``, so torch.compile traces them without a graph break.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from flowtok_kernels import shapes

LIB_DIR = Path(__file__).resolve().parent / "_lib"
LIB_NAME = "libflowtok_csrc.so"
OPS = (
    "attention_fwd", "attention_bwd",
    "layernorm_modulate_fwd", "layernorm_modulate_bwd",
    "residual_layernorm_modulate_fwd", "residual_layernorm_modulate_bwd",
    "gated_residual_fwd", "gated_residual_bwd",
    "euler_cfg_step_",
)
_state: dict[str, object] = {}


def library_path() -> Path:
    return LIB_DIR / LIB_NAME


def _load() -> tuple[bool, str]:
    path = library_path()
    if not path.exists():
        return False, (f"no {LIB_NAME} in {LIB_DIR}; run `make build-ext` "
                       "(python -m flowtok_kernels.build)")
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return False, f"{path} failed to load ({first}); rebuild with `make build-ext`"
    missing = [name for name in OPS if not hasattr(torch.ops.flowtok, name)]
    if missing:
        return False, f"{path} lacks ops {', '.join(missing)}; rebuild with `make build-ext`"
    for name in OPS:
        torch.library.register_fake(f"flowtok::{name}")(getattr(shapes, name))
    return True, f"loaded {path}"


def status() -> dict[str, object]:
    """{"built": bool, "reason": str}; loads the library on the first call."""
    if not _state:
        built, reason = _load()
        _state.update(built=built, reason=reason)
    return {"built": bool(_state["built"]), "reason": str(_state["reason"])}


def available() -> bool:
    return bool(status()["built"])


# ----------------------------------------------------------------------------- autograd


def _needs_grad(*tensors: torch.Tensor) -> bool:
    """Without autograd recording, call the op directly (no autograd.Function overhead)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class AttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale: float):
        o, lse = torch.ops.flowtok.attention_fwd(q, k, v, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = torch.ops.flowtok.attention_bwd(do, q, k, v, o, lse, ctx.scale)
        return dq, dk, dv, None


class LayerNormModulateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift, scale, eps: float):
        out, mean, rstd = torch.ops.flowtok.layernorm_modulate_fwd(x, shift, scale, eps)
        ctx.save_for_backward(x, shift, scale, mean, rstd)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, shift, scale, mean, rstd = ctx.saved_tensors
        dx, dshift, dscale = torch.ops.flowtok.layernorm_modulate_bwd(
            dout, x, shift, scale, mean, rstd)
        return dx, dshift, dscale, None


class ResidualLayerNormModulateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate, y, shift, scale, eps: float):
        x_new, out, mean, rstd = torch.ops.flowtok.residual_layernorm_modulate_fwd(
            x, gate, y, shift, scale, eps)
        ctx.save_for_backward(x_new, gate, y, scale, mean, rstd)
        ctx.shift_dtype = shift.dtype
        ctx.set_materialize_grads(False)
        return x_new, out

    @staticmethod
    def backward(ctx, dx_new, dout):
        x_new, gate, y, scale, mean, rstd = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(x_new)
        dx, dgate, dy, dshift, dscale = torch.ops.flowtok.residual_layernorm_modulate_bwd(
            dout, dx_new, x_new, gate, y, scale, mean, rstd)
        return dx, dgate, dy, dshift.to(ctx.shift_dtype), dscale, None


class GatedResidualFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gate, y):
        ctx.save_for_backward(gate, y)
        ctx.x_dtype = x.dtype
        return torch.ops.flowtok.gated_residual_fwd(x, gate, y)

    @staticmethod
    def backward(ctx, dout):
        gate, y = ctx.saved_tensors
        dgate, dy = torch.ops.flowtok.gated_residual_bwd(dout, gate, y)
        return dout.to(ctx.x_dtype), dgate, dy


# ----------------------------------------------------------------------------- public ops


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              scale: float | None = None) -> torch.Tensor:
    """q (B, H, N_Q, D), k, v (B, H, N_K, D) -> (B, H, N_Q, D). CUDA-core kernel: correct for
    any shape, but slower than the tensor-core paths (dispatch never picks it under auto)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if _needs_grad(q, k, v):
        return AttentionFunction.apply(q, k, v, scale)
    return torch.ops.flowtok.attention_fwd(q, k, v, scale)[0]


def layernorm_modulate(x, shift, scale, eps: float = 1e-6):
    """x (B, N, D), shift, scale (B, D) -> LN(x) * (1 + scale) + shift."""
    if _needs_grad(x, shift, scale):
        return LayerNormModulateFunction.apply(x, shift, scale, float(eps))
    return torch.ops.flowtok.layernorm_modulate_fwd(x, shift, scale, float(eps))[0]


def residual_layernorm_modulate(x, gate, y, shift, scale, eps: float = 1e-6):
    """-> (x + gate * y, LN(x + gate * y) * (1 + scale) + shift)."""
    if _needs_grad(x, gate, y, shift, scale):
        return ResidualLayerNormModulateFunction.apply(x, gate, y, shift, scale, float(eps))
    x_new, out, _, _ = torch.ops.flowtok.residual_layernorm_modulate_fwd(
        x, gate, y, shift, scale, float(eps))
    return x_new, out


def gated_residual(x, gate, y):
    """x, y (B, N, D), gate (B, D) -> x + gate * y."""
    if _needs_grad(x, gate, y):
        return GatedResidualFunction.apply(x, gate, y)
    return torch.ops.flowtok.gated_residual_fwd(x, gate, y)


def euler_cfg_step_(x, v_u, v_c, dt, s):
    """x <- x + dt * (v_u + s * (v_c - v_u)) in place; returns x."""
    torch.ops.flowtok.euler_cfg_step_(x, v_u, v_c, dt, s)
    return x
