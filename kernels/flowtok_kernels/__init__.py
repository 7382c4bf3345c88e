"""flowtok_kernels: fused ops for FlowTok's shapes, with a PyTorch reference and a dispatcher.

Each op takes ``backend=None`` (auto, or the FLOWTOK_KERNELS env var); see ``dispatch`` for
the rules. ``reference`` is the spec every backend is tested against.
"""

from flowtok_kernels.dispatch import (
    BackendUnavailable,
    attention,
    backend_report,
    csrc_status,
    euler_cfg_step_,
    gated_residual,
    layernorm_modulate,
    residual_layernorm_modulate,
)

__all__ = [
    "BackendUnavailable",
    "attention",
    "backend_report",
    "csrc_status",
    "euler_cfg_step_",
    "gated_residual",
    "layernorm_modulate",
    "residual_layernorm_modulate",
]
