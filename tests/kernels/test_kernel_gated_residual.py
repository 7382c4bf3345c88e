"""Triton gated residual x + gate * y against the reference: outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from kernel_asserts import assert_close

import flowtok_kernels as fk
from flowtok_kernels import reference

CASES = [(5, 7, 123, torch.float32), (1, 40, 72, torch.float32), (5, 7, 123, torch.float16)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}x{c[2]}-{c[3]}")
def test_gated_residual_matches_reference(device, clean_env, case):
    *shape, dtype = case
    g = torch.Generator().manual_seed(0)
    x, y, dout = (torch.randn(shape, generator=g).to(device, dtype) for _ in range(3))
    gate = torch.randn(shape[0], 2 * shape[2], generator=g).to(device, dtype)[:, ::2]  # strided
    x, y, gate = (t.requires_grad_() for t in (x, y, gate.detach()))
    out = fk.gated_residual(x, gate, y, backend="triton")
    x32, gate32, y32 = (t.detach().float().requires_grad_() for t in (x, gate, y))
    ref = reference.gated_residual(x32, gate32, y32)
    assert out.dtype == dtype
    assert_close(out, ref, "out", dtype)
    got = torch.autograd.grad(out, (x, gate, y), dout)
    want = torch.autograd.grad(ref, (x32, gate32, y32), dout.float())
    for name, a, b in zip(("dx", "dgate", "dy"), got, want):
        assert_close(a, b, name, dtype)


def test_shape_mismatch_is_rejected(device, clean_env):
    x = torch.zeros(2, 3, 4, device=device)
    with pytest.raises(ValueError, match="gate"):
        fk.gated_residual(x, torch.zeros(3, 4, device=device), x, backend="triton")
