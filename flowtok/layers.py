"""Small building blocks shared by the text projector, caption decoder and flow transformer."""

from __future__ import annotations

import math

import torch
from torch import nn

import flowtok_kernels


def sincos_1d(length: int, dim: int) -> torch.Tensor:
    """Fixed 1D sin-cos positions (length, dim), as in DiT/MAE (dim must be even)."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = pos * omega[None]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention with qkv bias; the core runs through flowtok_kernels.attention.
    (The tokenizer's RoPE variant is flowtok.tokenizer.model.RopeAttention.)"""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=True)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, W = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        o = flowtok_kernels.attention(qkv[0], qkv[1], qkv[2])  # (B, H, N, hd)
        return self.drop(self.proj(o.transpose(1, 2).reshape(B, N, W)))


class Mlp(nn.Module):
    """Two-layer MLP with tanh-GELU (DiT)."""

    def __init__(self, width: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Plain pre-LN Transformer block (projector and caption decoder; no conditioning). The
    tokenizer's RoPE + SwiGLU block is flowtok.tokenizer.model.RopeBlock."""

    def __init__(self, width: int, heads: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t in [0, 1] (scaled by 1000 as in DiT): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
