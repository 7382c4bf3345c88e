"""A style per image (flow.style_key / flow.styles): the flow is told which drawing it learns,
a model given styles starts as the model without, and sampling takes the styles in turn."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from flowtok.config import apply_overrides, load_preset
from flowtok.data.styles import attach_styles, style_indices, style_values
from flowtok.errors import ArgumentError, CheckpointError, ConfigError, DataError
from flowtok.flow.model import TextImageFlow

TINY32 = ["tokenizer.image_size=32", "tokenizer.patch_size=8"]


def _cfg(styles=()):
    cfg = load_preset("tiny")
    cfg.flow.styles = tuple(styles)
    return cfg


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_a_model_given_styles_starts_as_the_model_without():
    plain, styled = TextImageFlow(_cfg(), "t2i"), TextImageFlow(_cfg(["a", "b"]), "t2i")
    _randomise(plain)
    missing, unexpected = styled.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["flow.style.weight"] and not unexpected
    assert torch.count_nonzero(styled.flow.style.weight) == 0  # zero init survives the load
    B, K, C = 3, plain.cfg.K, plain.cfg.C
    x, t, ind = torch.randn(B, K, C), torch.rand(B), torch.zeros(B, dtype=torch.long)
    torch.testing.assert_close(styled.flow(x, t, ind, torch.tensor([0, 1, 1])), plain.flow(x, t, ind))


def test_styles_change_the_velocity_and_guidance_repeats_them():
    model = TextImageFlow(_cfg(["a", "b"]), "t2i").eval()  # no projector dropout
    _randomise(model, 1)
    B, K, C = 2, model.cfg.K, model.cfg.C
    x, t, ind = torch.randn(B, K, C), torch.rand(B), torch.zeros(B, dtype=torch.long)
    v0 = model.flow(x, t, ind, torch.zeros(B, dtype=torch.long))
    v1 = model.flow(x, t, ind, torch.ones(B, dtype=torch.long))
    assert (v0 - v1).abs().max() > 1e-3
    # guidance above 1 runs conditional and null passes in one doubled batch: the bound styles
    # must follow each sample into both halves, so each sample matches a one-sample run
    feats = torch.randn(B, K, model.cfg.text.feature_dim)
    noise = torch.randn(B, K, C)
    both = model.text_to_latent(feats, noise, 3, 2.0, styles=torch.tensor([0, 1]))
    one = model.text_to_latent(feats[1:], noise[1:], 3, 2.0, styles=torch.tensor([1]))
    torch.testing.assert_close(both[1:], one, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="styles"):
        model.flow(x, t, ind)
    with pytest.raises(ValueError, match="no styles"):
        TextImageFlow(_cfg(), "t2i").velocity(torch.zeros(1, dtype=torch.long))


def test_loss_trains_the_style_embedding_and_follows_the_null_permutation():
    model = TextImageFlow(_cfg(["a", "b"]), "t2i")
    _randomise(model, 2)
    B, K, C = 8, model.cfg.K, model.cfg.C
    feats, z = torch.randn(B, K, model.cfg.text.feature_dim), torch.randn(B, K, C)
    styles = torch.tensor([0, 1] * 4)
    loss, _ = model.loss(feats, z, generator=torch.Generator().manual_seed(0), styles=styles)
    loss.backward()
    assert model.flow.style.weight.grad.abs().sum(1).gt(0).all()  # both rows learn
    with pytest.raises(ValueError, match="pass one index per sample"):
        model.loss(feats, z, generator=torch.Generator().manual_seed(0))


def test_an_image_to_text_model_has_no_styles():
    with pytest.raises(ConfigError, match="text -> image"):
        TextImageFlow(_cfg(["a"]), "i2t", vocab_ids=torch.arange(10))


def test_style_indices_use_the_given_order_or_the_sorted_values():
    idx, styles = style_indices(["twitter", "google", "twitter"], ())
    assert styles == ("google", "twitter") and idx.tolist() == [1, 0, 1]
    idx, styles = style_indices(["b", "a"], ("b", "a"))
    assert idx.tolist() == [0, 1]
    with pytest.raises(DataError, match="not in flow.styles"):
        style_indices(["c"], ("a", "b"))


@pytest.fixture()
def styled_folder(tmp_path):
    """Two drawings of two names, each row with a "style" field, and a tiny tokenizer."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (name, style) in enumerate([("owl", "g"), ("owl", "t"), ("cat", "g"), ("cat", "t")]):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": name, "style": style}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    from flowtok.tokenizer.model import Tokenizer

    torch.manual_seed(0)
    Tokenizer(apply_overrides(load_preset("tiny"), TINY32).tokenizer).save_pretrained(tmp_path / "tok")
    return tmp_path


def test_style_values_read_metadata_and_name_a_missing_field(styled_folder):
    names = [f"{i}.png" for i in range(4)]
    assert style_values(styled_folder, names, "style") == ["g", "t", "g", "t"]
    with pytest.raises(DataError, match="no 'artist' field.*0.png"):
        style_values(styled_folder, names, "artist")


def _task(root, cfg, init=None):
    from flowtok.data.latents import latents_from_folder
    from flowtok.text.encoders import build_text_encoder
    from flowtok.tokenizer.model import Tokenizer
    from flowtok.train.flow_task import FlowTask

    tok = Tokenizer.from_pretrained(root / "tok")
    cfg.tokenizer = tok.cfg
    train = latents_from_folder(tok, root)
    if cfg.flow.style_key:
        attach_styles(cfg.flow, root, train)
    enc = build_text_encoder(cfg.text.encoder, cfg.K, cfg.text.feature_dim)
    return FlowTask(cfg, "t2i", tok, enc, train, device="cpu", init=init)


def test_flow_task_batches_carry_styles_and_start_from_a_model_without(styled_folder):
    cfg = apply_overrides(load_preset("tiny"), [*TINY32, "flow.style_key=style",
                                                 "train_flow.batch_size=4"])
    plain = _task(styled_folder, apply_overrides(load_preset("tiny"), TINY32)).model
    _randomise(plain, 3)
    task = _task(styled_folder, cfg, init=plain)
    assert cfg.flow.styles == ("g", "t") and task.train.styles.tolist() == [0, 1, 0, 1]
    torch.testing.assert_close(task.model.flow.x_embed.weight, plain.flow.x_embed.weight)
    batch = task.batch(0, torch.Generator().manual_seed(0))
    names = [task.train.names[i] for i in range(4)]
    assert sorted(batch["styles"].tolist()) == [0, 0, 1, 1] and len(names) == 4
    loss, logs = task.loss(batch, 0)
    assert torch.isfinite(loss) and "flow" in logs
    # a model whose weights do not fit is still refused
    other = TextImageFlow(apply_overrides(load_preset("tiny"), [*TINY32, "flow.depth=3"]), "t2i")
    with pytest.raises(CheckpointError, match="does not match"):
        _task(styled_folder, apply_overrides(load_preset("tiny"), [*TINY32, "flow.style_key=style"]),
              init=other)


def test_styles_without_a_style_per_image_are_a_config_error(styled_folder):
    cfg = apply_overrides(load_preset("tiny"), TINY32)
    cfg.flow.styles = ("g", "t")
    with pytest.raises(ConfigError, match="style_key"):
        _task(styled_folder, cfg)


@pytest.fixture(scope="module")
def styled_model(tmp_path_factory):
    """A tiny text -> image model folder with styles g and t and random weights."""
    from flowtok.pipeline import FlowTokPipeline
    from flowtok.tokenizer.model import Tokenizer

    cfg = _cfg(["g", "t"])
    torch.manual_seed(0)
    t2i = TextImageFlow(cfg, "t2i")
    _randomise(t2i, 4)
    path = tmp_path_factory.mktemp("styled") / "m"
    FlowTokPipeline(cfg, Tokenizer(cfg.tokenizer), t2i, None).save_pretrained(path)
    return path


def test_pipeline_takes_styles_in_turn_or_as_named(styled_model):
    from flowtok.pipeline import FlowTokPipeline
    from flowtok.tokenizer.model import Tokenizer

    cfg = _cfg(["g", "t"])
    pipe = FlowTokPipeline.from_pretrained(styled_model, device="cpu")
    assert pipe.styles == ["g", "t"]
    assert pipe.style_indices([4, 5, 6, 7]).tolist() == [0, 1, 0, 1]
    assert pipe.style_indices([4, 5], "t").tolist() == [1, 1]
    four = [np.asarray(im) for im in pipe("owl", num_images_per_prompt=4, seed=0, num_inference_steps=2)]
    # image j depends on (prompt, seed) alone: made one at a time, with its style by seed parity
    for j in (1, 2):
        alone = np.asarray(pipe("owl", seed=j, num_inference_steps=2)[0])
        np.testing.assert_array_equal(alone, four[j])
    named = np.asarray(pipe("owl", seed=1, num_inference_steps=2, style="g")[0])
    assert not np.array_equal(named, four[1])  # seed 1 alone takes "t"; named "g" differs
    with pytest.raises(ArgumentError, match="unknown style 'x'.*g, t"):
        pipe("owl", style="x")
    plain = FlowTokPipeline(_cfg(), Tokenizer(cfg.tokenizer), TextImageFlow(_cfg(), "t2i"), None)
    with pytest.raises(ArgumentError, match="no styles"):
        plain("owl", style="g")


def test_generate_cli_records_each_images_style_and_refuses_unknown_ones(styled_model, model_dir,
                                                                         tmp_path):
    from typer.testing import CliRunner

    from flowtok_cli.app import app

    runner = CliRunner()
    base = ["generate", "owl", "--steps", "2", "-m", str(styled_model)]
    res = runner.invoke(app, [*base, "-n", "3", "--seed", "5", "-o", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "a" / "metadata.jsonl").read_text().splitlines()]
    assert [r["style"] for r in rows] == ["t", "g", "t"]  # seeds 5, 6, 7 take the styles in turn
    with Image.open(tmp_path / "a" / rows[0]["file_name"]) as im:
        assert im.text["flowtok:style"] == "t"
    res = runner.invoke(app, [*base, "--style", "g", "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b" / "metadata.jsonl").read_text())["style"] == "g"
    res = runner.invoke(app, [*base, "--style", "x", "-o", str(tmp_path / "c")])
    assert res.exit_code == 2 and "unknown style 'x'" in res.output
    assert not (tmp_path / "c").exists()
    res = runner.invoke(app, ["generate", "owl", "-m", str(model_dir), "--style", "g",
                              "-o", str(tmp_path / "d")])
    assert res.exit_code == 2 and "no styles" in res.output


def test_temperature_zero_warns_only_when_images_must_repeat(styled_model, tmp_path):
    from typer.testing import CliRunner

    from flowtok_cli.app import app

    runner = CliRunner()
    base = ["generate", "owl", "--steps", "2", "-m", str(styled_model), "--temperature", "0"]
    res = runner.invoke(app, [*base, "-n", "2", "-o", str(tmp_path / "a")])
    assert res.exit_code == 0 and "temperature 0" not in res.stderr  # two styles, two images
    a, b = sorted((tmp_path / "a").glob("*.png"))
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    res = runner.invoke(app, [*base, "-n", "3", "-o", str(tmp_path / "b")])
    assert res.exit_code == 0 and "one image per style (2)" in res.stderr
    res = runner.invoke(app, [*base, "-n", "2", "--style", "g", "-o", str(tmp_path / "c")])
    assert res.exit_code == 0 and "the same image for every seed" in res.stderr
