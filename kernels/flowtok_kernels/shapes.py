"""Output allocation for every fused op, shared by the Triton and CUDA backends.

The same functions allocate real outputs and serve as fake (meta) implementations for
torch.compile, so the shapes, dtypes and strides a compiled graph assumes are, by
construction, the ones the kernels produce.
"""

from __future__ import annotations

import torch


def like(x: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor with x's shape, dtype and device."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def row_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-row fp32 statistic (mean, rstd) of x (B, N, D) -> (B, N)."""
    return torch.empty(x.shape[:2], dtype=torch.float32, device=x.device)


def attention_out(q: torch.Tensor) -> torch.Tensor:
    """(B, H, N, D) stored as (B, N, H, D), so ``o.transpose(1, 2).reshape(B, N, H * D)`` is free."""
    b, h, n, d = q.shape
    return torch.empty((b, n, h, d), dtype=q.dtype, device=q.device).transpose(1, 2)


def attention_fwd(q, k, v, scale):
    """-> o (B, H, N_Q, D) like ``attention_out``, lse (B, H, N_Q) fp32."""
    b, h, n_q, _ = q.shape
    return attention_out(q), torch.empty((b, h, n_q), dtype=torch.float32, device=q.device)


def attention_bwd(do, q, k, v, o, lse, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def layernorm_modulate_fwd(x, shift, scale, eps):
    """-> out (B, N, D), mean, rstd (B, N) fp32."""
    return like(x), row_stats(x), row_stats(x)


def layernorm_modulate_bwd(dout, x, shift, scale, mean, rstd):
    """-> dx, dshift, dscale."""
    return like(x), like(shift), like(scale)


def residual_layernorm_modulate_fwd(x, gate, y, shift, scale, eps):
    """-> x_new, out (B, N, D), mean, rstd (B, N) fp32."""
    return like(x), like(x), row_stats(x), row_stats(x)


def residual_layernorm_modulate_bwd(dout, dx_new, x_new, gate, y, scale, mean, rstd):
    """-> dx, dgate, dy, dshift, dscale (dshift in scale's dtype)."""
    return like(x_new), like(gate), like(y), like(scale), like(scale)


def gated_residual_fwd(x, gate, y):
    return like(x)


def gated_residual_bwd(dout, gate, y):
    """-> dgate, dy."""
    return like(gate), like(y)


def euler_cfg_step_(x, v_u, v_c, dt, s):
    """In place on x: no outputs."""
