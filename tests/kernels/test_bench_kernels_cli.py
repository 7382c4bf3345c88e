"""`flowtok bench kernels` runs on CPU with tiny shapes and prints valid, self-consistent JSON."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flowtok_cli.app import app

TINY = ["--device", "cpu", "--batch", "1", "--heads", "1", "--tokens", "8", "--head-dim", "16",
        "--width", "32", "--repeats", "1", "--warmup", "0"]


def test_bench_kernels_emits_json_with_a_row_per_op_mode_and_provider(clean_env):
    result = CliRunner().invoke(app, ["bench", "kernels", *TINY, "--providers",
                                      "eager,sdpa,triton", "--ops",
                                      "attention,layernorm_modulate,euler_cfg_step", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "flowtok.bench.kernels/1"
    assert data["shapes"] == {"attention": [1, 1, 8, 16], "rows": [1, 8, 32]}
    assert any("mean nothing" in note for note in data["notes"])
    rows = {(r["op"], r["mode"], r["provider"]): r for r in data["rows"]}
    # sdpa is attention-only; the Euler step has no backward
    assert set(rows) == {
        ("attention", "fwd", "eager"), ("attention", "fwd", "sdpa"),
        ("attention", "fwd", "triton"), ("attention", "fwd+bwd", "eager"),
        ("attention", "fwd+bwd", "sdpa"), ("attention", "fwd+bwd", "triton"),
        ("layernorm_modulate", "fwd", "eager"), ("layernorm_modulate", "fwd", "triton"),
        ("layernorm_modulate", "fwd+bwd", "eager"), ("layernorm_modulate", "fwd+bwd", "triton"),
        ("euler_cfg_step", "fwd", "eager"), ("euler_cfg_step", "fwd", "triton"),
    }
    assert rows[("attention", "fwd", "triton")]["status"] == "unavailable"  # never on CPU
    sdpa = rows[("attention", "fwd", "sdpa")]
    assert sdpa["status"] == "ok" and sdpa["vs_fastest_sdpa"] == 1.0
    flops = 4 * 1 * 1 * 8 * 8 * 16
    assert abs(sdpa["tflops"] - flops / (sdpa["median_ms"] * 1e-3) / 1e12) < 1e-9
    ln = rows[("layernorm_modulate", "fwd", "eager")]
    assert ln["status"] == "ok" and ln["gbps"] > 0 and ln["pct_of_ceiling"] > 0


def test_bench_kernels_rejects_unknown_ops_with_usage_error(clean_env):
    result = CliRunner().invoke(app, ["bench", "kernels", *TINY, "--ops", "softmax"])
    assert result.exit_code == 2
    assert "--ops softmax" in result.output


def test_bench_kernels_plain_row_is_the_reference_and_calls_no_flowtok_kernel(clean_env):
    """plain never enters the dispatcher (every flowtok_kernels op resolves its backend through
    dispatch._choose); fused does; vs_plain is plain's time over each row's; CUDA-graph rows are
    unavailable on CPU."""
    from flowtok.bench.kernels import KernelBenchOptions, run_kernel_bench
    from flowtok_kernels import dispatch

    calls = {"n": 0}
    choose = dispatch._choose

    def counting(*a, **k):
        calls["n"] += 1
        return choose(*a, **k)
    clean_env.setattr(dispatch, "_choose", counting)
    opts = {"device": "cpu", "batch": 1, "heads": 1, "tokens": 8, "head_dim": 16, "width": 32,
            "repeats": 1, "warmup": 0}
    ops = ("attention", "layernorm_modulate", "residual_layernorm_modulate", "gated_residual",
           "euler_cfg_step")
    plain = run_kernel_bench(KernelBenchOptions(**opts, ops=ops, providers=("plain",)))
    assert calls["n"] == 0
    assert all(r["status"] == "ok" and r["vs_plain"] == 1.0 for r in plain["rows"])
    both = run_kernel_bench(KernelBenchOptions(
        **opts, ops=("layernorm_modulate",), providers=("plain", "fused", "graph(plain)",
                                                          "graph(fused)")))
    assert calls["n"] > 0  # the counter does see the fused op's dispatch
    rows = {(r["mode"], r["provider"]): r for r in both["rows"]}
    fused = rows[("fwd", "fused")]
    assert fused["vs_plain"] == rows[("fwd", "plain")]["median_ms"] / fused["median_ms"]
    for mode in ("fwd", "fwd+bwd"):
        for p in ("graph(plain)", "graph(fused)"):
            assert rows[(mode, p)]["status"] == "unavailable" and "CUDA" in rows[(mode, p)]["reason"]


def test_bench_kernels_cpu_table_groups_unavailable_rows_and_has_a_vs_plain_column(clean_env):
    result = CliRunner().invoke(app, ["bench", "kernels", *TINY, "--ops", "layernorm_modulate"])
    assert result.exit_code == 0, result.output
    assert "vs plain" in result.output
    lines = [ln for ln in result.output.splitlines() if "CUDA graphs need a CUDA device" in ln]
    assert len(lines) == 1 and "graph(plain)" in lines[0] and "graph(fused)" in lines[0]
