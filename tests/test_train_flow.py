"""`flowtok train flow` end to end on the tiny preset: both directions, export, resume."""

import json

import pytest
import torch
from typer.testing import CliRunner

from flowtok.config import apply_overrides, load_preset
from flowtok.data.shapes import write_dataset
from flowtok.pipeline import FlowTokPipeline
from flowtok.tokenizer.model import Tokenizer
from flowtok.train.flow_task import caption_vocabulary
from flowtok_cli.app import app

runner = CliRunner()
TINY32 = ["tokenizer.image_size=32", "tokenizer.patch_size=8"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("flowtrain")
    write_dataset(root / "shapes", n=48, size=32, seed=0, val_fraction=0.25)
    cfg = apply_overrides(load_preset("tiny"), TINY32)
    torch.manual_seed(0)
    Tokenizer(cfg.tokenizer).save_pretrained(root / "tok")
    return root


def _train(root, task, out, extra=()):
    args = ["train", "flow", "--task", task, "--data", str(root / "shapes" / "train"),
            "--val", str(root / "shapes" / "val"), "--tokenizer", str(root / "tok"),
            "--preset", "tiny", "-o", str(out), "--eval-prompts", "4", "--json",
            "--set", "train_flow.max_steps=6", "--set", "train_flow.eval_every=0", *extra]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_t2i_training_exports_a_model_that_generates(setup):
    res = _train(setup, "t2i", setup / "t2i")
    assert res["step"] == 6 and res["stopped"] == "done"
    assert 0.0 <= res["eval"]["shapes_all_correct"] <= 1.0 and res["eval"]["val_flow"] > 0
    pipe = FlowTokPipeline.from_pretrained(setup / "t2i" / "model", device="cpu")
    assert pipe.t2i is not None and pipe.i2t is None
    assert pipe("a small red circle in the center", num_inference_steps=2)[0].size == (32, 32)
    assert json.loads((setup / "t2i" / "config.json").read_text())["train_flow"]["max_steps"] == 6


def test_i2t_training_exports_a_captioner(setup):
    res = _train(setup, "i2t", setup / "i2t")
    assert "caption_all_correct" in res["eval"]
    pipe = FlowTokPipeline.from_pretrained(setup / "i2t" / "model", device="cpu")
    assert isinstance(pipe.caption([torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()],
                                   num_inference_steps=2)[0], str)


def test_resume_matches_an_uninterrupted_run(setup, tmp_path):
    """6 steps straight == 3 steps, a new process-like Trainer, --resume to 6 (bit-identical)."""
    from flowtok.text.encoders import build_text_encoder
    from flowtok.train.flow_task import FlowTask, latents_from_folder
    from flowtok.train.trainer import Trainer

    cfg = apply_overrides(load_preset("tiny"), TINY32 + ["train_flow.max_steps=6",
                                                         "train_flow.eval_every=0"])
    tok = Tokenizer.from_pretrained(setup / "tok")
    data = latents_from_folder(tok, setup / "shapes" / "train")

    def trainer(out):
        enc = build_text_encoder("tiny", cfg.K, cfg.text.feature_dim)
        task = FlowTask(cfg, "t2i", tok, enc, data)
        return Trainer(task, cfg.train_flow, out, full_config=cfg, device="cpu", progress=False)

    trainer(tmp_path / "a").fit()
    assert trainer(tmp_path / "b").fit(stop_after=3)["step"] == 3
    assert trainer(tmp_path / "b").fit(resume=True)["step"] == 6
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "a" / "model" / "t2i" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model" / "t2i" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_caption_vocabulary_keeps_training_ids_and_specials():
    ids = torch.tensor([[5, 9, 0], [9, 7, 0]])
    assert caption_vocabulary(ids, [0, 1]).tolist() == [0, 1, 5, 7, 9]


def test_unknown_task_is_a_usage_error(setup):
    r = runner.invoke(app, ["train", "flow", "--task", "x2y", "--data", str(setup / "shapes" / "train"),
                            "--tokenizer", str(setup / "tok"), "-o", str(setup / "x")])
    assert r.exit_code == 2
