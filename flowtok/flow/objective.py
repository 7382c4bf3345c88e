"""Flow matching between two latents of the same shape, with FlowTok's CFG indicator.

Path and target (method.md §4), with sigma = ``sigma_min``:
    x_t = (1 - (1 - sigma) t) x0 + t x1,      v* = x1 - (1 - sigma) x0,      loss = |v(x_t, t) - v*|^2
For text-to-image x0 = z_text and x1 = scaled image latent; image-to-text swaps them.
"""

from __future__ import annotations

import torch


def sample_timesteps(n: int, kind: str, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu", loc: float = 0.0,
                     scale: float = 1.0) -> torch.Tensor:
    """(n,) times in [0, 1]: ``uniform`` (paper) or ``logit_normal``
    (t = sigmoid(loc + scale * N(0, 1)); the reference code uses loc 0, scale 1)."""
    if kind == "uniform":
        return torch.rand(n, generator=generator, device=device)
    if kind == "logit_normal":
        return torch.sigmoid(loc + scale * torch.randn(n, generator=generator, device=device))
    raise ValueError(f"unknown timestep sampling {kind!r}; use uniform or logit_normal")


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, sigma: float) -> torch.Tensor:
    """x_t for t of shape (B,) and latents (B, K, C)."""
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - (1 - sigma) * t) * x0 + t * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor, sigma: float) -> torch.Tensor:
    return x1 - (1 - sigma) * x0


def cfg_indicator(n: int, null_prob: float, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pick null samples and the target permutation that mismatches them.

    Returns (indicator (n,) long: 1 = null, perm (n,) long). ``perm`` is the identity except inside
    the null subset, where targets are shifted by one (mismatched pairs); a single null sample
    keeps its own target, as the paper's shift leaves it.
    """
    null = torch.rand(n, generator=generator, device=device) < null_prob
    perm = torch.arange(n, device=device)
    idx = null.nonzero().flatten()
    if len(idx) > 1:
        perm[idx] = idx.roll(1)
    return null.long(), perm


def flow_loss(model, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, indicator: torch.Tensor,
              sigma: float) -> torch.Tensor:
    """Mean squared error between the model's velocity and the straight-path target."""
    xt = interpolate(x0, x1, t, sigma)
    v = model(xt, t, indicator)
    return (v.float() - velocity_target(x0, x1, sigma).float()).pow(2).mean()


def stratified_noise(shape: tuple[int, ...], lo: torch.Tensor, hi: torch.Tensor,
                     generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise (B, ...) whose first coordinate of row b is drawn from N(0, 1)
    restricted to the quantile bin [lo[b], hi[b]) (``train_flow.stratified_source``).

    Drawing the bin uniformly among k equal ones gives back exactly N(0, 1): the source's
    marginal is unchanged, only its coupling with the images is."""
    noise = torch.randn(shape, generator=generator, device=device)
    u = torch.rand(shape[0], generator=generator, device=device)
    q = lo.to(device) + (hi - lo).to(device) * u
    eps = torch.finfo(noise.dtype).eps
    first = torch.special.ndtri(q.clamp(eps, 1 - eps))
    return torch.cat([first.view(-1, 1), noise.reshape(shape[0], -1)[:, 1:]], 1).view(shape)
