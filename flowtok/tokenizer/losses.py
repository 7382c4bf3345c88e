"""Tokenizer losses: L2 reconstruction, an edge (image-gradient) term, the posterior KL, and an
optional PatchGAN hinge loss with its discriminator.

Why an edge term: on small synthetic images most pixels are flat background, so plain L2 learns
colour blobs first and the few boundary pixels that decide a shape (circle vs square at 8 px)
late. Matching finite differences puts the gradient where the edges are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


@dataclass
class ReconLossWeights:
    """Weights of the reconstruction terms (KL and GAN weights live in TrainConfig)."""

    l2: float = 1.0
    l1: float = 0.0
    edge: float = 0.0  # L1 between horizontal/vertical finite differences (0 disables)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (B, 3, H, W): (B, 3, H, W-1) along x and (B, 3, H-1, W) along y."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, w: ReconLossWeights
                        ) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of L2, L1 and edge terms; images (B, 3, H, W) in [-1, 1]."""
    l2 = F.mse_loss(recon, target)
    total = w.l2 * l2
    logs = {"l2": float(l2.detach())}
    if w.l1 > 0:
        l1 = F.l1_loss(recon, target)
        total = total + w.l1 * l1
        logs["l1"] = float(l1.detach())
    if w.edge > 0:
        (rx, ry), (tx, ty) = image_gradients(recon), image_gradients(target)
        edge = 0.5 * (F.l1_loss(rx, tx) + F.l1_loss(ry, ty))
        total = total + w.edge * edge
        logs["edge"] = float(edge.detach())
    return total, logs


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: strided 4x4 convs -> one real/fake logit per patch (B, 1, h, w)."""

    def __init__(self, channels: int = 64, layers: int = 2):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(layers - 1):
            mods += [nn.Conv2d(c, c * 2, 4, 2, 1), nn.GroupNorm(8, c * 2), nn.LeakyReLU(0.2)]
            c *= 2
        mods += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gan_losses(disc: nn.Module, recon: torch.Tensor, real: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator loss, discriminator hinge loss), arranged so ONE backward/step trains both:
    the generator term sees the discriminator through detached weights (no gradient into D),
    the discriminator term sees detached reconstructions (no gradient into the tokenizer)."""
    frozen = {k: v.detach() for k, v in disc.named_parameters()}
    g_loss = -functional_call(disc, frozen, (recon,)).mean()
    d_real = disc(real)
    d_fake = disc(recon.detach())
    d_loss = 0.5 * (F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean())
    return g_loss, d_loss
