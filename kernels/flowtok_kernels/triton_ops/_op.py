"""Registers Triton launchers as torch operators, and calls them the cheap way in eager mode.

Compiled code needs an operator (one graph node, a fake implementation for shapes); eager code
does not, and the Python dispatcher costs 10-30 µs per call, as much as a whole kernel at
FlowTok's 77-token shapes. So ``call`` uses the operator only while torch.compile traces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

NAMESPACE = "flowtok_triton"


def is_interpreted(kernel: Any) -> bool:
    """True when ``kernel`` was decorated under TRITON_INTERPRET=1 (runs on CPU, tests only)."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # pragma: no cover - every triton 3.x has it
        return False
    return isinstance(kernel, InterpretedFunction)


def register(
    name: str,
    launcher: Callable,
    fake: Callable,
    kernels: Iterable[Any],
    mutates_args: tuple[str, ...] = (),
):
    """Register ``launcher`` as ``torch.ops.flowtok_triton.<name>``.

    Compiled kernels go through ``triton_op`` (Inductor sees the kernels themselves); interpreted
    ones cannot be traced with fake tensors, so they become an opaque ``custom_op`` with ``fake``
    as the shape function. Either way torch.compile traces the op without a graph break.
    """
    qualname = f"{NAMESPACE}::{name}"
    if any(is_interpreted(k) for k in kernels):
        op = torch.library.custom_op(qualname, launcher, mutates_args=mutates_args)
        op.register_fake(fake)
        return op
    return torch.library.triton_op(qualname, launcher, mutates_args=mutates_args)


def call(op: Callable, launcher: Callable, *args: Any) -> Any:
    """Run ``launcher(*args)``: through ``op`` while torch.compile traces, directly otherwise."""
    if torch.compiler.is_compiling():
        return op(*args)
    return launcher(*args)


def needs_grad(*tensors: Any) -> bool:
    """Whether autograd must record this call; without it the autograd.Function is skipped
    (sampling runs under no_grad, and every microsecond of host time counts there)."""
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)
