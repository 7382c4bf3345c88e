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
