"""torch.compile traces the fused ops without graph breaks (fullgraph=True), forward and backward,
and each registered operator's fake implementation agrees with the real one (opcheck)."""

from __future__ import annotations

import pytest
import torch
from kernel_asserts import assert_close

import flowtok_kernels as fk
from flowtok_kernels import reference


def dit_block_piece(x, mods, q, k, v, backend):
    """adaLN -> attention -> gated residual -> fused residual + adaLN, as a DiT block chains them."""
    gate, shift, scale = mods.chunk(3, dim=1)
    h = fk.layernorm_modulate(x, shift, scale, backend=backend)
    o = fk.attention(q, k, v, backend=backend)  # (B, H, N, D)
    o = o.transpose(1, 2).reshape(x.shape)
    x = fk.gated_residual(x, gate, o + h, backend=backend)
    return fk.residual_layernorm_modulate(x, gate, h, shift, scale, backend=backend)


def test_compiled_graph_matches_eager_forward_and_backward(device, clean_env):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    b, n, heads, d = 2, 9, 2, 16
    x = torch.randn(b, n, heads * d, generator=g).to(device).requires_grad_()
    mods = torch.randn(b, 3 * heads * d, generator=g).to(device).requires_grad_()
    q, k, v = (torch.randn(b, heads, n, d, generator=g).to(device).requires_grad_()
               for _ in range(3))
    inputs = (x, mods, q, k, v)
    compiled = torch.compile(dit_block_piece, fullgraph=True, backend="aot_eager")
    got = compiled(*inputs, "triton")
    want = list(dit_block_piece(*inputs, "torch"))
    for name, a, r in zip(("x_new", "h"), got, want):
        assert_close(a, r, name)
    upstream = [torch.randn(t.shape, generator=g).to(device) for t in want]
    got_grads = torch.autograd.grad(got, inputs, upstream)
    want_grads = torch.autograd.grad(want, inputs, upstream)
    for name, a, r in zip(("dx", "dmods", "dq", "dk", "dv"), got_grads, want_grads):
        assert_close(a, r, name)


def test_compiled_euler_step_mutates_x(device, clean_env):
    torch._dynamo.reset()
    x, v_u, v_c = (torch.randn(3, 4, 5, device=device) for _ in range(3))
    dt, s = torch.tensor(0.2, device=device), torch.tensor(2.0, device=device)
    want = reference.euler_cfg_step_(x.clone(), v_u, v_c, dt, s)
    step = torch.compile(lambda *a: fk.euler_cfg_step_(*a, backend="triton"), fullgraph=True,
                         backend="aot_eager")
    step(x, v_u, v_c, dt, s)
    assert_close(x, want, "x")


def test_auto_dispatch_compiles_without_graph_breaks(clean_env):
    torch._dynamo.reset()
    x = torch.randn(2, 5, 8)
    mods = torch.randn(2, 24)
    q = torch.randn(2, 2, 5, 4)
    compiled = torch.compile(dit_block_piece, fullgraph=True, backend="eager")
    got = compiled(x, mods, q, q, q, None)
    for name, a, r in zip(("x_new", "h"), got, dit_block_piece(x, mods, q, q, q, None)):
        assert_close(a, r, name)


def _op_cases(device):
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(device)

    x, y, mod = r(2, 5, 24), r(2, 5, 24), r(2, 24)
    stats = torch.rand(2, 5).to(device) + 0.5
    q = r(1, 2, 7, 16)
    lse = torch.rand(1, 2, 7).to(device)
    ops = torch.ops.flowtok_triton
    return {
        "attention_fwd": (ops.attention_fwd, (q, q, q, 0.25)),
        "attention_bwd": (ops.attention_bwd, (q, q, q, q, q, lse, 0.25)),
        "layernorm_modulate_fwd": (ops.layernorm_modulate_fwd, (x, mod, mod, 1e-6)),
        "layernorm_modulate_bwd": (ops.layernorm_modulate_bwd, (x, x, mod, mod, stats, stats)),
        "residual_layernorm_modulate_fwd": (ops.residual_layernorm_modulate_fwd,
                                            (x, mod, y, mod, mod, 1e-6)),
        "residual_layernorm_modulate_bwd": (ops.residual_layernorm_modulate_bwd,
                                            (x, None, x, mod, y, mod, stats, stats)),
        "gated_residual_fwd": (ops.gated_residual_fwd, (x, mod, y)),
        "gated_residual_bwd": (ops.gated_residual_bwd, (x, mod, y)),
        "euler_cfg_step_": (ops.euler_cfg_step_, (x.clone(), x, y, mod[0, :1].reshape(()),
                                                   mod[1, :1].reshape(()))),
    }


OP_NAMES = ["attention_fwd", "attention_bwd", "layernorm_modulate_fwd", "layernorm_modulate_bwd",
            "residual_layernorm_modulate_fwd", "residual_layernorm_modulate_bwd",
            "gated_residual_fwd", "gated_residual_bwd", "euler_cfg_step_"]


@pytest.mark.parametrize("name", OP_NAMES)
def test_registered_op_fake_matches_real(device, clean_env, name):
    op, args = _op_cases(device)[name]
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))
