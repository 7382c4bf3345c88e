"""Kernel tests run the Triton kernels compiled on a CUDA machine and interpreted on CPU.

``@triton.jit`` reads TRITON_INTERPRET when it decorates a kernel, i.e. when triton and
``flowtok_kernels.triton_ops`` are imported; pytest imports this conftest while collecting,
before this folder's test modules, and the dispatcher imports ``triton_ops`` lazily, so modules
collected earlier cannot have decorated the kernels. The interpreter also reads the variable
while kernels run, so the ``device`` fixture sets it again for each test that runs them. Outside
those two moments it is unset: it does not leak into subprocesses (the AOT compile check needs
it unset) or other tests: there ``backend="triton"`` on a CPU tensor raises BackendUnavailable
as in any process, and ``auto`` never picks Triton on CPU either way.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"


def _import_interpreted_kernels() -> str | None:
    """Import triton_ops with the interpreter on; returns why that failed, or None."""
    if "flowtok_kernels.triton_ops.attention" in sys.modules:
        from flowtok_kernels.triton_ops import _op, attention

        if not _op.is_interpreted(attention._attn_fwd_kernel):
            return "triton_ops was imported before tests/kernels/conftest.py set TRITON_INTERPRET"
        return None
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import flowtok_kernels.triton_ops.attention
        import flowtok_kernels.triton_ops.euler_cfg
        import flowtok_kernels.triton_ops.gated_residual
        import flowtok_kernels.triton_ops.layernorm_modulate  # noqa: F401
    except ImportError as e:
        return f"triton is not importable: {e}"
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous
    return None


TRITON_PROBLEM = None if HAS_CUDA else _import_interpreted_kernels()


@pytest.fixture
def device(monkeypatch) -> str:
    """Where the Triton kernels under test run: the GPU if there is one, else the interpreter."""
    if TRITON_PROBLEM:
        pytest.skip(TRITON_PROBLEM)
    if not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    return DEVICE


@pytest.fixture
def clean_env(monkeypatch):
    """No FLOWTOK_KERNELS from the caller's shell."""
    monkeypatch.delenv("FLOWTOK_KERNELS", raising=False)
    return monkeypatch
