"""adaLN in Triton: LayerNorm without affine, then x * (1 + scale) + shift, forward and backward.

Two ops share the kernels:
- ``layernorm_modulate(x, shift, scale)``: h = LN(x) * (1 + scale) + shift.
- ``residual_layernorm_modulate(x, gate, y, shift, scale)``: x_new = x + gate * y, then
  h = LN(x_new) * (1 + scale) + shift, returning (x_new, h). This is the DiT block's
  "residual of the attention branch, then the MLP branch's adaLN" in one pass over memory:
  reads x, y once and writes x_new, h once instead of three separate elementwise passes.

Statistics are fp32; each output is rounded once. The backward reduces dshift / dscale /
dgate over the sequence in fixed chunks of rows (partial sums, then one small sum):
deterministic, no atomics. Shapes: x, y (B, N, D); gate, shift, scale (B, D).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from flowtok_kernels import shapes
from flowtok_kernels.triton_ops import _op

ROWS_PER_PROGRAM_BWD = 16  # rows one backward program reduces; B * ceil(N / 16) programs


@triton.jit
def _ln_mod_fwd_kernel(
    X, Y, GATE, SHIFT, SCALE, XNEW, OUT, MEAN, RSTD,
    N, D, stride_gate, stride_shift, stride_scale, eps,
    BLOCK_D: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
):
    """One program per row of (B*N, D)."""
    row = tl.program_id(0).to(tl.int64)
    b = row // N
    cols = tl.arange(0, BLOCK_D)
    ok = cols < D
    offs = row * D + cols
    x = tl.load(X + offs, mask=ok, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        y = tl.load(Y + offs, mask=ok, other=0.0).to(tl.float32)
        g = tl.load(GATE + b * stride_gate + cols, mask=ok, other=0.0).to(tl.float32)
        x_new = (x + g * y).to(XNEW.dtype.element_ty)
        tl.store(XNEW + offs, x_new, mask=ok)
        x = x_new.to(tl.float32)  # normalize what the next layer will read back
    mean = tl.sum(x, 0) / D
    xc = tl.where(ok, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, 0) / D + eps)
    shift = tl.load(SHIFT + b * stride_shift + cols, mask=ok, other=0.0).to(tl.float32)
    scale = tl.load(SCALE + b * stride_scale + cols, mask=ok, other=0.0).to(tl.float32)
    out = xc * rstd * (1.0 + scale) + shift
    tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=ok)
    tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)


@triton.jit
def _ln_mod_bwd_kernel(
    DOUT, DXNEW, X, Y, GATE, SCALE, MEAN, RSTD, DX, DY,
    DSHIFT_PART, DSCALE_PART, DGATE_PART,
    N, D, stride_gate, stride_scale, rows_per_program,
    BLOCK_D: tl.constexpr, HAS_RESIDUAL: tl.constexpr, HAS_DXNEW: tl.constexpr,
):
    """One program: ``rows_per_program`` rows of one batch element; writes dx (and dy) per row
    and this chunk's partial sums of dshift, dscale (and dgate)."""
    pid = tl.program_id(0)
    n_chunks = tl.cdiv(N, rows_per_program)
    b = (pid // n_chunks).to(tl.int64)
    first = (pid % n_chunks) * rows_per_program
    cols = tl.arange(0, BLOCK_D)
    ok = cols < D
    scale = tl.load(SCALE + b * stride_scale + cols, mask=ok, other=0.0).to(tl.float32)
    acc_shift = tl.zeros([BLOCK_D], tl.float32)
    acc_scale = tl.zeros([BLOCK_D], tl.float32)
    acc_gate = tl.zeros([BLOCK_D], tl.float32)
    if HAS_RESIDUAL:
        gate = tl.load(GATE + b * stride_gate + cols, mask=ok, other=0.0).to(tl.float32)
    for i in range(rows_per_program):
        n = first + i
        valid = n < N
        row = b * N + n
        m = cols < tl.where(valid, D, 0)  # this row's columns, none past the last row
        offs = row * D + cols
        x = tl.load(X + offs, mask=m, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + row, mask=valid, other=0.0)
        rstd = tl.load(RSTD + row, mask=valid, other=0.0)
        x_hat = tl.where(m, (x - mean) * rstd, 0.0)
        dout = tl.load(DOUT + offs, mask=m, other=0.0).to(tl.float32)
        acc_shift += dout
        acc_scale += dout * x_hat
        dx_hat = dout * (1.0 + scale)
        c1 = tl.sum(dx_hat * x_hat, 0) / D
        c2 = tl.sum(dx_hat, 0) / D
        dx = (dx_hat - x_hat * c1 - c2) * rstd
        if HAS_RESIDUAL:
            if HAS_DXNEW:
                dx += tl.load(DXNEW + offs, mask=m, other=0.0).to(tl.float32)
            y = tl.load(Y + offs, mask=m, other=0.0).to(tl.float32)
            acc_gate += dx * y
            tl.store(DY + offs, (gate * dx).to(DY.dtype.element_ty), mask=m)
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=m)
    part = pid.to(tl.int64) * D + cols
    tl.store(DSHIFT_PART + part, acc_shift, mask=ok)
    tl.store(DSCALE_PART + part, acc_scale, mask=ok)
    if HAS_RESIDUAL:
        tl.store(DGATE_PART + part, acc_gate, mask=ok)


# ----------------------------------------------------------------------------- launchers


def _row_major(v: torch.Tensor) -> torch.Tensor:
    """A (B, D) modulation vector with unit column stride (a chunk of (B, 6D) already is)."""
    return v if v.stride(-1) == 1 else v.contiguous()


def _warps(block_d: int, backward: bool = False) -> int:
    """4 warps up to 2048 columns forward, 1024 backward: the backward's three per-column
    accumulators took 168 registers at 2048 with 4 warps (16 B of spills on sm_80 in fp32);
    8 warps hold them in 80 and keep twice the warps resident (AOT compiles, benchmarks/RESULTS.md)."""
    return 4 if block_d <= (1024 if backward else 2048) else 8


def _check(x: torch.Tensor, *mods: torch.Tensor) -> None:
    if x.dim() != 3:
        raise ValueError(f"layernorm_modulate expects x of shape (B, N, D), got {tuple(x.shape)}")
    for v in mods:
        if v.shape != (x.shape[0], x.shape[2]):
            raise ValueError(f"modulation vectors must be (B, D) = ({x.shape[0]}, {x.shape[2]}), "
                             f"got {tuple(v.shape)}")


def _fwd(x, y, gate, shift, scale, eps):
    b, n, d = x.shape
    x = x.contiguous()
    has_res = y is not None
    y = y.contiguous() if has_res else x
    gate = _row_major(gate) if has_res else shift
    shift, scale = _row_major(shift), _row_major(scale)
    out, mean, rstd = shapes.layernorm_modulate_fwd(x, shift, scale, eps)
    x_new = shapes.like(x) if has_res else out
    block_d = triton.next_power_of_2(d)
    wrap_triton(_ln_mod_fwd_kernel)[(b * n,)](
        x, y, gate, shift, scale, x_new, out, mean, rstd,
        n, d, gate.stride(0), shift.stride(0), scale.stride(0), eps,
        BLOCK_D=block_d, HAS_RESIDUAL=has_res, num_warps=_warps(block_d),
    )
    return x_new, out, mean, rstd


def _bwd(dout, dx_new, x, y, gate, scale, mean, rstd):
    """-> dx, dy (dx again without a residual), [dshift, dscale(, dgate)] as (B, D) fp32."""
    b, n, d = x.shape
    dout, x = dout.contiguous(), x.contiguous()
    has_res = y is not None
    has_dxnew = dx_new is not None
    y = y.contiguous() if has_res else x
    dx_new = dx_new.contiguous() if has_dxnew else dout
    scale = _row_major(scale)
    gate = _row_major(gate) if has_res else scale
    rows = max(1, min(ROWS_PER_PROGRAM_BWD, n))
    programs = b * triton.cdiv(n, rows)
    # one buffer per reduction, so the summed gradients are separate tensors (an op's outputs
    # must not alias each other)
    parts = [torch.empty((programs, d), dtype=torch.float32, device=x.device)
             for _ in range(3 if has_res else 2)]
    dx = shapes.like(x)
    dy = shapes.like(y) if has_res else dx
    block_d = triton.next_power_of_2(d)
    wrap_triton(_ln_mod_bwd_kernel)[(programs,)](
        dout, dx_new, x, y, gate, scale, mean, rstd, dx, dy,
        parts[0], parts[1], parts[-1],
        n, d, gate.stride(0), scale.stride(0), rows,
        BLOCK_D=block_d, HAS_RESIDUAL=has_res, HAS_DXNEW=has_dxnew,
        num_warps=_warps(block_d, backward=True),
    )
    return dx, dy, [p.view(b, -1, d).sum(1) for p in parts]  # each (B, D)


def layernorm_modulate_fwd(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, N, D), shift, scale (B, D) -> out (B, N, D), mean, rstd (B, N) fp32."""
    _, out, mean, rstd = _fwd(x, None, None, shift, scale, eps)
    return out, mean, rstd


def layernorm_modulate_bwd(dout: torch.Tensor, x: torch.Tensor, shift: torch.Tensor,
                           scale: torch.Tensor, mean: torch.Tensor,
                           rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> dx (B, N, D), dshift, dscale (B, D) in shift's / scale's dtype."""
    dx, _, sums = _bwd(dout, None, x, None, None, scale, mean, rstd)
    return dx, sums[0].to(shift.dtype), sums[1].to(scale.dtype)


def residual_layernorm_modulate_fwd(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor,
    scale: torch.Tensor, eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> x_new = x + gate * y, out = LN(x_new) * (1 + scale) + shift, mean, rstd."""
    return _fwd(x, y, gate, shift, scale, eps)


def residual_layernorm_modulate_bwd(
    dout: torch.Tensor, dx_new: torch.Tensor | None, x_new: torch.Tensor, gate: torch.Tensor,
    y: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """dout = dL/dout, dx_new = dL/dx_new from later uses (None: unused) -> dx, dgate, dy,
    dshift, dscale. dshift is returned in scale's dtype (shift and scale share one adaLN)."""
    dx, dy, sums = _bwd(dout, dx_new, x_new, y, gate, scale, mean, rstd)
    return dx, sums[2].to(gate.dtype), dy, sums[0].to(scale.dtype), sums[1].to(scale.dtype)


_KERNELS = [_ln_mod_fwd_kernel, _ln_mod_bwd_kernel]
layernorm_modulate_fwd_op = _op.register(
    "layernorm_modulate_fwd", layernorm_modulate_fwd, shapes.layernorm_modulate_fwd, _KERNELS)
layernorm_modulate_bwd_op = _op.register(
    "layernorm_modulate_bwd", layernorm_modulate_bwd, shapes.layernorm_modulate_bwd, _KERNELS)
residual_layernorm_modulate_fwd_op = _op.register(
    "residual_layernorm_modulate_fwd", residual_layernorm_modulate_fwd,
    shapes.residual_layernorm_modulate_fwd, _KERNELS)
residual_layernorm_modulate_bwd_op = _op.register(
    "residual_layernorm_modulate_bwd", residual_layernorm_modulate_bwd,
    shapes.residual_layernorm_modulate_bwd, _KERNELS)


# ----------------------------------------------------------------------------- autograd


class LayerNormModulateFunction(torch.autograd.Function):
    """LN(x) * (1 + scale) + shift with the Triton forward and backward."""

    @staticmethod
    def forward(ctx, x, shift, scale, eps: float):
        out, mean, rstd = _op.call(layernorm_modulate_fwd_op, layernorm_modulate_fwd,
                                   x, shift, scale, eps)
        ctx.save_for_backward(x, shift, scale, mean, rstd)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, shift, scale, mean, rstd = ctx.saved_tensors
        dx, dshift, dscale = _op.call(layernorm_modulate_bwd_op, layernorm_modulate_bwd,
                                      dout, x, shift, scale, mean, rstd)
        return dx, dshift, dscale, None


class ResidualLayerNormModulateFunction(torch.autograd.Function):
    """(x + gate * y, LN(x + gate * y) * (1 + scale) + shift) with one kernel each way."""

    @staticmethod
    def forward(ctx, x, gate, y, shift, scale, eps: float):
        x_new, out, mean, rstd = _op.call(
            residual_layernorm_modulate_fwd_op, residual_layernorm_modulate_fwd,
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
        dx, dgate, dy, dshift, dscale = _op.call(
            residual_layernorm_modulate_bwd_op, residual_layernorm_modulate_bwd,
            dout, dx_new, x_new, gate, y, scale, mean, rstd)
        return dx, dgate, dy, dshift.to(ctx.shift_dtype), dscale, None


def layernorm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                       eps: float = 1e-6) -> torch.Tensor:
    """x (B, N, D), shift, scale (B, D) -> LN(x) * (1 + scale) + shift, (B, N, D) x.dtype."""
    _check(x, shift, scale)
    if _op.needs_grad(x, shift, scale):
        return LayerNormModulateFunction.apply(x, shift, scale, float(eps))
    return _op.call(layernorm_modulate_fwd_op, layernorm_modulate_fwd, x, shift, scale,
                    float(eps))[0]


def residual_layernorm_modulate(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor,
    scale: torch.Tensor, eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, y (B, N, D); gate, shift, scale (B, D) -> (x_new, h), both (B, N, D) x.dtype, with
    x_new = x + gate * y and h = LN(x_new) * (1 + scale) + shift."""
    _check(x, gate, shift, scale)
    if y.shape != x.shape:
        raise ValueError(f"y must match x {tuple(x.shape)}, got {tuple(y.shape)}")
    if _op.needs_grad(x, gate, y, shift, scale):
        return ResidualLayerNormModulateFunction.apply(x, gate, y, shift, scale, float(eps))
    x_new, out, _, _ = _op.call(residual_layernorm_modulate_fwd_op,
                                residual_layernorm_modulate_fwd, x, gate, y, shift, scale,
                                float(eps))
    return x_new, out
