"""flowtok_kernels: fused ops for FlowTok's shapes, with a PyTorch reference and a dispatcher.

Each op takes ``backend="auto"``; see ``dispatch`` for the rules.
"""

from flowtok_kernels.dispatch import (
    attention,
    backend_report,
    euler_cfg_step_,
    gated_residual,
    layernorm_modulate,
)

__all__ = ["attention", "layernorm_modulate", "gated_residual", "euler_cfg_step_", "backend_report"]
