"""CUDA-graph sampling (flowtok.cuda_graphs): the per-shape cache and flag checks, on CPU with the
capture mocked (a fake graph re-runs the captured function on its static buffers at replay)."""

from __future__ import annotations

import pytest
import torch

from flowtok.cuda_graphs import GraphedSampler, check_compile, graph_mode
from flowtok.errors import ConfigError


def fake_capture(log: list):
    def capture(fn):
        log.append("capture")
        out = fn()

        def replay():
            out.copy_(fn())  # what a replay does: recompute from the static inputs, in place
        return replay, out
    return capture


def test_one_capture_per_shape_and_constants_and_replays_see_new_inputs():
    log: list = []
    calls = []

    def fn(x, y, steps):
        calls.append(steps)
        return x * y + steps

    g = GraphedSampler(fn, capture=fake_capture(log))
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(g(a, b, 4), a * b + 4)
    a2, b2 = torch.randn(2, 3), torch.randn(2, 3)
    out = g(a2, b2, 4)  # same key: replayed, reading the new inputs
    torch.testing.assert_close(out, a2 * b2 + 4)
    assert log == ["capture"] and len(g) == 1 and g.replays == 2
    out.add_(100)  # the caller's copy, not the static output
    torch.testing.assert_close(g(a2, b2, 4), a2 * b2 + 4)
    g(torch.randn(1, 3), torch.randn(1, 3), 4)  # batch 1: its own graph
    g(a, b, 5)  # another constant (steps): its own graph
    g(a.double(), b.double(), 4)  # another dtype: its own graph
    assert g.captures == 4 and len(g) == 4


def test_least_recently_used_graphs_are_dropped():
    log: list = []
    g = GraphedSampler(lambda x: x + 1, capture=fake_capture(log), max_shapes=2)
    for n in (1, 2, 1, 3):  # 2 is the least recently used when 3 arrives
        g(torch.zeros(n))
    assert g.captures == 3 and len(g) == 2
    g(torch.zeros(1))
    assert g.captures == 3  # still cached
    g(torch.zeros(2))
    assert g.captures == 4  # was evicted
    with pytest.raises(ValueError):
        GraphedSampler(lambda x: x, max_shapes=0)


def test_unhashable_constants_are_refused():
    g = GraphedSampler(lambda x, c: x, capture=fake_capture([]))
    with pytest.raises(TypeError):
        g(torch.zeros(1), [1, 2])


def test_flags_are_validated():
    assert graph_mode("auto", "cpu") is False and graph_mode("off", "cpu") is False
    assert graph_mode("auto", torch.device("cuda")) is True  # judged by device type only
    assert graph_mode("off", torch.device("cuda")) is False
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        graph_mode("on", "cpu")
    with pytest.raises(ConfigError, match="choose one of"):
        graph_mode("yes", "cpu")
    assert check_compile(False, "cpu") is False and check_compile(True, "cuda:0") is True
    with pytest.raises(ConfigError, match="--compile needs a CUDA device"):
        check_compile(True, "cpu")


def test_pipeline_samples_through_the_graph_cache_when_enabled(monkeypatch, tmp_path):
    """On CPU "auto" keeps the plain path; with graphs forced on (capture mocked) the latents
    are the same, one capture per batch shape, replays after."""
    import flowtok.cuda_graphs as CG
    from flowtok.config import apply_overrides, load_preset
    from flowtok.flow.model import TextImageFlow
    from flowtok.pipeline import FlowTokPipeline
    from flowtok.tokenizer.model import Tokenizer

    cfg = apply_overrides(load_preset("tiny"), ["tokenizer.image_size=32", "tokenizer.patch_size=8"])
    torch.manual_seed(0)
    t2i = TextImageFlow(cfg, "t2i").eval()  # from_pretrained gives eval mode; dropout off
    with torch.no_grad():
        for p in t2i.parameters():
            p.copy_(torch.randn(p.shape) * 0.05)
    pipe = FlowTokPipeline(cfg, Tokenizer(cfg.tokenizer), t2i)
    feats = torch.randn(2, cfg.K, cfg.text.feature_dim)
    plain = pipe.generate_latents(feats, [1, 2], 3, 2.0)
    assert getattr(pipe, "_graphed", None) is None  # CPU, auto: no graphs
    log: list = []
    monkeypatch.setattr(CG, "graph_mode", lambda mode, device: True)
    monkeypatch.setattr(CG.GraphedSampler.__init__, "__defaults__", (fake_capture(log), 8))
    graphed = pipe.generate_latents(feats, [1, 2], 3, 2.0)
    torch.testing.assert_close(graphed, plain)
    again = pipe.generate_latents(feats, [3, 4], 3, 2.0)
    assert log == ["capture"] and pipe._graphed.replays == 2
    assert not torch.equal(again, graphed)  # new seeds reached the static noise buffer
    pipe.generate_latents(feats[:1], [1], 3, 2.0)  # batch 1: its own graph
    assert log == ["capture", "capture"]
    pipe.cuda_graph = "on"
    monkeypatch.setattr(CG, "graph_mode", graph_mode)
    with pytest.raises(ConfigError):
        pipe.generate_latents(feats, [1, 2], 3, 2.0)
