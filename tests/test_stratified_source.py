"""Stratified source noise for text -> image (train_flow.stratified_source): the first noise
coordinate of image j of a caption's k images lies in the j-th of k equal-probability bins,
and the marginal stays N(0, 1)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from flowtok.config import apply_overrides, load_preset
from flowtok.errors import ConfigError
from flowtok.flow.objective import stratified_noise
from flowtok.tokenizer.model import Tokenizer
from flowtok.train.flow_task import caption_bins

TINY32 = ["tokenizer.image_size=32", "tokenizer.patch_size=8"]


def test_caption_bins_rank_the_images_of_each_caption_in_data_order():
    lo, hi = caption_bins(["a", "b", "a", "a", "b"])
    assert lo.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 0.5])
    assert hi.tolist() == pytest.approx([1 / 3, 0.5, 2 / 3, 1, 1])


def test_first_coordinate_lies_in_its_bin_and_the_rest_is_plain_noise():
    n = 6000
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, 3, (n,), generator=g)
    lo, hi = k / 3, (k + 1) / 3
    noise = stratified_noise((n, 4, 5), lo, hi, generator=g)
    first = noise[:, 0, 0]
    edges = torch.special.ndtri(torch.tensor([1 / 3, 2 / 3]))
    assert (first[k == 0] < edges[0]).all() and (first[k == 2] > edges[1]).all()
    assert ((first[k == 1] > edges[0]) & (first[k == 1] < edges[1])).all()
    # bins drawn uniformly give back N(0, 1), and the other coordinates are untouched N(0, 1)
    for x in (first, noise[:, 2, 3]):
        assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert abs(float(torch.corrcoef(torch.stack([first, noise[:, 0, 1]]))[0, 1])) < 0.05


@pytest.fixture()
def two_drawings(tmp_path):
    """Two images per caption, as the emoji data (a Noto and a Twemoji drawing of each name)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(["owl", "owl", "cat", "cat"]):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": name}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    Tokenizer(apply_overrides(load_preset("tiny"), TINY32).tokenizer).save_pretrained(tmp_path / "tok")
    return tmp_path


def _task(root, direction):
    from flowtok.data.latents import latents_from_folder
    from flowtok.text.encoders import build_text_encoder
    from flowtok.train.flow_task import FlowTask

    cfg = apply_overrides(load_preset("tiny"), TINY32 + [
        "train_flow.stratified_source=true", "train_flow.batch_size=4"])
    tok = Tokenizer.from_pretrained(root / "tok")
    enc = build_text_encoder(cfg.text.encoder, cfg.K, cfg.text.feature_dim, None)
    return FlowTask(cfg, direction, tok, enc, latents_from_folder(tok, root))


def test_batches_carry_each_images_bin_and_the_loss_uses_it(two_drawings, monkeypatch):
    task = _task(two_drawings, "t2i")
    batch = task.batch(0, torch.Generator().manual_seed(0))
    lo, hi = batch["bins"]
    assert sorted(zip(lo.tolist(), hi.tolist())) == [(0, 0.5), (0, 0.5), (0.5, 1), (0.5, 1)]
    seen = {}
    real = stratified_noise

    def spy(shape, lo, hi, generator=None, device="cpu"):
        seen["noise"] = real(shape, lo, hi, generator, device)
        return seen["noise"]

    monkeypatch.setattr("flowtok.flow.model.stratified_noise", spy)
    loss, _ = task.loss(batch, 0)
    assert torch.isfinite(loss)
    first = seen["noise"].reshape(len(lo), -1)[:, 0]
    assert ((first < 0) == (hi <= 0.5)).all()  # the first drawing of a name: below the median


def test_stratified_source_is_refused_for_image_to_text(two_drawings):
    with pytest.raises(ConfigError, match="stratified_source"):
        _task(two_drawings, "i2t")
