"""Caption templates for text -> image training (train_flow.caption_templates)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from flowtok.config import apply_overrides, load_preset
from flowtok.errors import ConfigError
from flowtok.text.templates import apply_template, check_templates
from flowtok.tokenizer.model import Tokenizer

TINY32 = ["tokenizer.image_size=32", "tokenizer.patch_size=8"]


def test_templates_fill_the_caption_and_the_article():
    assert apply_template("{a} {}", "cat") == "a cat"
    assert apply_template("{a} {} emoji", "owl") == "an owl emoji"
    assert apply_template("{}", "Red apple") == "Red apple"
    assert apply_template("{a} {}", "Umbrella") == "an Umbrella"


@pytest.mark.parametrize("bad", ["a cat", "{} and {}", "{a}"])
def test_a_template_without_exactly_one_caption_slot_is_refused(bad):
    with pytest.raises(ConfigError, match="exactly once"):
        check_templates([bad])


@pytest.fixture()
def emoji_like(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(["owl", "cat", "apple", "dog"]):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": name}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    cfg = apply_overrides(load_preset("tiny"), TINY32)
    Tokenizer(cfg.tokenizer).save_pretrained(tmp_path / "tok")
    return tmp_path


def _task(root, direction, templates):
    from flowtok.data.latents import latents_from_folder
    from flowtok.text.encoders import build_text_encoder
    from flowtok.train.flow_task import FlowTask

    cfg = apply_overrides(load_preset("tiny"), TINY32 + [
        "train_flow.caption_templates=" + json.dumps(templates), "train_flow.batch_size=4"])
    tok = Tokenizer.from_pretrained(root / "tok")
    train = latents_from_folder(tok, root)
    enc = build_text_encoder(cfg.text.encoder, cfg.K, cfg.text.feature_dim, None)
    return FlowTask(cfg, direction, tok, enc, train)


def test_each_sample_reads_its_own_caption_in_a_random_template(emoji_like):
    task = _task(emoji_like, "t2i", ["{}", "{a} {}", "{} emoji"])
    names = {i: c for c, i in task.text.index.items()}
    assert {"an owl", "a cat", "apple emoji", "dog"} <= set(task.text.index)
    seen = set()
    for step in range(8):
        b = task.batch(step, torch.Generator().manual_seed(step))
        for z, t in zip(b["z"], b["text"].tolist()):
            own = int((task.train.mean - z).flatten(1).norm(dim=1).argmin())  # z is near its mean
            assert names[t] in task.variants(task.train.captions[own])
            seen.add(names[t])
    assert len(seen) > 6  # several templates of several captions, not one fixed wording


def test_templates_are_refused_for_image_to_text(emoji_like):
    with pytest.raises(ConfigError, match="t2i"):
        _task(emoji_like, "i2t", ["{a} {}"])


def test_without_templates_every_sample_reads_its_bare_caption(emoji_like):
    task = _task(emoji_like, "t2i", [])
    b = task.batch(0, torch.Generator().manual_seed(0))
    names = {i: c for c, i in task.text.index.items()}
    assert {names[t] for t in b["text"].tolist()} <= set(task.train.captions)


@pytest.fixture()
def shapes_like(tmp_path):
    captions = ["a large red circle in the top left", "a blue square",
                "a red circle on the left and a green cross on the right", "a small cyan cross"]
    rng = np.random.default_rng(1)
    rows = []
    for i, text in enumerate(captions):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": text}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    Tokenizer(apply_overrides(load_preset("tiny"), TINY32).tokenizer).save_pretrained(tmp_path / "tok")
    return tmp_path


def _paraphrase_task(root, extra=()):
    from flowtok.data.latents import latents_from_folder
    from flowtok.text.encoders import build_text_encoder
    from flowtok.train.flow_task import FlowTask

    cfg = apply_overrides(load_preset("tiny"), TINY32 + [
        "train_flow.caption_paraphrases=5", "train_flow.batch_size=4", *extra])
    tok = Tokenizer.from_pretrained(root / "tok")
    enc = build_text_encoder(cfg.text.encoder, cfg.K, cfg.text.feature_dim, None)
    return FlowTask(cfg, "t2i", tok, enc, latents_from_folder(tok, root))


def test_paraphrases_give_each_sample_a_wording_of_its_own_caption(shapes_like):
    from flowtok.data.shapes import parse_caption

    task = _paraphrase_task(shapes_like)
    names = {i: c for c, i in task.text.index.items()}
    seen = set()
    for step in range(10):
        b = task.batch(step, torch.Generator().manual_seed(step))
        for z, t in zip(b["z"], b["text"].tolist()):
            own = task.train.captions[int((task.train.mean - z).flatten(1).norm(dim=1).argmin())]
            assert names[t] in task.variants(own)
            seen.add(names[t])
    for caption in task.train.captions:
        variants = task.variants(caption)
        assert variants[0] == caption and len(set(variants)) == 5
    assert len(seen) > 8
    assert any(parse_caption(s) is None for s in seen)  # wordings outside the grammar are trained


def test_templates_and_paraphrases_together_are_refused(shapes_like):
    with pytest.raises(ConfigError, match="set one"):
        _paraphrase_task(shapes_like, ['train_flow.caption_templates=["{}"]'])


def test_wording_weight_pulls_each_wording_onto_its_own_captions_mean(shapes_like):
    task = _paraphrase_task(shapes_like, ["text.wording_weight=0.5"])
    names = {i: c for c, i in task.text.index.items()}
    b = task.batch(0, torch.Generator().manual_seed(0))
    for z, a in zip(b["z"], b["anchor"].tolist()):  # the anchor is the data's own caption
        own = task.train.captions[int((task.train.mean - z).flatten(1).norm(dim=1).argmin())]
        assert names[a] == own
    model = task.model.eval()  # no projector dropout: the term is exact
    feats, anchor = task.text.feats[b["text"]].float(), task.text.feats[b["anchor"]].float()
    def gen():
        return torch.Generator().manual_seed(1)  # the same noise, timesteps and null draws
    with_term, logs = model.loss(feats, b["z"], None, gen(), anchor=anchor)
    without, plain = model.loss(feats, b["z"], None, gen())
    expected = (model.projector(feats)[0] - model.projector(anchor)[0]).pow(2).mean()
    assert "wording" not in plain and logs["wording"] == pytest.approx(expected.item(), rel=1e-5)
    assert expected > 0  # paraphrases differ from their caption
    torch.testing.assert_close(with_term - without, 0.5 * expected)
    # the caption's own mean is the target: no gradient reaches the projector through it
    params = list(model.projector.parameters())

    def grads(loss):
        return torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    g_with = grads(model.loss(feats, b["z"], None, gen(), anchor=anchor)[0])
    g_without = grads(model.loss(feats, b["z"], None, gen())[0])
    term = 0.5 * (model.projector(feats)[0] - model.projector(anchor)[0].detach()).pow(2).mean()
    for gw, g0, gt in zip(g_with, g_without, grads(term)):
        if gt is not None:
            torch.testing.assert_close(gw - g0, gt, rtol=1e-4, atol=1e-6)


def test_wording_weight_is_off_without_several_wordings(shapes_like):
    task = _paraphrase_task(shapes_like, ["text.wording_weight=0.0"])
    b = task.batch(0, torch.Generator().manual_seed(0))
    assert "wording" not in task.loss(b, 0)[1]
    task = _paraphrase_task(shapes_like, ["text.wording_weight=1.0"])
    assert task.loss(b, 0)[1]["wording"] > 0


def test_caption_share_sets_how_often_the_data_s_own_caption_is_trained(shapes_like):
    task = _paraphrase_task(shapes_like, ["train_flow.caption_share=0.6"])
    picks = task.pick_templates(20000, torch.Generator().manual_seed(0))
    share = (picks == 0).float().mean().item()
    assert share == pytest.approx(0.6, abs=0.015)
    others = torch.bincount(picks[picks > 0], minlength=5)[1:].float()
    assert others.min() / others.max() > 0.9  # the paraphrases share the rest evenly
    uniform = _paraphrase_task(shapes_like).pick_templates(20000, torch.Generator().manual_seed(0))
    assert (uniform == 0).float().mean().item() == pytest.approx(0.2, abs=0.015)


@pytest.mark.parametrize("extra", [["train_flow.caption_share=1.5"],
                                   ["train_flow.caption_share=0.5", "train_flow.caption_paraphrases=0"]])
def test_caption_share_out_of_range_or_without_paraphrases_is_refused(shapes_like, extra):
    with pytest.raises(ConfigError, match="caption_share"):
        _paraphrase_task(shapes_like, extra)


def test_caption_style_picks_the_wordings_a_caption_trains_with(shapes_like):
    from flowtok.data.shapes_wordings import training_variants, wide_training_style

    narrow = _paraphrase_task(shapes_like)
    wide = _paraphrase_task(shapes_like, ["train_flow.caption_style=wide"])
    cap = next(c for c in narrow.train.captions if c.startswith("a "))
    assert narrow.variants(cap) == training_variants(cap, 5, 0)
    assert wide.variants(cap) == training_variants(cap, 5, 0, wide_training_style())
    assert wide.variants(cap) != narrow.variants(cap) and wide.variants(cap)[0] == cap
    with pytest.raises(ConfigError, match="caption_style"):
        _paraphrase_task(shapes_like, ["train_flow.caption_style=fancy"])
