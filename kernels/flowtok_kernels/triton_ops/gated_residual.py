"""adaLN-Zero gated residual in Triton: x + gate * y, forward and backward.

Eager PyTorch spends two kernels and a temporary on this; one kernel reads x, y once and
writes the sum once, rounding once. The backward writes dy = gate * dout and reduces
dgate = sum_N(dout * y) in fixed row chunks (deterministic); dx is dout itself.
Shapes: x, y (B, N, D); gate (B, D).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from flowtok_kernels import shapes
from flowtok_kernels.triton_ops import _op

ROWS_PER_PROGRAM_BWD = 16


@triton.jit
def _gated_residual_fwd_kernel(X, GATE, Y, OUT, N, D, stride_gate, BLOCK_D: tl.constexpr):
    """One program per row of (B*N, D)."""
    row = tl.program_id(0).to(tl.int64)
    b = row // N
    cols = tl.arange(0, BLOCK_D)
    ok = cols < D
    offs = row * D + cols
    x = tl.load(X + offs, mask=ok, other=0.0).to(tl.float32)
    y = tl.load(Y + offs, mask=ok, other=0.0).to(tl.float32)
    g = tl.load(GATE + b * stride_gate + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(OUT + offs, (x + g * y).to(OUT.dtype.element_ty), mask=ok)


@triton.jit
def _gated_residual_bwd_kernel(DOUT, GATE, Y, DY, DGATE_PART, N, D, stride_gate,
                               rows_per_program, BLOCK_D: tl.constexpr):
    """One program: ``rows_per_program`` rows of one batch element -> dy rows, dgate partial."""
    pid = tl.program_id(0)
    n_chunks = tl.cdiv(N, rows_per_program)
    b = (pid // n_chunks).to(tl.int64)
    first = (pid % n_chunks) * rows_per_program
    cols = tl.arange(0, BLOCK_D)
    ok = cols < D
    g = tl.load(GATE + b * stride_gate + cols, mask=ok, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_D], tl.float32)
    for i in range(rows_per_program):
        n = first + i
        m = cols < tl.where(n < N, D, 0)  # this row's columns, none past the last row
        offs = (b * N + n) * D + cols
        dout = tl.load(DOUT + offs, mask=m, other=0.0).to(tl.float32)
        y = tl.load(Y + offs, mask=m, other=0.0).to(tl.float32)
        acc += dout * y
        tl.store(DY + offs, (g * dout).to(DY.dtype.element_ty), mask=m)
    tl.store(DGATE_PART + pid.to(tl.int64) * D + cols, acc, mask=ok)


# ----------------------------------------------------------------------------- launchers


def _check(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 3 or y.shape != x.shape or gate.shape != (x.shape[0], x.shape[2]):
        raise ValueError(f"gated_residual expects x, y (B, N, D) and gate (B, D), got x "
                         f"{tuple(x.shape)}, gate {tuple(gate.shape)}, y {tuple(y.shape)}")


def _row_major(v: torch.Tensor) -> torch.Tensor:
    return v if v.stride(-1) == 1 else v.contiguous()


def gated_residual_fwd(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x, y (B, N, D), gate (B, D) -> x + gate * y, (B, N, D) x.dtype."""
    b, n, d = x.shape
    x, y, gate = x.contiguous(), y.contiguous(), _row_major(gate)
    out = shapes.gated_residual_fwd(x, gate, y)
    block_d = triton.next_power_of_2(d)
    wrap_triton(_gated_residual_fwd_kernel)[(b * n,)](
        x, gate, y, out, n, d, gate.stride(0), BLOCK_D=block_d,
        num_warps=4 if block_d <= 2048 else 8,
    )
    return out


def gated_residual_bwd(dout: torch.Tensor, gate: torch.Tensor,
                       y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> dgate (B, D) gate.dtype, dy (B, N, D) y.dtype. (dx is dout.)"""
    b, n, d = y.shape
    dout, y, gate = dout.contiguous(), y.contiguous(), _row_major(gate)
    rows = max(1, min(ROWS_PER_PROGRAM_BWD, n))
    programs = b * triton.cdiv(n, rows)
    part = torch.empty((programs, d), dtype=torch.float32, device=y.device)
    dy = shapes.like(y)
    block_d = triton.next_power_of_2(d)
    wrap_triton(_gated_residual_bwd_kernel)[(programs,)](
        dout, gate, y, dy, part, n, d, gate.stride(0), rows, BLOCK_D=block_d,
        num_warps=4 if block_d <= 2048 else 8,
    )
    return part.view(b, -1, d).sum(1).to(gate.dtype), dy


_KERNELS = [_gated_residual_fwd_kernel, _gated_residual_bwd_kernel]
gated_residual_fwd_op = _op.register("gated_residual_fwd", gated_residual_fwd,
                                     shapes.gated_residual_fwd, _KERNELS)
gated_residual_bwd_op = _op.register("gated_residual_bwd", gated_residual_bwd,
                                     shapes.gated_residual_bwd, _KERNELS)


# ----------------------------------------------------------------------------- autograd


class GatedResidualFunction(torch.autograd.Function):
    """x + gate * y with the Triton forward and backward."""

    @staticmethod
    def forward(ctx, x, gate, y):
        ctx.save_for_backward(gate, y)
        ctx.x_dtype = x.dtype
        return _op.call(gated_residual_fwd_op, gated_residual_fwd, x, gate, y)

    @staticmethod
    def backward(ctx, dout):
        gate, y = ctx.saved_tensors
        dgate, dy = _op.call(gated_residual_bwd_op, gated_residual_bwd, dout, gate, y)
        return dout.to(ctx.x_dtype), dgate, dy


def gated_residual(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x, y (B, N, D), gate (B, D) -> x + gate[:, None] * y, (B, N, D) x.dtype."""
    _check(x, gate, y)
    if _op.needs_grad(x, gate, y):
        return GatedResidualFunction.apply(x, gate, y)
    return _op.call(gated_residual_fwd_op, gated_residual_fwd, x, gate, y)
