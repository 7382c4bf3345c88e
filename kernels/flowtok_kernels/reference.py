"""Plain PyTorch specification of every fused op: CPU fallback, test oracle, benchmark baseline.

Shapes use B = batch, H = heads, N = sequence length, D = head dim or width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Non-causal softmax attention. q, k, v: (B, H, N, D) -> (B, H, N, D), same dtype."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale  # (B, H, N, N)
    p = torch.softmax(s, dim=-1)
    return torch.matmul(p, v.float()).to(q.dtype)


def layernorm_modulate(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """adaLN: LayerNorm without affine, then x * (1 + scale) + shift.

    x: (B, N, D); shift, scale: (B, D) broadcast over N. Statistics in fp32, output in x.dtype.
    """
    y = F.layer_norm(x.float(), (x.shape[-1],), eps=eps)
    y = y * (1 + scale.float()[:, None, :]) + shift.float()[:, None, :]
    return y.to(x.dtype)


def gated_residual(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """adaLN-Zero residual: x + gate * y. x, y: (B, N, D); gate: (B, D)."""
    return x + gate[:, None, :] * y


def residual_layernorm_modulate(
    x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor, shift: torch.Tensor,
    scale: torch.Tensor, eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A DiT block's residual then the next adaLN: x_new = x + gate * y, h = adaLN(x_new).

    x, y: (B, N, D); gate, shift, scale: (B, D). Returns (x_new, h), both (B, N, D).
    """
    x_new = gated_residual(x, gate, y)
    return x_new, layernorm_modulate(x_new, shift, scale, eps)


def euler_cfg_step_(
    x: torch.Tensor, v_u: torch.Tensor, v_c: torch.Tensor, dt: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """In place: x <- x + dt * (v_u + s * (v_c - v_u)). dt, s: 0-d (or broadcastable) tensors.

    dt and s are tensors, not Python floats, so a captured CUDA graph can be replayed with new
    values written into them.
    """
    v = v_u.float() + s.float() * (v_c.float() - v_u.float())
    x.copy_((x.float() + dt.float() * v).to(x.dtype))
    return x
