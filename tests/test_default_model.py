"""The shipped default model (flowtok/default_model): size, precision, licences, and that
`flowtok generate` / `flowtok caption` use it with no flags and no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from flowtok.pipeline import default_model_path
from flowtok_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "docs" / "assets" / "emoji").glob("*.png"))
SIZE_LIMIT_MB = 60
runner = CliRunner()


@pytest.fixture(scope="module")
def model() -> Path:
    path = default_model_path()
    assert path is not None, "flowtok/default_model is missing (scripts/build_default_model.py)"
    return path


def test_default_model_is_at_most_60_mb_fp16_with_card_and_licences(model):
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file()) / 2**20
    assert total <= SIZE_LIMIT_MB, total
    weights = sorted(model.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"tokenizer", "t2i", "i2t"}
    for w in weights:
        with safe_open(str(w), "pt") as f:
            for k in f.keys():  # noqa: SIM118 - safe_open is not a dict
                t = f.get_tensor(k)
                assert not t.is_floating_point() or str(t.dtype) == "torch.float16", (w, k)
    assert not list(model.rglob("*.bin")) and not list(model.rglob("*.pt"))
    card = (model / "model_card.md").read_text()
    for needed in ("flowtok train tokenizer", "flowtok train flow", "PSNR", "top-5"):
        assert needed in card, needed
    lic = model / "licenses"
    assert (lic / "NOTICE.md").is_file() and (lic / "Apache-2.0.txt").is_file()


def test_default_tokenizer_reconstructs_real_emoji(model):
    from flowtok.data.imagefolder import load_image
    from flowtok.eval.recon import mean_psnr, reconstruct
    from flowtok.tokenizer.model import Tokenizer

    tok = Tokenizer.from_pretrained(model)
    images = np.stack([load_image(p, tok.cfg.image_size) for p in EXAMPLES])
    # held-out PSNR on the full val split is in the model card (>= 26 dB); these six include
    # three held-out emoji
    assert mean_psnr(reconstruct(tok, images), images) > 24.0


def test_generate_needs_no_model_flag(tmp_path):
    r = runner.invoke(app, ["generate", "a cat", "-o", str(tmp_path), "--json", "--seed", "0"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout[r.stdout.index("{"):])
    from PIL import Image

    img = Image.open(res["images"][0])
    assert img.size == (64, 64)
    assert np.asarray(img).std() > 5  # a picture, not a flat field


def test_a_cat_looks_most_like_the_cat_among_the_example_emoji(model):
    """"a cat" is not a training caption ("cat" is): the caption templates map it to the cat.
    Nearest in the tokenizer's latent space among the six shipped example images."""
    from flowtok.eval.emoji_eval import image_latents
    from flowtok.pipeline import FlowTokPipeline

    pipe = FlowTokPipeline.from_pretrained(model, device="cpu")
    made = image_latents(pipe, [np.asarray(pipe("a cat", seed=0)[0])])
    reals = image_latents(pipe, EXAMPLES)
    nearest = EXAMPLES[int(torch.cdist(made, reals).argmin())]
    assert nearest.name == "1f408_google.png", nearest.name


def test_caption_needs_no_model_flag():
    r = runner.invoke(app, ["caption", *map(str, EXAMPLES[:2]), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert out["errors"] == [] and len(out["captions"]) == 2
    assert all(isinstance(c["caption"], str) and c["caption"].strip() for c in out["captions"])


def test_a_transparent_png_is_captioned_like_the_same_emoji_on_white(model, tmp_path):
    """Emoji files are usually RGBA with black under the clear pixels; the shipped model saw
    them on white (tokenizer.background), so both files must get the same caption."""
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["tokenizer"]["background"] == [255, 255, 255]
    paths = []
    for i, src in enumerate(EXAMPLES):
        rgb = np.asarray(Image.open(src).convert("RGB"))
        clear = (rgb == 255).all(-1)
        rgba = np.concatenate([np.where(clear[..., None], 0, rgb),
                               np.where(clear, 0, 255)[..., None]], -1).astype(np.uint8)
        Image.fromarray(rgba, "RGBA").save(tmp_path / f"{i}.png")
        paths += [str(src), str(tmp_path / f"{i}.png")]
    r = runner.invoke(app, ["caption", *paths, "--json"])
    assert r.exit_code == 0, r.output
    caps = [c["caption"] for c in json.loads(r.stdout[r.stdout.index("{"):])["captions"]]
    assert caps[0::2] == caps[1::2]


@pytest.mark.slow
def test_generate_a_cat_from_a_fresh_process_is_quick(tmp_path):
    """The issue's bar is 10 s on the 2-core CPU including start-up; measured in the model card.
    The bound here is looser so a busy CI machine does not fail it, but a regression (say, a
    model rebuilt at every call) does."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    flowtok = Path(sys.executable).with_name("flowtok")
    t0 = time.perf_counter()
    subprocess.run([str(flowtok), "generate", "a cat", "-o", str(tmp_path)], check=True,
                   env=env, capture_output=True)
    assert time.perf_counter() - t0 < 30.0


def test_four_samples_of_a_cat_are_four_different_images_in_both_drawings(tmp_path):
    """Issue 24 item 5: -n 4 at the shipped settings gives four different pictures; the model
    has two styles (Noto, Twemoji) and image i takes style i mod 2 by its seed."""
    r = runner.invoke(app, ["generate", "a cat", "-n", "4", "-o", str(tmp_path), "--json"])
    assert r.exit_code == 0 and "temperature 0" not in r.output
    from PIL import Image

    paths = json.loads(r.stdout[r.stdout.index("{"):])["images"]
    images = [np.asarray(Image.open(p), dtype=np.float32) / 255 for p in paths]
    styles = [json.loads(x)["style"] for x in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert styles == ["google", "twitter", "google", "twitter"]
    mse = {(i, j): float(((images[i] - images[j]) ** 2).mean())
           for i in range(4) for j in range(i + 1, 4)}
    assert min(mse.values()) > 0  # no two identical
    # the two drawings differ far more than two samples of one drawing
    across = min(mse[(0, 1)], mse[(0, 3)], mse[(1, 2)], mse[(2, 3)])
    assert across > 3 * max(mse[(0, 2)], mse[(1, 3)])


def test_temperature_zero_repeats_the_image_and_says_so(tmp_path):
    r = runner.invoke(app, ["generate", "a cat", "-n", "3", "--temperature", "0", "-o",
                            str(tmp_path / "t0"), "--json"])
    assert r.exit_code == 0 and "one image per style (2)" in r.output
    a, b, c = json.loads(r.stdout[r.stdout.index("{"):])["images"]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(c)))  # both Noto
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    r = runner.invoke(app, ["generate", "a cat", "-n", "2", "--style", "google", "--temperature",
                            "0", "-o", str(tmp_path / "g0"), "--json"])
    assert r.exit_code == 0 and "the same image for every seed" in r.output
