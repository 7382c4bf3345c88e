"""The plain-PyTorch baseline every speed-up is measured against: no flowtok kernel, no dispatcher.

What a DiT written in plain PyTorch runs: ``F.layer_norm`` then modulate as separate ops, the
residual as ``x + gate * y``, attention through ``F.scaled_dot_product_attention`` (PyTorch picks
its fastest backend: FlashAttention-2, cuDNN or memory-efficient on CUDA), the Euler/CFG update as
tensor arithmetic. Unlike ``flowtok_kernels.reference`` (the test oracle) nothing is upcast to
fp32 by hand; under autocast PyTorch's own policy applies.

``plain_ops()`` swaps these in for the ``flowtok_kernels`` ops the model calls (the model looks
them up on the module at call time), so the same model and sampler run without a single call
into the dispatcher; the originals come back on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

import flowtok_kernels


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
              backend: str | None = None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


def layernorm_modulate(x, shift, scale, eps: float = 1e-6, backend: str | None = None):
    h = F.layer_norm(x, (x.shape[-1],), eps=eps)
    return h * (1 + scale[:, None, :]) + shift[:, None, :]


def gated_residual(x, gate, y, backend: str | None = None):
    return x + gate[:, None, :] * y


def residual_layernorm_modulate(x, gate, y, shift, scale, eps: float = 1e-6,
                                backend: str | None = None):
    x_new = gated_residual(x, gate, y)
    return x_new, layernorm_modulate(x_new, shift, scale, eps)


def euler_cfg_step_(x, v_u, v_c, dt, s, backend: str | None = None):
    return x.add_(dt * (v_u + s * (v_c - v_u)))


OPS = {
    "attention": attention,
    "layernorm_modulate": layernorm_modulate,
    "residual_layernorm_modulate": residual_layernorm_modulate,
    "gated_residual": gated_residual,
    "euler_cfg_step_": euler_cfg_step_,
}


@contextlib.contextmanager
def plain_ops() -> Iterator[None]:
    """Within: every ``flowtok_kernels.<op>`` the model calls is the plain-PyTorch one above."""
    saved = {name: getattr(flowtok_kernels, name) for name in OPS}
    try:
        for name, fn in OPS.items():
            setattr(flowtok_kernels, name, fn)
        yield
    finally:
        for name, fn in saved.items():
            setattr(flowtok_kernels, name, fn)
