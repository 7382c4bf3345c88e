"""flowtok bench: FLOP accounting against hand sums and torch's FLOP counter, the 2D-latent
baseline's shapes, and `bench sample` / `bench train` on CPU with the tiny preset."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from flowtok.bench import flops as F
from flowtok.bench.baseline_2d import Baseline2D
from flowtok.config import load_preset
from flowtok_cli.app import app

runner = CliRunner()
FAST = ["--preset", "tiny", "--batch", "2", "--steps", "2", "--repeats", "1", "--warmup", "0",
        "--device", "cpu"]


@pytest.fixture(autouse=True)
def one_thread():
    """Two busy cores: one thread is faster for tiny ops and leaves the other core alone."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def counted(fn) -> int:
    """FLOPs torch's own counter sees (matmuls, SDPA as its two products, convolutions)."""
    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad():
        fn()
    return fc.get_total_flops()


# ----------------------------------------------------------------------------- hand calculations


def test_tiny_flow_forward_flops_by_hand():
    # tiny: K=8 tokens, C=4, width 64, depth 2, MLP hidden 4 * 64 = 256; 2 FLOPs per multiply-add
    qkv = 2 * 8 * 64 * (3 * 64)  # 196_608
    qk = pv = 2 * 8 * 8 * 64  # 8_192 each (all 4 heads of 16 together)
    proj = 2 * 8 * 64 * 64  # 65_536
    mlp = 2 * 8 * 64 * 256 + 2 * 8 * 256 * 64  # 524_288
    block = qkv + qk + pv + proj + mlp  # 802_816
    embed = out = 2 * 8 * 4 * 64  # 4_096 each
    t_embed = 2 * 256 * 64 + 2 * 64 * 64  # 40_960 (one vector per sample)
    adaln = 2 * 64 * (6 * 2 + 2) * 64  # 114_688: every block's 6 vectors + final 2, per sample
    total = 2 * block + embed + out + t_embed + adaln
    assert total == 1_769_472
    got = F.flow_forward_flops(load_preset("tiny").flow, 8, 4)
    assert got["per_block"]["total"] == block
    assert got["adaln"] == adaln and got["total"] == total


def test_xl_flow_forward_flops_by_hand():
    # XL: K=77, C=16, width 1152, depth 28, MLP hidden 4608
    qkv = 2 * 77 * 1152 * 3456  # 613_122_048
    qk = pv = 2 * 77 * 77 * 1152  # 13_660_416 each
    proj = 2 * 77 * 1152 * 1152  # 204_374_016
    mlp = 2 * (2 * 77 * 1152 * 4608)  # 1_634_992_128
    block = qkv + qk + pv + proj + mlp  # 2_479_809_024; attention products are 1.1% of it
    embed = out = 2 * 77 * 16 * 1152  # 2_838_528 each
    t_embed = 2 * 256 * 1152 + 2 * 1152 * 1152  # 3_244_032
    adaln = 2 * 1152 * (6 * 28 + 2) * 1152  # 451_215_360 per sample, not per token
    total = 28 * block + embed + out + t_embed + adaln
    assert total == 69_894_789_120
    got = F.flow_forward_flops(load_preset("XL").flow, 77, 16)
    assert got["per_block"]["total"] == block and got["total"] == total


def test_xl_end_to_end_flops_by_stage():
    cfg = load_preset("XL")
    got = F.sample_flops(cfg, steps=20, guidance=2.0)
    # CLIP-L/14 text tower: 12 layers, width 768, MLP 3072, 77 tokens
    clip_layer = 2 * 77 * 768 * 3 * 768 + 4 * 77 * 77 * 768 + 2 * 77 * 768 * 768 \
        + 2 * 2 * 77 * 768 * 3072
    # tokenizer decoder: ViT-L (24 x width 1024, SwiGLU hidden int(8 * 1024 / 3) = 2730) over
    # 256 mask tokens + 77 latents + 77 text tokens = 410
    s, w, h = 410, 1024, 2730
    dec_block = 2 * s * w * 3 * w + 4 * s * s * w + 2 * s * w * w + 2 * s * w * 2 * h + 2 * s * h * w
    decoder = (24 * dec_block + 2 * 77 * 16 * w + 2 * 77 * 768 * w + 2 * 256 * w * 768
               + 2 * 2 * 9 * 3 * 32 * 256 * 256)  # LightRefine: 3x3 convs 3 -> 32 -> 3
    assert got["text_encoder"] == 12 * clip_layer
    assert got["decoder"] == decoder
    assert got["flow_passes"] == 40  # 20 steps x (conditional + null) passes
    assert got["flow"] == 40 * 69_894_789_120
    assert got["total"] == got["text_encoder"] + got["projector"] + got["flow"] + got["decoder"]
    assert 3.0e12 < got["total"] < 3.2e12  # 3.08 TFLOP/image (the design doc's 4.4: see RESULTS)
    assert F.sample_flops(cfg, steps=20, guidance=1.0)["flow_passes"] == 20


@pytest.mark.parametrize("preset", ["tiny", "XL"])
def test_flop_formulas_match_torch_flop_counter(preset):
    """Build each module on the meta device (no memory, no init cost) and let torch count."""
    from flowtok.flow.model import TextImageFlow
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset(preset)
    K, C = cfg.K, cfg.C
    with torch.device("meta"):
        model, tok = TextImageFlow(cfg), Tokenizer(cfg.tokenizer)
        x, t, ind = torch.empty(1, K, C), torch.zeros(1), torch.zeros(1, dtype=torch.long)
        feats = torch.empty(1, K, cfg.text.feature_dim)
        text = torch.empty(1, K, cfg.tokenizer.text_dim) if cfg.tokenizer.text_guidance else None
        assert counted(lambda: model.flow(x, t, ind)) == F.flow_forward_flops(cfg.flow, K, C)["total"]
        assert counted(lambda: model.projector(feats)) == F.projector_flops(cfg.text, K, C)
        assert counted(lambda: tok.decoder(x, text)) == F.decoder_flops(cfg.tokenizer)["total"]


# ----------------------------------------------------------------------------- 2D baseline


def test_baseline_2d_has_256_tokens_and_keeps_the_latent_shape():
    cfg = load_preset("tiny")
    torch.manual_seed(0)
    base = Baseline2D(cfg.flow).eval()
    assert base.num_tokens == 256  # (32 / 2)^2 patches of 2 x 2 x 4 values
    x = torch.randn(2, 4, 32, 32)
    assert torch.equal(base.unpatchify(base.patchify(x)), x)
    assert base.patchify(x).shape == (2, 256, 16)
    t, text = torch.rand(2), torch.randn(2, 77, 768)
    with torch.no_grad():
        cond = base(x, t, torch.zeros(2, dtype=torch.long), text)
        assert cond.shape == x.shape
        # the null pass ignores the prompt; the conditional pass reads it
        null_a = base(x, t, torch.ones(2, dtype=torch.long), text)
        null_b = base(x, t, torch.ones(2, dtype=torch.long), torch.randn(2, 77, 768))
        cond_b = base(x, t, torch.zeros(2, dtype=torch.long), torch.randn(2, 77, 768))
    torch.testing.assert_close(null_a, null_b)
    assert not torch.allclose(cond, cond_b)


def test_baseline_2d_flops_match_torch_flop_counter():
    cfg = load_preset("XL")
    with torch.device("meta"):
        base = Baseline2D(cfg.flow)
        x, t = torch.empty(1, 4, 32, 32), torch.zeros(1)
        n = counted(lambda: base(x, t, torch.zeros(1, dtype=torch.long), torch.empty(1, 77, 768)))
    want = F.baseline_2d_forward_flops(cfg.flow, 256, 16, 77, 768)
    assert n == want["total"]
    # the 2D model does > 4x the flow FLOPs per pass at the same width and depth
    assert want["total"] / F.flow_forward_flops(cfg.flow, 77, 16)["total"] > 4


# ----------------------------------------------------------------------------- the commands


def run_json(args: list[str]) -> dict:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_bench_sample_json_schema_on_cpu():
    r = run_json(["bench", "sample", *FAST, "--json"])
    assert r["schema"] == "flowtok.bench.sample/1"
    assert (r["preset"], r["batch"], r["steps"], r["cfg_passes"], r["dtype"]) == ("tiny", 2, 2, 2, "fp32")
    assert "random weights" in r["weights"]
    assert any("absolute numbers mean nothing" in n for n in r["notes"])
    assert r["device"]["type"] == "cpu" and r["peak_memory_bytes"] is None
    assert r["text_encoder"]["kind"] == "tiny"
    assert r["timing"]["statistic"] == "median" and r["timing"]["repeats"] == 1
    assert r["ceiling"]["dtype"] == "float32" and r["ceiling"]["tflops"] > 0
    want = F.sample_flops(load_preset("tiny"), 2, 2.0, text_encoder="tiny")
    assert r["flops_per_image"] == want
    stage_flops = {"text": want["text_encoder"], "flow": want["projector"] + want["flow"],
                   "decode": want["decoder"], "end_to_end": want["total"]}
    for name, fl in stage_flops.items():
        s = r["stages"][name]
        assert s["flops_per_image"] == fl
        assert s["ms_per_image"] == pytest.approx(s["ms_per_batch"] / 2)
        assert s["images_per_s"] == pytest.approx(2e3 / s["ms_per_batch"])
        assert s["tflops_per_s"] == pytest.approx(fl * s["images_per_s"] / 1e12)
        assert s["pct_of_ceiling"] == pytest.approx(100 * s["tflops_per_s"] / r["ceiling"]["tflops"])
    assert r["batch1_latency_ms"] > 0
    paper = {p["model"]: p for p in r["paper"]}
    assert paper["FlowTok-XL"]["images_per_s"] == 22.7 and "other hardware" in paper["FlowTok-XL"]["label"]
    assert r["compare"] is None


def test_bench_sample_compare_runs_each_backend_on_cpu(monkeypatch):
    from flowtok.bench.sample import FUSED_ROW, GRAPH_ROWS, KERNEL_BACKENDS, PLAIN_ROW

    monkeypatch.setenv("FLOWTOK_KERNELS", "torch")
    r = run_json(["bench", "sample", *FAST, "--compare", "--json"])
    assert os.environ["FLOWTOK_KERNELS"] == "torch" and r["kernels_env"] == "torch"  # restored
    rows = {row["name"]: row for row in r["compare"]["rows"]}
    assert r["compare"]["rows"][0]["name"] == PLAIN_ROW == r["compare"]["reference"]
    plain, fused = rows[PLAIN_ROW], rows[FUSED_ROW]
    assert plain["status"] == "ok" and plain["ratio_vs_plain"] == 1.0  # the reference
    assert fused["status"] == "ok"
    assert fused["ratio_vs_plain"] == pytest.approx(plain["ms_per_batch"] / fused["ms_per_batch"])
    for name in KERNEL_BACKENDS:
        row = rows[f"FLOWTOK_KERNELS={name}"]
        # skipped: only Triton on CPU, when this process imported its interpreter (kernel tests)
        assert row["status"] in ("ok", "unavailable", "skipped"), row
        assert row["status"] != "skipped" or name == "triton"
        if row["status"] == "ok":
            assert row["ratio_vs_plain"] == pytest.approx(plain["ms_per_batch"] / row["ms_per_batch"])
        else:
            assert row["reason"] and row["ratio_vs_plain"] is None
    for name in ("torch", "sdpa"):  # PyTorch paths always run on a CPU
        assert rows[f"FLOWTOK_KERNELS={name}"]["status"] == "ok"
    assert rows["FLOWTOK_KERNELS=cuda"]["status"] == "unavailable"
    assert rows["SDPA math"]["status"] == "ok"
    assert rows["SDPA cudnn"]["status"] == "unavailable"
    for name in ("compile(plain)", "compile(fused)"):  # not on CPU unless --compile on
        assert rows[name]["status"] == "skipped" and rows[name]["reason"]
    graph = [row for row in rows.values() if row["group"] == "graph"]  # one grouped row on CPU
    assert len(graph) == 1 and graph[0]["status"] == "unavailable"
    assert graph[0]["name"] == ", ".join(GRAPH_ROWS) and "CUDA" in graph[0]["reason"]
    base = next(row for row in rows.values() if row["group"] == "baseline")
    assert base["status"] == "ok" and base["tokens"] == 256
    assert r["compare"]["flowtok_over_2d"] == pytest.approx(base["ms_per_batch"] / fused["ms_per_batch"])


def _count_dispatch(monkeypatch) -> dict:
    """Count every call into flowtok_kernels' dispatcher (each op resolves its backend through
    dispatch._choose) and into its public op functions."""
    from flowtok_kernels import dispatch

    calls = {"n": 0}
    choose = dispatch._choose

    def counting(*a, **k):
        calls["n"] += 1
        return choose(*a, **k)
    monkeypatch.setattr(dispatch, "_choose", counting)
    return calls


def test_plain_row_calls_no_flowtok_kernel(monkeypatch):
    """The plain baseline never enters the dispatcher; the fused row does, on the same model."""
    import flowtok.bench.sample as S

    calls = _count_dispatch(monkeypatch)
    per_row: dict[str, int] = {}
    measure = S.measure_variant

    def counting_measure(name, *a, **k):
        before = calls["n"]
        row = measure(name, *a, **k)
        per_row[name] = calls["n"] - before
        return row
    monkeypatch.setattr(S, "measure_variant", counting_measure)
    r = run_json(["bench", "sample", *FAST, "--compare", "--json"])
    rows = {row["name"]: row for row in r["compare"]["rows"]}
    assert rows[S.PLAIN_ROW]["status"] == "ok"
    assert per_row[S.PLAIN_ROW] == 0
    assert per_row[S.FUSED_ROW] > 0  # the counter does see the model's ops


def test_plain_ops_restore_the_dispatcher_and_match_the_reference(monkeypatch):
    import flowtok_kernels
    from flowtok.bench.plain import plain_ops
    from flowtok_kernels import reference

    calls = _count_dispatch(monkeypatch)
    before = flowtok_kernels.layernorm_modulate
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 5, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    gate, shift, scale = (torch.randn(2, 16, generator=g) for _ in range(3))
    q, k, v = (torch.randn(2, 2, 5, 8, generator=g) for _ in range(3))
    with plain_ops():
        h = flowtok_kernels.layernorm_modulate(x, shift, scale)
        xn, h2 = flowtok_kernels.residual_layernorm_modulate(x, gate, y, shift, scale)
        o = flowtok_kernels.attention(q, k, v)
        xe = flowtok_kernels.euler_cfg_step_(x.clone(), y, x, torch.tensor(0.1), torch.tensor(3.0))
    assert calls["n"] == 0
    assert flowtok_kernels.layernorm_modulate is before
    torch.testing.assert_close(h, reference.layernorm_modulate(x, shift, scale))
    torch.testing.assert_close((xn, h2), reference.residual_layernorm_modulate(x, gate, y, shift, scale))
    torch.testing.assert_close(o, reference.attention(q, k, v), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xe, reference.euler_cfg_step_(x.clone(), y, x, torch.tensor(0.1),
                                                             torch.tensor(3.0)))
    flowtok_kernels.layernorm_modulate(x, shift, scale)
    assert calls["n"] == 1  # restored: the same call now goes through the dispatcher


def test_bench_sample_text_table_names_stages_and_cpu_caveat():
    r = runner.invoke(app, ["bench", "sample", *FAST])
    assert r.exit_code == 0, r.output
    for text in ("text encoding", "flow (2 x 2 passes)", "decoding", "end to end",
                 "batch-1 latency", "random weights", "other hardware", "mean nothing"):
        assert text in r.output


def test_bench_train_json_reports_mfu_on_cpu():
    r = run_json(["bench", "train", "--preset", "tiny", "--batch", "4", "--repeats", "1",
                  "--warmup", "0", "--device", "cpu", "--json"])
    assert r["schema"] == "flowtok.bench.train/1" and r["batch"] == 4
    # 3 x forward of projector (581_632) + alignment head (102_400) + flow (1_769_472)
    assert r["flops_per_sample"]["total"] == 3 * (581_632 + 102_400 + 1_769_472)
    assert r["samples_per_s"] == pytest.approx(4e3 / r["step_ms"])
    assert r["tflops_per_s"] == pytest.approx(r["flops_per_sample"]["total"] * r["samples_per_s"] / 1e12)
    assert r["mfu"] == pytest.approx(r["tflops_per_s"] / r["ceiling"]["tflops"])
    assert r["ema"] is True and "random" in r["weights"]


@pytest.mark.parametrize("command", ["sample", "train"])
def test_paper_presets_on_cpu_are_usage_errors(command):
    r = runner.invoke(app, ["bench", command, "--preset", "XL", "--device", "cpu"])
    assert r.exit_code == 2 and "CPU" in r.output


def test_bad_dtype_is_a_usage_error():
    r = runner.invoke(app, ["bench", "sample", *FAST, "--dtype", "int8"])
    assert r.exit_code == 2 and "bf16" in r.output


def test_plot_needs_matplotlib(tmp_path):
    import importlib.util

    out = tmp_path / "bench.png"
    r = runner.invoke(app, ["bench", "sample", *FAST, "--plot", str(out)])
    if importlib.util.find_spec("matplotlib") is None:
        assert r.exit_code == 1 and "flowtok[plot]" in r.output and not out.exists()
    else:
        assert r.exit_code == 0, r.output
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
