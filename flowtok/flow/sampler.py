"""Euler sampler with classifier-free guidance through the CFG indicator.

v = v_u + s (v_c - v_u), both passes batched into one forward (indicator 0 = conditional, 1 = null).
Times t_i = i / N for i = 0 … N, so N Euler steps of dt = 1 / N integrate from x0 (t = 0) to t = 1.
Every tensor inside the loop is made by a kernel (``torch.full``), never copied from the host, so
the whole loop can be captured in one CUDA graph and replayed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import flowtok_kernels

VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def euler_sample(model: VelocityFn, x0: torch.Tensor, steps: int, guidance: float = 1.0,
                 progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = 0 to 1. x0: (B, K, C) -> x1 (B, K, C), float32.

    ``guidance`` 1.0 runs only the conditional pass; above 1 both passes run in one batch.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    B = x0.shape[0]
    x = x0.float().clone()
    dev = x.device
    dt = torch.full((), 1.0 / steps, device=dev)
    s = torch.full((), float(guidance), device=dev)
    cond = torch.zeros(B, dtype=torch.long, device=dev)
    both = torch.cat([cond, torch.ones_like(cond)])
    for i in range(steps):
        if guidance == 1.0:
            v = model(x, torch.full((B,), i / steps, device=dev), cond).float()
            x.add_(dt * v)
        else:
            v = model(torch.cat([x, x]), torch.full((2 * B,), i / steps, device=dev), both).float()
            v_c, v_u = v[:B], v[B:]
            flowtok_kernels.euler_cfg_step_(x, v_u, v_c, dt, s)
        if progress is not None:
            progress(i)
    return x
