"""Dispatch by measurement (flowtok_kernels.measured): auto follows the backend `flowtok bench
kernels` last measured fastest on this device, per op and shape class, else the static rule.

Here (top level, not tests/kernels/) so it runs without importing Triton's interpreter; CUDA
choices are judged with a ``cuda`` torch.device and meta tensors, which needs no GPU."""

from __future__ import annotations

import json

import pytest
import torch

import flowtok_kernels
from flowtok_kernels import dispatch, measured


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fake cache file in a temporary cache dir; the FLOWTOK_KERNELS env var unset."""
    path = tmp_path / "kernel_dispatch.json"
    monkeypatch.setenv(measured.CACHE_ENV, str(path))
    monkeypatch.delenv("FLOWTOK_KERNELS", raising=False)
    measured.reload()
    yield path
    measured.reload()


def write(path, device, ops: dict) -> None:
    path.write_text(json.dumps({"schema": measured.SCHEMA, "devices": {
        measured.device_key(device): {"measured_at": "2026-12-03T00:00:00Z", "ops": ops}}}))
    measured.reload()


def cpu_x(grad=False):
    x = torch.randn(2, 4, 8, requires_grad=grad)
    return x, torch.zeros(2, 8), torch.zeros(2, 8)


def test_shape_classes():
    c = measured.shape_class
    assert c("attention", torch.bfloat16, keys=77) == "bf16 keys<=128 fwd"
    assert c("attention", torch.float16, keys=300, backward=True) == "fp16 keys>128 fwd+bwd"
    assert c("layernorm_modulate", torch.float32, elements=10) == "fp32 small fwd"
    assert c("gated_residual", torch.bfloat16, elements=128 * 77 * 1152) == "bf16 large fwd"


def test_cache_path_default_env_and_off(monkeypatch, tmp_path):
    monkeypatch.delenv(measured.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert measured.cache_path() == tmp_path / "flowtok" / "kernel_dispatch.json"
    monkeypatch.setenv(measured.CACHE_ENV, "off")
    assert measured.cache_path() is None


def test_cpu_auto_follows_the_measured_backend_per_shape_class(cache, monkeypatch):
    """torch measured faster than SDPA for small fp32 attention here: auto takes torch for that
    class only, and the reason says it was measured."""
    cpu = torch.device("cpu")
    write(cache, cpu, {"attention": {"fp32 keys<=128 fwd": {
        "backend": "torch", "ms": {"torch": 0.01, "sdpa": 0.02}}}})
    called = []
    monkeypatch.setattr(dispatch.reference, "attention",
                        lambda *a: called.append("torch") or torch.zeros(1))
    q = torch.randn(1, 1, 4, 8)
    flowtok_kernels.attention(q, q, q)
    assert called == ["torch"]
    name, reason = dispatch._choose("attention", None, cpu, lambda n, e: None, (),
                                    measured.shape_class("attention", torch.float32, keys=4))
    assert name == "torch" and "measured fastest" in reason and "torch 0.01 ms" in reason
    # another class (more keys, or a backward) has no measurement: the static rule (SDPA)
    other = measured.shape_class("attention", torch.float32, keys=500)
    assert dispatch._choose("attention", None, cpu, lambda n, e: None, (), other)[0] == "sdpa"
    # an explicit request still wins over any measurement
    assert dispatch._choose("attention", "sdpa", cpu, lambda n, e: None)[0] == "sdpa"


def test_no_cache_file_or_other_device_means_the_static_rule(cache):
    cuda = torch.device("cuda")
    assert not cache.exists()
    report = flowtok_kernels.backend_report("cpu")
    assert report["attention"]["backend"] == "sdpa"
    # a measurement for some other device / torch version is not this device's
    cache.write_text(json.dumps({"schema": measured.SCHEMA, "devices": {
        "cuda: Some Other GPU | torch 0.0": {"ops": {"attention": {"fp32 keys<=128 fwd": {
            "backend": "torch"}}}}}}))
    measured.reload()
    assert flowtok_kernels.backend_report("cpu")["attention"]["backend"] == "sdpa"
    assert measured.lookup("attention", cuda, "bf16 keys<=128 fwd") is None


def test_broken_cache_is_ignored(cache):
    cache.write_text("{not json")
    measured.reload()
    assert flowtok_kernels.backend_report("cpu")["attention"]["backend"] == "sdpa"


def test_norm_op_is_not_fused_where_torch_measured_faster_on_cuda(cache, monkeypatch):
    """On a CUDA device whose static rule would fuse (csrc / Triton), the cache saying torch was
    faster keeps layernorm_modulate unfused; where Triton measured faster, auto takes Triton."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake H100")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(dispatch, "_why_not", lambda name, device: None)  # every backend runs
    monkeypatch.setattr(dispatch, "_triton_ops", lambda: {"interpreted": False})
    big = "bf16 large fwd"
    dispatch._auto_memo.clear()
    assert dispatch._choose("layernorm_modulate", None, cuda, dispatch._no_limits, (),
                            big)[0] == "cuda"  # static rule: csrc first
    write(cache, cuda, {
        "layernorm_modulate": {big: {"backend": "torch", "ms": {"torch": 0.04, "triton": 0.05}}},
        "gated_residual": {big: {"backend": "triton", "ms": {"torch": 0.09, "triton": 0.05}}}})
    name, reason = dispatch._choose("layernorm_modulate", None, cuda, dispatch._no_limits, (), big)
    assert name == "torch" and "measured fastest" in reason
    assert dispatch._choose("gated_residual", None, cuda, dispatch._no_limits, (), big)[0] == "triton"
    # the report (flowtok doctor) judges the XL shape, a large bf16 forward: it shows the choice
    report = flowtok_kernels.backend_report(cuda)
    assert report["layernorm_modulate"]["backend"] == "torch"
    assert "measured" in report["layernorm_modulate"]["reason"]
    assert report["residual_layernorm_modulate"]["backend"] == "cuda"  # not measured: static


def test_measured_backend_that_cannot_run_falls_back_to_the_static_rule(cache):
    cpu = torch.device("cpu")
    write(cache, cpu, {"layernorm_modulate": {"fp32 small fwd": {"backend": "cuda"}}})
    name, reason = dispatch._choose("layernorm_modulate", None, cpu, dispatch._no_limits, (),
                                    "fp32 small fwd")
    assert name == "torch" and "cannot run this call" in reason


def test_disabled_ignores_measurements(cache):
    cpu = torch.device("cpu")
    write(cache, cpu, {"attention": {"fp32 keys<=128 fwd": {"backend": "torch"}}})
    cls = "fp32 keys<=128 fwd"
    assert dispatch._choose("attention", None, cpu, lambda n, e: None, (), cls)[0] == "torch"
    with measured.disabled():
        assert dispatch._choose("attention", None, cpu, lambda n, e: None, (), cls)[0] == "sdpa"
    assert dispatch._choose("attention", None, cpu, lambda n, e: None, (), cls)[0] == "torch"


def test_record_merges_and_bench_kernels_writes_the_fastest(cache):
    from flowtok.bench.kernels import KernelBenchOptions, run_kernel_bench

    cpu = torch.device("cpu")
    measured.record(cpu, {"gated_residual": {"fp32 small fwd": {"backend": "torch"}}}, "t0")
    r = run_kernel_bench(KernelBenchOptions(
        device="cpu", batch=1, heads=1, tokens=8, head_dim=16, width=32, repeats=1, warmup=0,
        ops=("attention", "layernorm_modulate"), providers=("sdpa", "eager", "plain"),
        modes=("fwd",)))
    assert r["dispatch"]["path"] == str(cache)
    data = json.loads(cache.read_text())
    ops = data["devices"][measured.device_key(cpu)]["ops"]
    assert ops["gated_residual"]["fp32 small fwd"]["backend"] == "torch"  # kept (merged)
    att = ops["attention"]["fp32 keys<=128 fwd"]
    assert set(att["ms"]) == {"sdpa", "torch"}  # eager is the torch backend; plain is no backend
    assert att["backend"] == min(att["ms"], key=att["ms"].get)
    assert "layernorm_modulate" not in ops  # only torch ran on CPU: one candidate decides nothing
    # auto now follows the recording
    assert dispatch._choose("attention", None, cpu, lambda n, e: None, (),
                            "fp32 keys<=128 fwd")[0] == att["backend"]


def test_save_dispatch_off_writes_nothing(cache):
    from flowtok.bench.kernels import KernelBenchOptions, run_kernel_bench

    r = run_kernel_bench(KernelBenchOptions(
        device="cpu", batch=1, heads=1, tokens=8, head_dim=16, width=32, repeats=1, warmup=0,
        ops=("attention",), providers=("sdpa", "eager"), modes=("fwd",), save_dispatch=False))
    assert r["dispatch"]["path"] is None and r["dispatch"]["choices"]
    assert not cache.exists()
