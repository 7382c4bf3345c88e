"""Variational text projector ("text VAE"): text features (B, K, D) -> z_text (B, K, C).

Trained jointly with the flow model; sampling z_text is FlowTok's only source of randomness at
inference (no Gaussian noise is added to the flow). Also holds the alignment head of the paper's
contrastive text-alignment loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from flowtok.config import TextConfig
from flowtok.layers import Block, sincos_1d


class TextProjector(nn.Module):
    """Transformer blocks over K text tokens -> Gaussian posterior (mean, logvar), each (B, K, C).

    By default latent token i is what text token i becomes (the paper). With
    ``cfg.proj_queries`` K learned queries join the text tokens in one sequence and only the
    queries are read out, so a word's position in the sentence does not fix the latent slot
    it lands in."""

    def __init__(self, cfg: TextConfig, length: int, channels: int):
        super().__init__()
        w = cfg.proj_width
        self.inp = nn.Linear(cfg.feature_dim, w)
        self.register_buffer("pos", sincos_1d(length, w)[None], persistent=False)
        self.queries = nn.Parameter(0.02 * torch.randn(1, length, w)) if cfg.proj_queries else None
        self.blocks = nn.ModuleList(
            Block(w, cfg.proj_heads, cfg.proj_ffn, cfg.proj_dropout) for _ in range(cfg.proj_depth)
        )
        self.norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, 2 * channels)
        self.normalize = cfg.normalize_latent
        # alignment head: per-token MLP D -> h -> h -> C (paper: 768 -> 512 -> 512 -> C)
        h = cfg.align_hidden
        self.align = nn.Sequential(
            nn.Linear(cfg.feature_dim, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, channels)
        )
        self.log_temp = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, K, D) -> mean, logvar (B, K, C)."""
        x = self.inp(feats) + self.pos
        if self.queries is not None:  # read out the queries, which come first
            x = torch.cat([self.queries.expand(len(x), -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        if self.queries is not None:
            x = x[:, : self.queries.shape[1]]
        mean, logvar = self.out(self.norm(x)).chunk(2, dim=-1)
        if self.normalize:  # unit RMS over (K, C): the flow's source keeps the image side's scale
            mean = mean * torch.rsqrt(mean.pow(2).mean(dim=(1, 2), keepdim=True) + 1e-6)
        return mean, logvar.clamp(-30.0, 20.0)

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None,
               min_std: float = 0.0) -> torch.Tensor:
        """Reparameterised z = mean + std * eps, std = sqrt(exp(logvar) + min_std^2).

        The floor matters when a caption fits many images: the flow loss alone drives the
        posterior std to ~0, and a flow from a single point can only produce one (blurred) image.
        """
        eps = torch.randn_like(mean) if noise is None else noise
        var = torch.exp(logvar)
        if min_std > 0:
            var = var + min_std**2
        return mean + var.sqrt() * eps

    def alignment_loss(self, feats: torch.Tensor, z: torch.Tensor,
                       image: torch.Tensor | None = None) -> torch.Tensor:
        """CLIP-style symmetric contrastive loss between z_text and MLP(feats) (paper), or the
        paired image latent ``image`` (B, K, C) when given; batch-index labels."""
        target = self.align(feats) if image is None else image.detach()
        tp = F.normalize(target.flatten(1), dim=-1)  # (B, K*C)
        zt = F.normalize(z.flatten(1), dim=-1)
        logits = self.log_temp.exp().clamp(max=100.0) * tp @ zt.T  # (B, B)
        labels = torch.arange(len(z), device=z.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), summed over K, C and averaged over the batch."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()


def perturb_features(feats: torch.Tensor, scale: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """feats (B, K, D) plus Gaussian noise of std ``scale`` x each token's RMS over D
    (``text.feature_noise``): a token of zeros (padding) stays zero, and the noise is relative,
    so it means the same for any encoder's feature scale."""
    rms = feats.pow(2).mean(dim=-1, keepdim=True).sqrt()
    noise = torch.randn(feats.shape, generator=generator, device=feats.device, dtype=feats.dtype)
    return feats + scale * rms * noise
