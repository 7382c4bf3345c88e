"""Shared test setup: deterministic torch threads, the `gpu` marker skips without CUDA."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_measured_kernel_dispatch(monkeypatch):
    """No test reads or writes the user's kernel timings (flowtok_kernels.measured): auto
    dispatch follows the static rule unless a test points FLOWTOK_KERNELS_CACHE at a file."""
    import sys

    monkeypatch.setenv("FLOWTOK_KERNELS_CACHE", "off")
    mod = sys.modules.get("flowtok_kernels.measured")
    if mod is not None:
        mod.reload()
    yield
    mod = sys.modules.get("flowtok_kernels.measured")
    if mod is not None:
        mod.reload()
