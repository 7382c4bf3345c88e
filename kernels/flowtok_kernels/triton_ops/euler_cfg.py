"""One Euler step with classifier-free guidance in Triton, in place:
x <- x + dt * (v_u + s * (v_c - v_u)).

dt and s are read from device memory, not passed as Python floats, so a captured CUDA graph
replays with new values written into the same two tensors. Each may hold one value or one
per sample (shape (B, 1, ..., 1)). Arithmetic in fp32, x rounded once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from flowtok_kernels import shapes
from flowtok_kernels.triton_ops import _op

BLOCK = 1024  # elements per program


@triton.jit
def _euler_cfg_kernel(X, VU, VC, DT, S, numel, per_sample,
                      DT_PER_SAMPLE: tl.constexpr, S_PER_SAMPLE: tl.constexpr,
                      BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    sample = offs // per_sample
    if DT_PER_SAMPLE:
        dt = tl.load(DT + sample, mask=ok, other=0.0).to(tl.float32)
    else:
        dt = tl.load(DT).to(tl.float32)
    if S_PER_SAMPLE:
        s = tl.load(S + sample, mask=ok, other=0.0).to(tl.float32)
    else:
        s = tl.load(S).to(tl.float32)
    x = tl.load(X + offs, mask=ok, other=0.0).to(tl.float32)
    vu = tl.load(VU + offs, mask=ok, other=0.0).to(tl.float32)
    vc = tl.load(VC + offs, mask=ok, other=0.0).to(tl.float32)
    x = x + dt * (vu + s * (vc - vu))
    tl.store(X + offs, x.to(X.dtype.element_ty), mask=ok)


def _per_sample(t: torch.Tensor, x: torch.Tensor, name: str) -> bool:
    """True for one value per sample, False for a single value; anything else is an error."""
    if t.numel() == 1:
        return False
    if t.dim() == x.dim() and t.shape[0] == x.shape[0] and t.numel() == x.shape[0]:
        return True
    raise ValueError(f"{name} must hold one value or one per sample (shape ({x.shape[0]}, 1, ...)),"
                     f" got shape {tuple(t.shape)}")


def check(x: torch.Tensor, v_u: torch.Tensor, v_c: torch.Tensor, dt: torch.Tensor,
          s: torch.Tensor) -> None:
    if v_u.shape != x.shape or v_c.shape != x.shape:
        raise ValueError(f"v_u and v_c must match x {tuple(x.shape)}, got {tuple(v_u.shape)} and "
                         f"{tuple(v_c.shape)}")
    if not x.is_contiguous():
        raise ValueError("euler_cfg_step_ updates x in place and needs it contiguous; "
                         "pass x.contiguous() and keep that tensor")
    _per_sample(dt, x, "dt")
    _per_sample(s, x, "s")


def euler_cfg_step_(x: torch.Tensor, v_u: torch.Tensor, v_c: torch.Tensor, dt: torch.Tensor,
                    s: torch.Tensor) -> None:
    """In place on x (any shape, contiguous); v_u, v_c like x; dt, s device tensors."""
    numel = x.numel()
    if numel == 0:
        return
    dt_ps, s_ps = _per_sample(dt, x, "dt"), _per_sample(s, x, "s")
    wrap_triton(_euler_cfg_kernel)[(triton.cdiv(numel, BLOCK),)](
        x, v_u.contiguous(), v_c.contiguous(), dt, s, numel,
        numel // x.shape[0] if x.dim() else numel,
        DT_PER_SAMPLE=dt_ps, S_PER_SAMPLE=s_ps, BLOCK=BLOCK, num_warps=4,
    )


euler_cfg_step_op = _op.register("euler_cfg_step_", euler_cfg_step_, shapes.euler_cfg_step_,
                                 kernels=[_euler_cfg_kernel], mutates_args=("x",))


def euler_cfg_step(x: torch.Tensor, v_u: torch.Tensor, v_c: torch.Tensor, dt: torch.Tensor,
                   s: torch.Tensor) -> torch.Tensor:
    """x <- x + dt * (v_u + s * (v_c - v_u)) in place; returns x. No autograd (sampling only)."""
    check(x, v_u, v_c, dt, s)
    _op.call(euler_cfg_step_op, euler_cfg_step_, x, v_u, v_c, dt, s)
    return x
