"""Triton adaLN (LayerNorm without affine + modulate) and the fused residual + adaLN against
the reference: outputs and all gradients, odd widths, several row chunks, strided modulation."""

from __future__ import annotations

import pytest
import torch
from kernel_asserts import assert_close, assert_flash_rule

import flowtok_kernels as fk
from flowtok_kernels import reference

# (B, N, D, dtype): odd width; 40 tokens = 3 backward row chunks (16, 16, 8); a wide row
# (BLOCK_D 2048); fp16 on the odd shape. The interpreter is slow: shapes stay small.
CASES = [
    (5, 7, 123, torch.float32),
    (1, 40, 72, torch.float32),
    (1, 3, 1152, torch.float32),
    (5, 7, 123, torch.float16),
]


def case_id(case) -> str:
    *shape, dtype = case
    return "x".join(map(str, shape)) + "-" + str(dtype).removeprefix("torch.")


def upcast(*ts):
    """fp32 leaf copies: low-precision kernels are judged against fp32 math on the same values."""
    return [t.detach().float().requires_grad_() for t in ts]


def tensors(b, n, d, dtype, device, seed=0):
    """x, y (B, N, D) and gate, shift, scale (B, D), the latter as chunks of one (B, 3D) tensor
    like an adaLN projection's output (row stride 3D, not D)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, d, generator=g).to(device, dtype).requires_grad_()
    y = torch.randn(b, n, d, generator=g).to(device, dtype).requires_grad_()
    mods = (0.5 * torch.randn(b, 3 * d, generator=g)).to(device, dtype).requires_grad_()
    gate, shift, scale = mods.chunk(3, dim=1)
    return x, y, mods, gate, shift, scale


def grads(outputs, upstream, inputs):
    return torch.autograd.grad(outputs, inputs, upstream)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_layernorm_modulate_matches_reference(device, clean_env, case):
    *shape, dtype = case
    x, _, mods, _, shift, scale = tensors(*shape, dtype, device)
    dout = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    out = fk.layernorm_modulate(x, shift, scale, backend="triton")
    x32, mods32 = upcast(x, mods)
    _, shift32, scale32 = mods32.chunk(3, dim=1)
    ref = reference.layernorm_modulate(x32, shift32, scale32)
    assert_close(out, ref, "out", dtype)
    for name, g, r in zip(("dx", "dmods"), grads(out, dout, (x, mods)),
                          grads(ref, dout.float(), (x32, mods32))):
        assert_close(g, r, name, dtype)


@pytest.mark.parametrize("case", [c for c in CASES if c[2] < 1000], ids=case_id)
def test_residual_layernorm_modulate_matches_reference(device, clean_env, case):
    *shape, dtype = case
    x, y, mods, gate, shift, scale = tensors(*shape, dtype, device, seed=2)
    gen = torch.Generator().manual_seed(3)
    dx_new, dh = (torch.randn(shape, generator=gen).to(device, dtype) for _ in range(2))
    x_new, h = fk.residual_layernorm_modulate(x, gate, y, shift, scale, backend="triton")
    x32, y32, mods32 = upcast(x, y, mods)
    gate32, shift32, scale32 = mods32.chunk(3, dim=1)
    ref = reference.residual_layernorm_modulate(x32, gate32, y32, shift32, scale32)
    got = [x_new, h, *grads((x_new, h), (dx_new, dh), (x, y, mods))]
    want = [*ref, *grads(ref, (dx_new.float(), dh.float()), (x32, y32, mods32))]
    names = ("x_new", "h", "dx", "dy", "dmods")
    if dtype == torch.float32:
        for name, g, r in zip(names, got, want):
            assert_close(g, r, name)
        return
    # Normalizing the rounded x_new (what the next layer reads) costs accuracy in low
    # precision: judge against plain PyTorch in the same precision, flash-attention style.
    plain = reference.residual_layernorm_modulate(x, gate, y, shift, scale)
    plain = [*plain, *grads(plain, (dx_new, dh), (x, y, mods))]
    for name, g, p, r in zip(names, got, plain, want):
        assert_flash_rule(g, p, r, name)


def test_residual_layernorm_modulate_with_only_h_used(device, clean_env):
    """x_new unused downstream: its gradient is None inside the backward, not zeros."""
    x, y, mods, gate, shift, scale = tensors(3, 9, 40, torch.float32, device, seed=4)
    _, h = fk.residual_layernorm_modulate(x, gate, y, shift, scale, backend="triton")
    _, ref_h = reference.residual_layernorm_modulate(x, gate, y, shift, scale)
    dh = torch.randn(h.shape, generator=torch.Generator().manual_seed(5)).to(device)
    for name, g, r in zip(("dx", "dy", "dmods"), grads(h, dh, (x, y, mods)),
                          grads(ref_h, dh, (x, y, mods))):
        assert_close(g, r, name)


def test_mixed_precision_modulation(device, clean_env):
    """An fp32 residual stream modulated by fp16 adaLN vectors (autocast's Linear output)."""
    x, _, _, _, _, _ = tensors(2, 5, 48, torch.float32, device, seed=6)
    shift = torch.randn(2, 48, generator=torch.Generator().manual_seed(7)).to(device).half()
    scale = torch.randn(2, 48, generator=torch.Generator().manual_seed(8)).to(device).half()
    shift.requires_grad_()
    out = fk.layernorm_modulate(x, shift, scale, backend="triton")
    assert out.dtype == torch.float32
    assert_close(out, reference.layernorm_modulate(x, shift, scale), "out")
    (dshift,) = torch.autograd.grad(out.sum(), shift)
    assert dshift.dtype == torch.float16
    assert_close(dshift, torch.full_like(dshift, 5.0), "dshift", torch.float16)


def test_wrong_modulation_shape_is_rejected(device, clean_env):
    x = torch.randn(2, 5, 8, device=device)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        fk.layernorm_modulate(x, torch.zeros(2, 7, device=device), torch.zeros(2, 8, device=device),
                              backend="triton")


def test_no_grad_paths_match_reference(device, clean_env):
    """Sampling runs under no_grad: the ops skip their autograd.Function there."""
    x, y, _, gate, shift, scale = (t.detach() for t in tensors(2, 5, 40, torch.float32, device))
    with torch.no_grad():
        out = fk.layernorm_modulate(x, shift, scale, backend="triton")
        x_new, h = fk.residual_layernorm_modulate(x, gate, y, shift, scale, backend="triton")
        res = fk.gated_residual(x, gate, y, backend="triton")
    assert_close(out, reference.layernorm_modulate(x, shift, scale), "out")
    want = reference.residual_layernorm_modulate(x, gate, y, shift, scale)
    assert_close(x_new, want[0], "x_new")
    assert_close(h, want[1], "h")
    assert_close(res, reference.gated_residual(x, gate, y), "gated")


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True], ids=["adaln", "residual_adaln"])
def test_bf16_flowtok_xl_shape_on_gpu(clean_env, fused):
    """Flash-attention's rule at FlowTok-XL's width: kernel error vs fp32 <= 2x plain bf16's."""

    def h_of(inputs, backend):
        x, *y, mods = inputs  # y only where the residual is fused (adaLN alone never reads it)
        gate, shift, scale = mods.chunk(3, dim=1)
        if fused:
            return fk.residual_layernorm_modulate(x, gate, y[0], shift, scale, backend=backend)[1]
        return fk.layernorm_modulate(x, shift, scale, backend=backend)

    x, y, mods, *_ = tensors(64, 77, 1152, torch.bfloat16, "cuda", seed=9)
    inputs = (x, y, mods) if fused else (x, mods)
    names = ("h", "dx", "dy", "dmods") if fused else ("h", "dx", "dmods")
    dh = torch.randn(x.shape, device="cuda", dtype=torch.bfloat16)
    results = {}
    for label, args, upstream in (("triton", inputs, dh), ("torch", inputs, dh),
                                  ("fp32", upcast(*inputs), dh.float())):
        h = h_of(args, "torch" if label == "fp32" else label)
        results[label] = [h, *grads(h, upstream, args)]
    for i, name in enumerate(names):
        assert_flash_rule(results["triton"][i], results["torch"][i], results["fp32"][i], name)
