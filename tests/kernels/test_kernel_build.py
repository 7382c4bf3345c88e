"""The csrc/ build: explicit about missing CUDA, configures to nothing without it, and (on a GPU
machine) builds a library whose ops match the reference."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch
from kernel_asserts import assert_close

import flowtok_kernels as fk
from flowtok_kernels import build, reference


@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA")
def test_build_without_cuda_torch_explains_and_exits_1(capsys):
    assert build.main([]) == 1
    err = capsys.readouterr().err
    assert "CUDA is absent" in err and "works without the extension" in err


def test_check_only_plan_passes_torch_and_the_option_to_cmake(tmp_path):
    if build.find_nvcc() is None or shutil.which("cmake") is None:
        pytest.skip("needs nvcc and cmake")
    plan = build.plan(tmp_path / "b", "90", check_only=True, jobs=1)
    configure, compile_ = build.commands(plan)
    assert "-DFLOWTOK_CSRC_CHECK_ONLY=ON" in configure
    assert f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}" in configure
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in configure
    assert compile_[:3] == ["cmake", "--build", str(tmp_path / "b")]


@pytest.mark.slow
@pytest.mark.skipif(torch.version.cuda is not None, reason="this torch has CUDA")
def test_cmake_configures_to_nothing_with_a_cpu_torch(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("needs cmake")
    cmd = ["cmake", "-S", str(build.SOURCE_ROOT), "-B", str(tmp_path),
           f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if build.find_nvcc():
        cmd.append(f"-DCMAKE_CUDA_COMPILER={build.find_nvcc()}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nothing to build" in proc.stderr
    assert not list(tmp_path.glob("*.so"))


@pytest.mark.gpu
@pytest.mark.slow
def test_built_extension_matches_reference_on_gpu(clean_env):
    assert build.main([]) == 0
    assert fk.csrc_status()["built"], fk.csrc_status()
    g = torch.Generator(device="cuda").manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        def r(*shape, dtype=dtype):
            return torch.randn(*shape, generator=g, device="cuda", dtype=dtype)

        q, k, v = r(2, 3, 77, 72), r(2, 3, 77, 72), r(2, 3, 77, 72)
        assert_close(fk.attention(q, k, v, backend="cuda"), reference.attention(q, k, v), "attn")
        x, y, mod = r(4, 77, 1152), r(4, 77, 1152), r(4, 1152)
        assert_close(fk.layernorm_modulate(x, mod, mod, backend="cuda"),
                     reference.layernorm_modulate(x, mod, mod), "adaln")
        got = fk.residual_layernorm_modulate(x, mod, y, mod, mod, backend="cuda")
        want = reference.residual_layernorm_modulate(x.float(), mod.float(), y.float(),
                                                     mod.float(), mod.float())
        assert_close(got[1], want[1].to(dtype), "residual adaln")
        assert_close(fk.gated_residual(x, mod, y, backend="cuda"),
                     reference.gated_residual(x.float(), mod.float(), y.float()), "gated", dtype)
        dt, s = torch.tensor(0.1, device="cuda"), torch.tensor(3.0, device="cuda")
        want = reference.euler_cfg_step_(x.clone(), y, x, dt, s)
        assert_close(fk.euler_cfg_step_(x, y, x, dt, s, backend="cuda"), want, "euler")


@pytest.mark.gpu
@pytest.mark.slow
def test_built_extension_gradients_match_reference_on_gpu(clean_env):
    if not fk.csrc_status()["built"]:
        assert build.main([]) == 0
    g = torch.Generator(device="cuda").manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g, device="cuda").requires_grad_()

    q, k, v = r(2, 3, 77, 72), r(2, 3, 77, 72), r(2, 3, 77, 72)
    x, y, mods = r(3, 77, 256), r(3, 77, 256), r(3, 768)
    gate, shift, scale = mods.chunk(3, dim=1)
    cases = {
        "attention": (lambda b: fk.attention(q, k, v, backend=b), (q, k, v)),
        "adaln": (lambda b: fk.layernorm_modulate(x, shift, scale, backend=b), (x, mods)),
        "residual_adaln": (lambda b: fk.residual_layernorm_modulate(
            x, gate, y, shift, scale, backend=b), (x, y, mods)),
        "gated": (lambda b: fk.gated_residual(x, gate, y, backend=b), (x, y, mods)),
    }
    for name, (fn, inputs) in cases.items():
        outs = {b: fn(b) for b in ("cuda", "torch")}
        outs = {b: o if isinstance(o, tuple) else (o,) for b, o in outs.items()}
        ups = [torch.randn_like(o) for o in outs["torch"]]
        got = torch.autograd.grad(outs["cuda"], inputs, ups)
        want = torch.autograd.grad(outs["torch"], inputs, ups)
        for i, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, f"{name} grad {i}")
