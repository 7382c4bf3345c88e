"""Growing a trained flow transformer deeper keeps its velocity exactly, then trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flowtok.config import load_preset
from flowtok.flow.grow import grow_flow
from flowtok.flow.transformer import FlowTransformer


def _trained_like(cfg, seed: int) -> FlowTransformer:
    """A flow whose every weight is non-zero (the DiT init zeroes the adaLN and output)."""
    torch.manual_seed(seed)
    model = FlowTransformer(cfg, 16, 8)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_grown_flow_computes_the_same_velocity_and_its_new_blocks_learn():
    cfg = dataclasses.replace(load_preset("tiny").flow, depth=2, width=32, heads=2)
    old = _trained_like(cfg, 0)
    torch.manual_seed(1)
    new = FlowTransformer(dataclasses.replace(cfg, depth=4), 16, 8)
    grow_flow(old, new)
    x, t, ind = torch.randn(5, 16, 8), torch.rand(5), torch.tensor([0, 1, 0, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(new(x, t, ind), old(x, t, ind), rtol=0, atol=1e-6)
    new(x, t, ind).pow(2).mean().backward()  # the zeroed gates get gradient, so they open
    rows = new.adaln[1].weight.grad[6 * 2 * 32: 6 * 4 * 32]
    assert rows.abs().sum() > 0


def test_grow_refuses_a_shallower_or_wider_target():
    cfg = dataclasses.replace(load_preset("tiny").flow, depth=2, width=32, heads=2)
    old = FlowTransformer(cfg, 16, 8)
    with pytest.raises(ValueError, match="larger depth"):
        grow_flow(old, FlowTransformer(cfg, 16, 8))
    with pytest.raises(ValueError, match="same width"):
        grow_flow(old, FlowTransformer(dataclasses.replace(cfg, depth=3, width=64), 16, 8))
