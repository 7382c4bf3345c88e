"""Triton Euler + CFG step against the reference: in place, one or per-sample dt and s, and
values read from the tensors at run time (what CUDA graph replay relies on)."""

from __future__ import annotations

import pytest
import torch
from kernel_asserts import assert_close

import flowtok_kernels as fk
from flowtok_kernels import reference


def velocities(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g).to(device, dtype) for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("per_sample", [False, True], ids=["scalar", "per_sample"])
def test_step_matches_reference_in_place(device, clean_env, dtype, per_sample):
    x, v_u, v_c = velocities((5, 123, 3), dtype, device)  # 1845 elements: a partial block
    shape = (5, 1, 1) if per_sample else ()
    g = torch.Generator().manual_seed(1)
    dt = torch.rand(shape, generator=g).to(device)
    s = (1 + 4 * torch.rand(shape, generator=g)).to(device)
    want = reference.euler_cfg_step_(x.clone(), v_u, v_c, dt, s)
    ptr = x.data_ptr()
    out = fk.euler_cfg_step_(x, v_u, v_c, dt, s, backend="triton")
    assert out is x and x.data_ptr() == ptr
    assert_close(x, want, "x", dtype)


def test_new_values_written_into_dt_and_s_are_used(device, clean_env):
    """A captured graph replays the same launch: the kernel must read dt and s from memory."""
    x, v_u, v_c = velocities((2, 8, 4), torch.float32, device, seed=2)
    dt = torch.tensor(0.5, device=device)
    s = torch.tensor(1.0, device=device)
    start = x.clone()
    fk.euler_cfg_step_(x, v_u, v_c, dt, s, backend="triton")
    dt.fill_(-0.25)
    s.fill_(3.0)
    fk.euler_cfg_step_(x, v_u, v_c, dt, s, backend="triton")
    want = start + 0.5 * v_c + (-0.25) * (v_u + 3.0 * (v_c - v_u))
    assert_close(x, want, "x")


def test_non_contiguous_x_and_bad_dt_are_rejected(device, clean_env):
    x, v_u, v_c = velocities((4, 6), torch.float32, device)
    one = torch.tensor(1.0, device=device)
    with pytest.raises(ValueError, match="contiguous"):
        fk.euler_cfg_step_(x.t(), v_u.t(), v_c.t(), one, one, backend="triton")
    with pytest.raises(ValueError, match="one value or one per sample"):
        fk.euler_cfg_step_(x, v_u, v_c, torch.ones(4, device=device), one, backend="triton")


@pytest.mark.gpu
def test_captured_graph_replays_with_new_dt_and_s(clean_env):
    x, v_u, v_c = velocities((64, 77, 16), torch.bfloat16, "cuda", seed=3)
    dt = torch.tensor(0.1, device="cuda")
    s = torch.tensor(2.0, device="cuda")
    fk.euler_cfg_step_(x.clone(), v_u, v_c, dt, s, backend="triton")  # compile before capture
    start = x.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fk.euler_cfg_step_(x, v_u, v_c, dt, s, backend="triton")
    x.copy_(start)
    dt.fill_(0.3)
    s.fill_(5.0)
    graph.replay()
    want = reference.euler_cfg_step_(start.clone(), v_u, v_c, dt, s)
    assert_close(x, want, "x")
