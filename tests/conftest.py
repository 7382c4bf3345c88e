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


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny t2i + i2t model folder with random (non-zero) weights (the reliability suites)."""
    import torch

    from flowtok.config import load_preset
    from flowtok.flow.model import TextImageFlow
    from flowtok.pipeline import FlowTokPipeline
    from flowtok.text.encoders import ByteTokenizer
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset("tiny")
    torch.manual_seed(0)
    t2i = TextImageFlow(cfg, "t2i")
    i2t = TextImageFlow(cfg, "i2t", vocab_ids=torch.arange(ByteTokenizer(cfg.K).vocab_size))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in [*t2i.parameters(), *i2t.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    path = tmp_path_factory.mktemp("models") / "tiny"
    FlowTokPipeline(cfg, Tokenizer(cfg.tokenizer), t2i, i2t).save_pretrained(path)
    return path
