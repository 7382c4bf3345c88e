"""2D-latent baseline, for speed comparisons only: DiT/2 on an SD-VAE-sized 32x32x4 latent with
cross-attention to 77 text tokens (768-d), at the width, depth and heads of a FlowTok preset.

It is what FlowTok's 1D latent replaces: 256 image tokens that must read the prompt through
cross-attention, against FlowTok's 77 tokens that start *from* the prompt. Blocks follow
PixArt-alpha: adaLN-Zero self-attention, plain cross-attention (no norm, no gate), adaLN-Zero MLP;
the timestep conditions through adaLN-Zero, computed in one GEMM for all blocks as in
FlowTransformer, and the same flowtok_kernels ops run it, so kernel backends apply equally.
Never trained; its outputs mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import flowtok_kernels
from flowtok.config import FlowConfig
from flowtok.flow.transformer import FREQ_DIM
from flowtok.layers import Attention, Mlp, sincos_1d, timestep_embedding

LATENT_SIZE = 32  # SD-VAE latent side at 256 px
LATENT_CHANNELS = 4
PATCH = 2  # DiT/2
TEXT_TOKENS = 77  # CLIP's context length
TEXT_DIM = 768  # CLIP ViT-L/14 text width


class CrossAttention(nn.Module):
    """Queries from the image tokens (B, S, W), keys and values from the text (B, T, W)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        B, S, W = x.shape
        T, hd = ctx.shape[1], W // self.heads
        q = self.q(x).view(B, S, self.heads, hd).transpose(1, 2)  # (B, H, S, hd)
        kv = self.kv(ctx).view(B, T, 2, self.heads, hd).permute(2, 0, 3, 1, 4)  # (2, B, H, T, hd)
        o = flowtok_kernels.attention(q, kv[0], kv[1])  # (B, H, S, hd)
        return self.proj(o.transpose(1, 2).reshape(B, S, W))


class CrossDiTBlock(nn.Module):
    """x += g1 * SelfAttn(adaLN1(x)); x += CrossAttn(x, text); x += g2 * MLP(adaLN2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.attn = Attention(width, heads)
        self.cross = CrossAttention(width, heads)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor, text: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """x (B, S, W); text (B, T, W); mod (B, 6, W)."""
        s1, c1, g1, s2, c2, g2 = mod.unbind(1)
        x = flowtok_kernels.gated_residual(x, g1, self.attn(flowtok_kernels.layernorm_modulate(x, s1, c1)))
        x = x + self.cross(x, text)
        return flowtok_kernels.gated_residual(x, g2, self.mlp(flowtok_kernels.layernorm_modulate(x, s2, c2)))


class Baseline2D(nn.Module):
    """(x_t (B, 4, 32, 32), t (B,), indicator (B,), text (B, 77, 768)) -> velocity (B, 4, 32, 32).

    ``indicator`` 1 swaps the text for a learned null text (the CFG unconditional pass), so the
    sampler can batch both passes exactly as it does for FlowTransformer.
    """

    def __init__(self, cfg: FlowConfig, latent_size: int = LATENT_SIZE,
                 channels: int = LATENT_CHANNELS, patch: int = PATCH,
                 text_tokens: int = TEXT_TOKENS, text_dim: int = TEXT_DIM):
        super().__init__()
        w = cfg.width
        self.depth, self.width, self.patch, self.channels = cfg.depth, w, patch, channels
        self.grid = latent_size // patch
        self.patch_dim = channels * patch * patch
        self.x_embed = nn.Linear(self.patch_dim, w)
        self.register_buffer("pos", sincos_1d(self.num_tokens, w)[None], persistent=False)
        self.text_embed = nn.Linear(text_dim, w)
        self.null_text = nn.Parameter(torch.randn(text_tokens, text_dim) * 0.02)
        self.t_embed = nn.Sequential(nn.Linear(FREQ_DIM, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(CrossDiTBlock(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(w, (6 * cfg.depth + 2) * w))
        self.out = nn.Linear(w, self.patch_dim)

    @property
    def num_tokens(self) -> int:
        """Image tokens: (32 / 2)^2 = 256 for DiT/2 on a 32x32 latent."""
        return self.grid * self.grid

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c, g p, g p) -> (B, g g, c p p)."""
        B, c, p, g = x.shape[0], self.channels, self.patch, self.grid
        return x.reshape(B, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(B, g * g, c * p * p)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, g g, c p p) -> (B, c, g p, g p)."""
        B, c, p, g = x.shape[0], self.channels, self.patch, self.grid
        return x.reshape(B, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, c, g * p, g * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, indicator: torch.Tensor,
                text: torch.Tensor) -> torch.Tensor:
        null = indicator.bool()[:, None, None]
        text = torch.where(null, self.null_text.to(text.dtype), text)  # (B, T, D)
        ctx = self.text_embed(text)  # (B, T, W)
        c = self.t_embed(timestep_embedding(t, FREQ_DIM))  # (B, W)
        mod = self.adaln(c).view(len(c), 6 * self.depth + 2, self.width)
        h = self.x_embed(self.patchify(x)) + self.pos  # (B, S, W)
        for i, blk in enumerate(self.blocks):
            h = blk(h, ctx, mod[:, 6 * i : 6 * i + 6])
        h = flowtok_kernels.layernorm_modulate(h, mod[:, -2], mod[:, -1])
        return self.unpatchify(self.out(h))

    def with_text(self, text: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                                        torch.Tensor]:
        """A (x, t, indicator) velocity function for ``euler_sample``: the prompt (B, T, D) is
        bound, and repeated (once, up front) for the sampler's batched CFG passes (2B)."""
        doubled = torch.cat([text, text])

        def velocity(x: torch.Tensor, t: torch.Tensor, indicator: torch.Tensor) -> torch.Tensor:
            return self(x, t, indicator, text if len(x) == len(text) else doubled)

        return velocity
