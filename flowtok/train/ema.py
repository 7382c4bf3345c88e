"""Exponential moving average of a module's parameters (buffers are copied as they are)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Shadow copy updated as ema <- decay * ema + (1 - decay) * param after each step.

    The effective decay warms up as min(decay, (1 + n) / (10 + n)) so that early EMA weights are
    not dominated by the random initialisation in short runs.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - d)
        for eb, b in zip(self.module.buffers(), module.buffers()):
            eb.copy_(b)
