"""Backend selection: per-call argument > FLOWTOK_KERNELS > auto; explicit requests that cannot
run raise BackendUnavailable; auto on CPU is SDPA / the reference, never the Triton interpreter."""

from __future__ import annotations

import pytest
import torch

import flowtok_kernels as fk
from flowtok_kernels import dispatch, reference

OPS = ("attention", "layernorm_modulate", "residual_layernorm_modulate", "gated_residual",
       "euler_cfg_step")


def call(op: str, backend=None):
    """Run ``op`` once on tiny CPU inputs."""
    x = torch.randn(2, 3, 8)
    mod = torch.randn(2, 8)
    if op == "attention":
        q = torch.randn(1, 2, 5, 8)
        return fk.attention(q, q, q, backend=backend)
    if op == "layernorm_modulate":
        return fk.layernorm_modulate(x, mod, mod, backend=backend)
    if op == "residual_layernorm_modulate":
        return fk.residual_layernorm_modulate(x, mod, x, mod, mod, backend=backend)
    if op == "gated_residual":
        return fk.gated_residual(x, mod, x, backend=backend)
    one = torch.tensor(1.0)
    return fk.euler_cfg_step_(x, x.clone(), x.clone(), one, one, backend=backend)


@pytest.fixture
def calls(monkeypatch):
    """Records which implementation ran: 'sdpa', 'torch' (reference) or 'triton'."""
    seen: list[str] = []

    def spy(label, fn):
        def wrapped(*args, **kwargs):
            seen.append(label)
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(dispatch.F, "scaled_dot_product_attention",
                        spy("sdpa", dispatch.F.scaled_dot_product_attention))
    for name in ("attention", "layernorm_modulate", "residual_layernorm_modulate",
                 "gated_residual", "euler_cfg_step_"):
        monkeypatch.setattr(reference, name, spy("torch", getattr(reference, name)))
    return seen


def test_auto_on_cpu_is_sdpa_for_attention_and_the_reference_elsewhere(clean_env, calls):
    first = []
    for op in OPS:
        calls.clear()
        call(op)
        first.append(calls[0])  # the reference's fused op calls its parts: count the outer call
    assert first == ["sdpa", "torch", "torch", "torch", "torch"]
    report = fk.backend_report("cpu")
    assert set(report) == set(OPS)
    assert report["attention"]["backend"] == "sdpa"
    assert all(report[op]["backend"] == "torch" for op in OPS[1:])
    assert all(r["reason"] for r in report.values())


def test_auto_never_picks_the_interpreter_even_on_cuda(clean_env):
    """In this process the kernels are interpreted (tests/kernels/conftest.py)."""
    if torch.cuda.is_available():
        pytest.skip("kernels are compiled on a CUDA machine")
    report = fk.backend_report("cuda")
    assert report["attention"] == {"backend": "sdpa", "reason": report["attention"]["reason"]}
    assert report["layernorm_modulate"]["backend"] == "torch"
    assert "TRITON_INTERPRET" in report["layernorm_modulate"]["reason"]


def test_env_var_applies_and_per_call_argument_wins(clean_env, calls):
    clean_env.setenv("FLOWTOK_KERNELS", "torch")
    call("attention")
    call("attention", backend="sdpa")
    call("attention", backend="auto")
    assert calls == ["torch", "sdpa", "sdpa"]
    assert fk.backend_report("cpu")["attention"] == {"backend": "torch",
                                                     "reason": "FLOWTOK_KERNELS=torch"}


def test_env_var_naming_an_attention_only_backend_leaves_other_ops_on_auto(clean_env, calls):
    clean_env.setenv("FLOWTOK_KERNELS", "sdpa")
    call("layernorm_modulate")
    call("attention")
    assert calls == ["torch", "sdpa"]


@pytest.mark.parametrize("op", OPS)
def test_explicit_unavailable_backend_raises_with_the_reason(clean_env, op):
    with pytest.raises(fk.BackendUnavailable, match="make build-ext|CUDA tensors only"):
        call(op, backend="cuda")
    clean_env.setenv("FLOWTOK_KERNELS", "cuda")  # the env var is an explicit request too
    with pytest.raises(fk.BackendUnavailable, match="make build-ext|CUDA tensors only"):
        call(op)


def test_backends_an_op_does_not_have_raise(clean_env):
    with pytest.raises(fk.BackendUnavailable, match="no 'sdpa' backend"):
        call("layernorm_modulate", backend="sdpa")
    if fk.dispatch.importlib.util.find_spec("xformers") is None:
        with pytest.raises(fk.BackendUnavailable, match="xformers is not installed"):
            call("attention", backend="xformers")


def test_triton_on_cpu_without_the_interpreter_raises(clean_env, monkeypatch):
    real = dispatch._triton_ops()
    if isinstance(real, str):
        pytest.skip(real)
    monkeypatch.setitem(dispatch._module_cache, "triton", {**real, "interpreted": False})
    with pytest.raises(fk.BackendUnavailable, match="need a CUDA tensor"):
        call("gated_residual", backend="triton")


def test_interpreted_kernels_do_not_run_once_the_interpreter_is_off(clean_env):
    """What other tests in this process see after the kernel tests' conftest restored the env."""
    real = dispatch._triton_ops()
    if isinstance(real, str) or not real["interpreted"]:
        pytest.skip("kernels are not interpreted here")
    clean_env.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(fk.BackendUnavailable, match="need a CUDA tensor"):
        call("layernorm_modulate", backend="triton")


def test_unknown_backend_names_are_errors(clean_env):
    with pytest.raises(ValueError, match="unknown kernel backend 'fast'"):
        call("attention", backend="fast")
    clean_env.setenv("FLOWTOK_KERNELS", "fast")
    with pytest.raises(ValueError, match="FLOWTOK_KERNELS='fast'"):
        call("attention")


def test_env_var_can_select_triton_explicitly(device, clean_env):
    clean_env.setenv("FLOWTOK_KERNELS", "triton")
    x = torch.randn(2, 3, 8, device=device)
    gate = torch.randn(2, 8, device=device)
    out = fk.gated_residual(x, gate, x)
    assert torch.allclose(out, reference.gated_residual(x, gate, x), atol=1e-6)


def test_csrc_status_says_whether_the_extension_loaded(clean_env):
    status = fk.csrc_status()
    assert set(status) == {"built", "reason"}
    built = fk.dispatch._cuda_ext().library_path().exists()
    if not built:
        assert status["built"] is False
        assert "make build-ext" in status["reason"]
    else:
        assert status["built"] is torch.cuda.is_available() or "failed to load" in status["reason"]
