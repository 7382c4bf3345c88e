"""Triton attention against the reference: outputs and gradients, odd lengths, head dims that are
not powers of two, strided inputs, and flash-attention's error rule in low precision."""

from __future__ import annotations

import pytest
import torch
from kernel_asserts import assert_close, assert_flash_rule

import flowtok_kernels as fk
from flowtok_kernels import reference

# (B, H, N_Q, N_K, D)
SHAPES = [
    (1, 2, 77, 77, 72),  # flowtok's shape: all keys in one tile, head dim split 64 + 16
    (2, 1, 5, 5, 64),  # tiny
    (1, 1, 123, 123, 80),  # odd length
    (1, 1, 33, 150, 96),  # N_Q != N_K, several key tiles
    (1, 1, 17, 17, 128),
]


def make_qkv(shape, dtype, device, seed=0):
    b, h, n_q, n_k, d = shape
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n_q, d, generator=g)
    k = torch.randn(b, h, n_k, d, generator=g)
    v = torch.randn(b, h, n_k, d, generator=g)
    return [t.to(device, dtype).requires_grad_() for t in (q, k, v)]


def run(fn, q, k, v, do):
    """Output and (dq, dk, dv) of ``fn`` for upstream gradient ``do``."""
    out = fn(q, k, v)
    grads = torch.autograd.grad(out, (q, k, v), do)
    return out, grads


def assert_triton_within_flash_rule(q, k, v, do):
    """Triton's output and gradients in low precision: each error against an fp32 reference at
    most twice that of plain PyTorch in the same precision."""
    out, grads = run(lambda *a: fk.attention(*a, backend="triton"), q, k, v, do)
    plain, plain_grads = run(plain_attention, q, k, v, do)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref, ref_grads = run(reference.attention, q32, k32, v32, do.float())
    assert_flash_rule(out, plain, ref, "out")
    for name, g, p, r in zip(("dq", "dk", "dv"), grads, plain_grads, ref_grads):
        assert_flash_rule(g, p, r, name)


def plain_attention(q, k, v):
    """Attention written plainly in the inputs' own precision (flash-attention's baseline)."""
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.softmax(s, dim=-1) @ v


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fp32_matches_reference_outputs_and_grads(device, clean_env, shape):
    q, k, v = make_qkv(shape, torch.float32, device)
    do = torch.randn(q.shape[:3] + (q.shape[3],), generator=torch.Generator().manual_seed(1))
    do = do.to(device)
    out, grads = run(lambda *a: fk.attention(*a, backend="triton"), q, k, v, do)
    ref, ref_grads = run(reference.attention, q, k, v, do)
    assert_close(out, ref, "out")
    for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert_close(g, r, name)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3]], ids=["one_tile", "key_loop"])
def test_fp16_error_at_most_twice_plain_pytorch(device, clean_env, shape):
    q, k, v = make_qkv(shape, torch.float16, device, seed=2)
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(3)).to(device, torch.float16)
    assert_triton_within_flash_rule(q, k, v, do)


def test_three_launch_backward_of_gpus_before_hopper_at_flowtoks_shape(device, clean_env,
                                                                       monkeypatch):
    """Before sm_90 the 77-token backward is delta, dK dV and dQ launches (one launch on Hopper,
    tested above): the same error rule on the tiles an A100 gets."""
    from flowtok_kernels.triton_ops import attention as tri

    monkeypatch.setattr(tri, "device_arch", lambda device=None: 80)
    assert not tri.backward_blocks(77, 77, 72, torch.float16, tri.device_arch()).one_kv_block
    q, k, v = make_qkv(SHAPES[0], torch.float16, device, seed=9)
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(10)).to(device, q.dtype)
    assert_triton_within_flash_rule(q, k, v, do)


def test_strided_views_of_one_qkv_tensor(device, clean_env):
    b, n, h, d = 1, 40, 2, 72
    qkv = torch.randn(b, n, 3, h, d, generator=torch.Generator().manual_seed(4)).to(device)
    qkv.requires_grad_()
    q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # (B, H, N, D) views, not contiguous
    assert not q.is_contiguous()
    do = torch.randn(b, h, n, d, generator=torch.Generator().manual_seed(5)).to(device)
    out = fk.attention(q, k, v, backend="triton")
    (grad,) = torch.autograd.grad(out, qkv, do)
    ref = reference.attention(q, k, v)
    (ref_grad,) = torch.autograd.grad(ref, qkv, do)
    assert_close(out, ref, "out")
    assert_close(grad, ref_grad, "dqkv")


def test_explicit_scale_and_free_head_merge(device, clean_env):
    q, k, v = make_qkv((2, 3, 9, 9, 64), torch.float32, device, seed=6)
    out = fk.attention(q, k, v, scale=0.3, backend="triton")
    assert_close(out, reference.attention(q, k, v, 0.3), "out")
    # stored (B, N, H, D): merging heads back into the width needs no copy
    assert out.transpose(1, 2).is_contiguous()


def test_bad_inputs_fail_with_a_message(device, clean_env):
    q, k, v = make_qkv((1, 1, 4, 4, 300), torch.float32, device)
    with pytest.raises(fk.BackendUnavailable, match="head dim 300"):
        fk.attention(q, k, v, backend="triton")
    q, k, v = make_qkv((1, 1, 4, 6, 64), torch.float32, device)
    with pytest.raises(ValueError, match="do not match"):
        fk.attention(q, k[..., :32], v, backend="triton")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_full_flowtok_shape_low_precision_on_gpu(clean_env, dtype):
    shape = (128, 16, 77, 77, 72)
    q, k, v = make_qkv(shape, dtype, "cuda", seed=7)
    do = torch.randn(q.shape, device="cuda", dtype=dtype)
    assert_triton_within_flash_rule(q, k, v, do)


@pytest.mark.gpu
def test_auto_uses_sdpa_for_attention_on_gpu_without_a_measurement(clean_env):
    """SDPA measured 8x faster than the eager Triton kernel on an H200 (dispatch.AUTO_ORDER_CUDA)."""
    report = fk.backend_report("cuda")
    assert report["attention"]["backend"] == "sdpa", report["attention"]


def test_no_grad_path_matches_and_records_no_graph(device, clean_env):
    q, k, v = (t.detach() for t in make_qkv((1, 2, 30, 30, 72), torch.float16, device, seed=8))
    with torch.no_grad():
        out = fk.attention(q, k, v, backend="triton")
    assert out.grad_fn is None
    assert_close(out, reference.attention(q, k, v), "out")
