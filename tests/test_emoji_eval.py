"""Emoji retrieval metrics: an oracle model scores 100%, a shuffled one does not, ranks are exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flowtok.config import resolve_config
from flowtok.errors import DataError
from flowtok.eval.emoji_eval import (
    caption_retrieval,
    nearest_emoji_scores,
    prompt_fidelity,
    read_emoji_dataset,
    topk_ranks,
)
from flowtok.text.encoders import TinyTextEncoder
from flowtok.tokenizer.model import Tokenizer

NAMES = ["cat face", "dog face", "red apple", "green apple", "sun", "moon", "star", "tree"]
SIZE = 32


def _picture(i: int, style: int) -> np.ndarray:
    """A distinct pattern per emoji; the two styles of one emoji differ only a little."""
    rng = np.random.default_rng(i)
    base = rng.integers(0, 256, (SIZE, SIZE, 3))
    return np.clip(base + style * 6, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def emoji_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("emoji")
    for split, names in (("train", NAMES[:6]), ("val", NAMES[6:])):
        (root / split).mkdir()
        rows = []
        for name in names:
            i = NAMES.index(name)
            for style in (0, 1):
                fn = f"{i}_{style}.png"
                Image.fromarray(_picture(i, style)).save(root / split / fn)
                rows.append(json.dumps({"file_name": fn, "text": name}))
        (root / split / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return root


class FakePipe:
    """The pipeline surface the metrics use, answering from the data itself (or shuffled)."""

    def __init__(self, shuffle: bool = False):
        cfg = resolve_config("tiny")
        cfg.tokenizer.image_size = SIZE
        torch.manual_seed(0)
        self.tokenizer = Tokenizer(cfg.tokenizer).eval()
        self.text_encoder = TinyTextEncoder(cfg.K, cfg.text.feature_dim)
        self.shift = 1 if shuffle else 0
        self.temperatures = []  # the temperature argument of each call

    def __call__(self, prompts, num_inference_steps=None, guidance_scale=None, seed=0, progress=None,
                 temperature=None):
        self.temperatures.append(temperature)
        names = [NAMES[(NAMES.index(p) + self.shift) % len(NAMES)] for p in prompts]
        return [Image.fromarray(_picture(NAMES.index(n), 0)) for n in names]

    def caption(self, paths, num_inference_steps=None, guidance_scale=None):
        names = []
        for p in paths:
            i = int(Path(p).stem.split("_")[0])
            names.append(NAMES[(i + self.shift) % len(NAMES)])
        return names


def test_read_dataset_both_splits(emoji_dir):
    recs = read_emoji_dataset(emoji_dir)
    assert len(recs) == 2 * len(NAMES)
    assert {r.split for r in recs} == {"train", "val"}
    assert all(r.path.is_file() for r in recs)


def test_read_dataset_missing_is_clear(tmp_path):
    with pytest.raises(DataError, match="flowtok data emoji"):
        read_emoji_dataset(tmp_path)


def test_topk_ranks_counts_ties_against():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1], [0.0, 0.3, 0.3]])
    ranks = topk_ranks(scores, torch.tensor([0, 1, 2]))
    assert ranks.tolist() == [0, 1, 1]


def test_nearest_emoji_takes_the_closest_image_of_each_name():
    reals = torch.tensor([[0.0], [10.0], [3.0], [4.0]])
    idx = torch.tensor([0, 0, 1, 1])  # name 0 has images at 0 and 10; name 1 at 3 and 4
    scores = nearest_emoji_scores(torch.tensor([[9.0], [2.0]]), reals, idx, 2)
    assert torch.allclose(scores, -torch.tensor([[1.0, 5.0], [2.0, 1.0]]))


@pytest.mark.parametrize("split", ["train", "val"])
def test_oracle_scores_full_marks_and_shuffled_does_not(emoji_dir, split):
    recs = read_emoji_dataset(emoji_dir)
    good = prompt_fidelity(FakePipe(), recs, split=split, n=200)
    bad = prompt_fidelity(FakePipe(shuffle=True), recs, split=split, n=200)
    assert good["top1"] == 1.0 and good["candidates"] == len(NAMES)
    assert bad["top1"] == 0.0
    assert good["n"] == (6 if split == "train" else 2)
    cg = caption_retrieval(FakePipe(), recs, split=split, n=200)
    cb = caption_retrieval(FakePipe(shuffle=True), recs, split=split, n=200)
    assert cg["top1"] == 1.0 and cg["exact"] == 1.0
    assert cb["top1"] == 0.0 and cb["exact"] == 0.0
    assert cg["n"] == (12 if split == "train" else 4)  # images, not names


def test_prompt_fidelity_passes_the_temperature_to_the_pipeline(emoji_dir):
    recs = read_emoji_dataset(emoji_dir)
    pipe = FakePipe()
    prompt_fidelity(pipe, recs, n=2)
    prompt_fidelity(pipe, recs, n=2, temperature=0.25)
    assert pipe.temperatures == [None, 0.25]  # None: the pipeline takes the model's


def test_cli_temperature_is_an_argument_and_reported(emoji_dir, model_dir, monkeypatch):
    """--temperature reaches generation as the pipeline's argument, never as a change to the
    model's config, and the JSON reports it (else the model's)."""
    from typer.testing import CliRunner

    from flowtok.pipeline import FlowTokPipeline
    from flowtok_cli.app import app

    calls = []
    real_call = FlowTokPipeline.__call__

    def spy(self, *args, **kwargs):
        calls.append((kwargs.get("temperature"), self.config.flow.temperature))
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(FlowTokPipeline, "__call__", spy)

    def run(*extra):
        r = CliRunner().invoke(app, ["eval", "emoji", "--data", str(emoji_dir), "--model",
                                     str(model_dir), "--what", "prompts", "--n", "3", "--steps",
                                     "2", "--device", "cpu", "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    shipped = FlowTokPipeline.from_pretrained(model_dir, device="cpu").config.flow.temperature
    assert shipped != 0.25
    assert run()["temperature"] == shipped
    assert run("--temperature", "0.25")["temperature"] == 0.25
    assert calls == [(None, shipped), (0.25, shipped)]  # the config is never changed
