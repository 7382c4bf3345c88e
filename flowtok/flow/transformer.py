"""Flow transformer: DiT blocks with adaLN-Zero over K latent tokens, predicting a velocity.

No cross-attention and no text input: the text is already the starting point x0 of the flow. The
only conditioning is c = t_emb + indicator_emb (the CFG indicator: 0 = conditional, 1 = null),
plus a style embedding where the model has styles (``flow.styles``; zero at init, so a model
given styles starts as the model without). Because c holds no token-level input, the
shift/scale/gate of *every* block is computed in one batched GEMM (``adaln``) instead of one
small GEMM per block.
"""

from __future__ import annotations

import torch
from torch import nn

import flowtok_kernels
from flowtok.config import FlowConfig
from flowtok.layers import Attention, Mlp, sincos_1d, timestep_embedding

FREQ_DIM = 256  # sinusoidal timestep features (DiT)


class DiTBlock(nn.Module):
    """x += g1 * Attn(LN(x)(1 + c1) + s1); x += g2 * MLP(LN(x)(1 + c2) + s2).

    Each gated residual is fused with the LayerNorm + modulation that follows it (the next
    sub-layer's input, or the next block's / final layer's), so a block takes the already
    modulated input ``h`` and returns (x, h_next): two fused kernels per block instead of four.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.attn = Attention(width, heads)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor, h: torch.Tensor, mod: torch.Tensor,
                next_shift: torch.Tensor, next_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, K, W) residual stream; h = LN(x)(1 + c1) + s1; mod (B, 6, W) = s1, c1, g1, s2,
        c2, g2; next_shift/next_scale (B, W) modulate the input of whatever comes next."""
        _, _, g1, s2, c2, g2 = mod.unbind(1)
        x, h = flowtok_kernels.residual_layernorm_modulate(x, g1, self.attn(h), s2, c2)
        return flowtok_kernels.residual_layernorm_modulate(x, g2, self.mlp(h), next_shift, next_scale)


class FlowTransformer(nn.Module):
    """(x_t (B, K, C), t (B,), indicator (B,)[, style (B,)]) -> velocity (B, K, C)."""

    def __init__(self, cfg: FlowConfig, length: int, channels: int):
        super().__init__()
        w = cfg.width
        self.depth, self.width = cfg.depth, w
        self.x_embed = nn.Linear(channels, w)
        self.register_buffer("pos", sincos_1d(length, w)[None], persistent=False)  # (1, K, W)
        self.t_embed = nn.Sequential(nn.Linear(FREQ_DIM, w), nn.SiLU(), nn.Linear(w, w))
        self.indicator = nn.Embedding(2, w)
        self.style = nn.Embedding(len(cfg.styles), w) if cfg.styles else None
        self.blocks = nn.ModuleList(DiTBlock(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        # every block's 6 modulation vectors + the final layer's 2, in one GEMM
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(w, (6 * cfg.depth + 2) * w))
        self.out = nn.Linear(w, channels)
        self.initialize()

    def initialize(self) -> None:
        """DiT init: Xavier linears, N(0, 0.02) embeddings, zeroed adaLN and output layer."""
        def xavier(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(xavier)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        nn.init.normal_(self.indicator.weight, std=0.02)
        if self.style is not None:
            nn.init.zeros_(self.style.weight)
        nn.init.zeros_(self.adaln[1].weight)
        nn.init.zeros_(self.adaln[1].bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def modulation(self, t: torch.Tensor, indicator: torch.Tensor,
                   style: torch.Tensor | None = None) -> torch.Tensor:
        """(B,), (B,)[, (B,)] -> (B, 6*depth + 2, W): all adaLN shift/scale/gate vectors for
        one step."""
        c = self.t_embed(timestep_embedding(t, FREQ_DIM)) + self.indicator(indicator.long())
        if self.style is not None:
            if style is None:
                raise ValueError("this flow model has styles: pass a style index per sample")
            c = c + self.style(style.long())
        return self.adaln(c).view(len(c), 6 * self.depth + 2, self.width)

    def forward(self, x: torch.Tensor, t: torch.Tensor, indicator: torch.Tensor,
                style: torch.Tensor | None = None) -> torch.Tensor:
        mod = self.modulation(t, indicator, style)  # (B, 6 * depth + 2, W)
        x = self.x_embed(x) + self.pos  # (B, K, W)
        h = flowtok_kernels.layernorm_modulate(x, mod[:, 0], mod[:, 1])
        for i, blk in enumerate(self.blocks):
            nxt = 6 * (i + 1)  # the next block's shift/scale, or the final layer's (last two)
            x, h = blk(x, h, mod[:, 6 * i : nxt], mod[:, nxt], mod[:, nxt + 1])
        return self.out(h)
