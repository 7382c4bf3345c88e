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
    from flowtok.data.latents import latents_from_folder
    from flowtok.text.encoders import build_text_encoder
    from flowtok.train.flow_task import FlowTask
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


def test_training_recall_scores_a_model_that_returns_the_true_latents_as_perfect(setup, tmp_path):
    """The t2i recall metric (data without a judge, e.g. emoji): a model whose generated latent
    is its caption's real latent scores top-1 = 1; one that returns another caption's does not."""
    import numpy as np
    from PIL import Image

    from flowtok.data.latents import latents_from_folder
    from flowtok.text.encoders import build_text_encoder
    from flowtok.train.flow_task import FlowTask

    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):  # short captions: distinct within the tiny encoder's 8 tokens
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": f"item {i}"}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    cfg = apply_overrides(load_preset("tiny"), TINY32)
    tok = Tokenizer.from_pretrained(setup / "tok")
    train = latents_from_folder(tok, tmp_path)
    encoder = build_text_encoder(cfg.text.encoder, cfg.K, cfg.text.feature_dim, None)
    task = FlowTask(cfg, "t2i", tok, encoder, train)
    unique = list(task.text.index)
    first = {c: train.mean[train.captions.index(c)] for c in unique}

    def caption_of(row):
        j = int((task.text.feats.float() - row).abs().flatten(1).sum(1).argmin())
        return unique[j]

    def true_latents(feats, noise, steps, guidance):
        return torch.stack([first[caption_of(f)] for f in feats])

    def shifted_latents(feats, noise, steps, guidance):  # every caption gets its neighbour's
        return torch.stack([first[unique[(unique.index(caption_of(f)) + 1) % len(unique)]]
                            for f in feats])

    task.model.text_to_latent = true_latents
    exact = task.training_recall(task.model)
    assert exact["train_latent_top1"] == 1.0 and exact["train_latent_rel_err"] == 0.0
    task.model.text_to_latent = shifted_latents
    off = task.training_recall(task.model)
    assert off["train_latent_top1"] < 0.5 and off["train_latent_rel_err"] > 0.1


def test_i2t_decoder_only_keeps_the_flow_and_trains_the_decoder_on_its_endpoints(setup):
    first = setup / "i2t_base"
    _train(setup, "i2t", first)
    res = _train(setup, "i2t", setup / "i2t_dec",
                 ["--init", str(first / "model"), "--decoder-only"])
    assert res["step"] == 6
    log = [json.loads(line) for line in (setup / "i2t_dec" / "log.jsonl").read_text().splitlines()]
    assert any("ce_endpoint" in r and "ce_true" in r for r in log)
    a = FlowTokPipeline.from_pretrained(first / "model", device="cpu").i2t.state_dict()
    b = FlowTokPipeline.from_pretrained(setup / "i2t_dec" / "model", device="cpu").i2t.state_dict()
    kept = [k for k in a if not k.startswith("decoder.")]
    assert kept and all(torch.equal(a[k], b[k]) for k in kept)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))


def test_decoder_only_without_init_is_a_usage_error(setup, tmp_path):
    args = ["train", "flow", "--task", "i2t", "--data", str(setup / "shapes" / "train"),
            "--tokenizer", str(setup / "tok"), "--preset", "tiny", "-o", str(tmp_path / "x"),
            "--decoder-only"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--init" in r.output
