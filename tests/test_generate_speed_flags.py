"""`generate --cuda-graph` / `--compile` (issue 25, item 2): validated before any work on a CPU,
and FlowTokPipeline.compile_flow compiles the flow's forward without touching its weights."""

import pytest
import torch
from typer.testing import CliRunner

from flowtok_cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("flags, message", [
    (["--compile"], "--compile needs a CUDA device, got cpu"),
    (["--cuda-graph", "on"], "--cuda-graph on needs a CUDA device"),
    (["--cuda-graph", "sometimes"], "--cuda-graph 'sometimes': choose one of auto, on, off"),
])
def test_speed_flags_that_cannot_hold_on_a_cpu_are_usage_errors(model_dir, tmp_path, flags, message):
    out = tmp_path / "out"
    res = runner.invoke(app, ["generate", "a cat", "-m", str(model_dir), "--device", "cpu",
                              "-o", str(out), *flags])
    assert res.exit_code == 2 and message in res.stderr
    assert not out.exists()


def test_cuda_graph_off_and_auto_draw_the_same_image_on_a_cpu(model_dir, tmp_path):
    outs = []
    for mode in ("off", "auto"):
        res = runner.invoke(app, ["generate", "a cat", "-m", str(model_dir), "--steps", "2",
                                  "--cuda-graph", mode, "-o", str(tmp_path / mode)])
        assert res.exit_code == 0, res.output
        outs.append(next((tmp_path / mode).glob("*.png")).read_bytes())
    assert outs[0] == outs[1]


def test_compile_flow_wraps_the_forward_and_keeps_the_weights(model_dir, monkeypatch):
    from flowtok.pipeline import FlowTokPipeline

    seen = []

    def fake_compile(fn, **kwargs):  # Inductor on a CPU takes minutes: check the wiring only
        seen.append(kwargs)

        def wrapped(*args, **kw):
            wrapped.calls += 1
            return fn(*args, **kw)

        wrapped.calls = 0
        return wrapped

    monkeypatch.setattr(torch, "compile", fake_compile)
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    before = {k: v.clone() for k, v in pipe.t2i.state_dict().items()}
    reference = pipe("a cat", num_inference_steps=2)[0]
    pipe.compile_flow()
    assert seen == [{"dynamic": False}]
    image = pipe("a cat", num_inference_steps=2)[0]
    assert pipe.t2i.flow.forward.calls == 2  # one call per Euler step
    assert list(image.getdata()) == list(reference.getdata())
    after = pipe.t2i.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
