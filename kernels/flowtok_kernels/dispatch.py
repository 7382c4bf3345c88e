"""Backend selection for each fused op. Per-call argument > FLOWTOK_KERNELS env var > auto.

Rule: an explicitly requested backend that cannot run raises; ``auto`` falls back quietly to the
PyTorch path (SDPA for attention) and ``backend_report`` says why.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from flowtok_kernels import reference

BACKENDS = ("auto", "triton", "cuda", "xformers", "sdpa", "torch")


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here."""


def _requested(backend: str | None) -> str:
    name = backend or os.environ.get("FLOWTOK_KERNELS", "auto") or "auto"
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def attention(q, k, v, scale=None, backend: str | None = None):
    """(B, H, N, D) x3 -> (B, H, N, D). auto: SDPA (fused on every device)."""
    name = _requested(backend)
    if name == "torch":
        return reference.attention(q, k, v, scale)
    if name in ("auto", "sdpa"):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    raise BackendUnavailable(f"attention backend {name!r} is not available in this build")


def layernorm_modulate(x, shift, scale, eps: float = 1e-6, backend: str | None = None):
    name = _requested(backend)
    if name in ("auto", "torch"):
        return reference.layernorm_modulate(x, shift, scale, eps)
    raise BackendUnavailable(f"layernorm_modulate backend {name!r} is not available in this build")


def gated_residual(x, gate, y, backend: str | None = None):
    name = _requested(backend)
    if name in ("auto", "torch"):
        return reference.gated_residual(x, gate, y)
    raise BackendUnavailable(f"gated_residual backend {name!r} is not available in this build")


def euler_cfg_step_(x, v_u, v_c, dt, s, backend: str | None = None):
    name = _requested(backend)
    if name in ("auto", "torch"):
        return reference.euler_cfg_step_(x, v_u, v_c, dt, s)
    raise BackendUnavailable(f"euler_cfg_step backend {name!r} is not available in this build")


def backend_report(device: str | torch.device | None = None) -> dict[str, dict[str, str]]:
    """Which backend each op would use on ``device`` under ``auto``, and why."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    why = "no CUDA device" if dev.type != "cuda" else "fused kernels not built yet"
    return {
        "attention": {"backend": "sdpa", "reason": why},
        "layernorm_modulate": {"backend": "torch", "reason": why},
        "gated_residual": {"backend": "torch", "reason": why},
        "euler_cfg_step": {"backend": "torch", "reason": why},
    }
