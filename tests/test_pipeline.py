"""FlowTokPipeline and the generate / caption commands on a tiny random model folder."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from flowtok.config import apply_overrides, load_preset, to_dict
from flowtok.errors import CheckpointError
from flowtok.flow.model import TextImageFlow
from flowtok.pipeline import FlowTokPipeline
from flowtok.text.encoders import ByteTokenizer
from flowtok.tokenizer.model import Tokenizer
from flowtok_cli.app import app

runner = CliRunner()


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Untrained flow models are zero-initialised; give every weight a value so outputs move."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = apply_overrides(load_preset("tiny"), ["tokenizer.image_size=32", "tokenizer.patch_size=8"])
    torch.manual_seed(0)
    tok = Tokenizer(cfg.tokenizer)
    t2i = TextImageFlow(cfg, "t2i")
    i2t = TextImageFlow(cfg, "i2t", vocab_ids=torch.arange(ByteTokenizer(cfg.K).vocab_size))
    _randomise(t2i, 1)
    _randomise(i2t, 2)
    path = tmp_path_factory.mktemp("models") / "tiny"
    FlowTokPipeline(cfg, tok, t2i, i2t).save_pretrained(path, model_card="# tiny\n")
    return path


def test_folder_layout_is_config_plus_safetensors(model_dir):
    names = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    assert names == ["config.json", "i2t/model.safetensors", "model_card.md",
                     "t2i/model.safetensors", "tokenizer/config.json", "tokenizer/model.safetensors"]


def test_save_load_round_trip_gives_identical_images(model_dir, tmp_path):
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    a = pipe(["a red circle", "a cat"], num_inference_steps=3, seed=5)
    pipe.save_pretrained(tmp_path / "copy")
    b = FlowTokPipeline.from_pretrained(tmp_path / "copy", device="cpu")(
        ["a red circle", "a cat"], num_inference_steps=3, seed=5)
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_image_i_of_seed_s_does_not_depend_on_n_or_batch_size(model_dir):
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    four = pipe("a cat", num_inference_steps=3, seed=7, num_images_per_prompt=4, batch_size=4)
    two = pipe("a cat", num_inference_steps=3, seed=7, num_images_per_prompt=2, batch_size=1)
    for x, y in zip(four[:2], two):
        assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= 1
    assert not np.array_equal(np.asarray(four[0]), np.asarray(four[1]))  # seeds differ


def test_fp16_folder_loads_and_stays_close(model_dir, tmp_path):
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    pipe.save_pretrained(tmp_path / "half", dtype=torch.float16)
    half = FlowTokPipeline.from_pretrained(tmp_path / "half", device="cpu")
    size = sum(p.stat().st_size for p in (tmp_path / "half").rglob("*.safetensors"))
    full = sum(p.stat().st_size for p in model_dir.rglob("*.safetensors"))
    assert size < 0.6 * full
    a = np.asarray(pipe("a cat", num_inference_steps=3)[0], np.int16)
    b = np.asarray(half("a cat", num_inference_steps=3)[0], np.int16)
    assert np.abs(a - b).mean() < 3


def test_caption_returns_strings_for_arrays_paths_and_pil(model_dir, tmp_path):
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    img = Image.fromarray(np.zeros((40, 48, 3), np.uint8))
    img.save(tmp_path / "x.png")
    caps = pipe.caption([img, tmp_path / "x.png", np.zeros((32, 32, 3), np.uint8)], num_inference_steps=2)
    assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
    assert caps[0] == caps[1] == caps[2]  # the same black picture, three ways


def test_caption_inputs_composite_transparency_over_the_tokenizers_background(tmp_path):
    """A clear PNG with black under its alpha reads as the given background (white for the
    emoji model), as a PIL image and as a file; opaque pixels are kept."""
    from flowtok.pipeline import _as_uint8

    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    clear.putpixel((20, 20), (0, 0, 255, 255))
    clear.save(tmp_path / "clear.png")
    for image in (clear, tmp_path / "clear.png"):
        arr = _as_uint8(image, 40, (255, 255, 255))
        assert arr.shape == (40, 40, 3) and arr[0, 0].tolist() == [255, 255, 255]
        assert arr[20, 20].tolist() == [0, 0, 255]
        assert _as_uint8(image, 40, (0, 0, 0))[0, 0].tolist() == [0, 0, 0]


def test_a_direction_with_its_own_config_round_trips_and_must_share_the_encoder(tmp_path):
    """A deeper text -> image flow beside the image -> text one: t2i/config.json holds its
    config, the folder reloads to the same images, and a foreign text encoder is refused."""
    cfg = apply_overrides(load_preset("tiny"), ["tokenizer.image_size=32", "tokenizer.patch_size=8"])
    deep = apply_overrides(cfg, [f"flow.depth={cfg.flow.depth + 1}"])
    torch.manual_seed(0)
    tok = Tokenizer(cfg.tokenizer)
    t2i = TextImageFlow(deep, "t2i")
    i2t = TextImageFlow(cfg, "i2t", vocab_ids=torch.arange(ByteTokenizer(cfg.K).vocab_size))
    _randomise(t2i, 1)
    pipe = FlowTokPipeline(cfg, tok, t2i.eval(), i2t.eval())
    pipe.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "t2i" / "config.json").is_file()
    assert not (tmp_path / "m" / "i2t" / "config.json").exists()
    back = FlowTokPipeline.from_pretrained(tmp_path / "m", device="cpu")
    assert back.t2i.flow.depth == cfg.flow.depth + 1 and back.i2t.flow.depth == cfg.flow.depth
    a, b = (p("a red square", num_inference_steps=2)[0] for p in (pipe, back))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    back.config.flow.temperature = 0.0  # the pipeline's setting, though t2i has its own config
    x, y = (back("a red square", num_inference_steps=2, seed=s)[0] for s in (0, 5))
    assert np.array_equal(np.asarray(x), np.asarray(y))
    other = apply_overrides(deep, ["text.encoder=minilm", "text.feature_dim=384"])
    (tmp_path / "m" / "t2i" / "config.json").write_text(json.dumps(to_dict(other)))
    with pytest.raises(CheckpointError, match="text encoder"):
        FlowTokPipeline.from_pretrained(tmp_path / "m", device="cpu")
    with pytest.raises(CheckpointError, match="text encoder"):
        FlowTokPipeline(cfg, tok, TextImageFlow(other, "t2i"), i2t)


def test_missing_corrupted_and_pickled_checkpoints_are_refused(model_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    f = bad / "t2i" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted"):
        FlowTokPipeline.from_pretrained(bad)
    f.unlink()
    (bad / "t2i" / "model.pt").write_bytes(b"not really a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        FlowTokPipeline.from_pretrained(bad)
    with pytest.raises(CheckpointError, match="not a folder"):
        FlowTokPipeline.from_pretrained(tmp_path / "nothing")


def test_shape_mismatch_between_config_and_weights_is_refused(model_dir, tmp_path):
    import shutil

    bad = tmp_path / "mismatch"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["flow"]["width"] = 128
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match"):
        FlowTokPipeline.from_pretrained(bad)


def test_generate_cli_writes_pngs_with_metadata(model_dir, tmp_path):
    out = tmp_path / "gen"
    r = runner.invoke(app, ["generate", "a cat", "-n", "2", "--steps", "2", "--model", str(model_dir),
                            "-o", str(out), "--grid", "--seed", "3", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert len(result["images"]) == 2 and (out / "grid.png").is_file()
    meta = Image.open(result["images"][1]).text
    assert meta["flowtok:prompt"] == "a cat" and meta["flowtok:seed"] == "4"
    assert meta["flowtok:steps"] == "2" and meta["flowtok:model"] == "tiny"
    lines = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [x["text"] for x in lines] == ["a cat", "a cat"]
    mask = os.umask(0o022)
    os.umask(mask)
    for f in [*result["images"], out / "grid.png", out / "metadata.jsonl"]:  # not mkstemp's 0600
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o666 & ~mask, f


@pytest.mark.parametrize("args", [
    ["generate", ""], ["generate", "   "], ["generate", "a", "--steps", "0"],
    ["generate", "a", "-n", "0"], ["generate", "a", "--guidance", "0.5"],
    ["generate"], ["generate", "a", "--prompts", "p.txt"], ["generate", "a\x07b"],
])
def test_generate_usage_errors_exit_2_without_traceback(model_dir, args):
    r = runner.invoke(app, args + ["--model", str(model_dir)])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output


def test_generate_refuses_an_output_path_that_is_a_file(model_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = runner.invoke(app, ["generate", "a", "--model", str(model_dir), "-o", str(f)])
    assert r.exit_code == 2 and "is a file" in r.output


def test_prompts_file_with_invalid_utf8_is_a_usage_error(model_dir, tmp_path):
    p = tmp_path / "p.txt"
    p.write_bytes(b"a cat\n\xff\xfe bad\n")
    r = runner.invoke(app, ["generate", "--prompts", str(p), "--model", str(model_dir)])
    assert r.exit_code == 2 and "UTF-8" in r.output


def test_caption_cli_reports_unreadable_files_and_exits_1(model_dir, tmp_path):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    r = runner.invoke(app, ["caption", str(tmp_path / "ok.png"), str(tmp_path / "bad.png"),
                            "--model", str(model_dir), "--steps", "2", "--json"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert len(out["captions"]) == 1 and "bad.png" in out["errors"][0]


def test_missing_model_folder_is_a_runtime_error(tmp_path):
    r = runner.invoke(app, ["generate", "a cat", "--model", str(tmp_path / "none")])
    assert r.exit_code == 1 and "not a folder" in r.output


def test_saved_folders_get_the_umask_mode_not_the_private_temp_mode(model_dir, tmp_path):
    """Folders and files are written through mkdtemp/mkstemp (0700 / 0600) and renamed; a saved
    model must be readable like any file the user writes (a package ships it to other users)."""
    import os

    old = os.umask(0o022)
    try:
        FlowTokPipeline.from_pretrained(model_dir, device="cpu").save_pretrained(
            tmp_path / "m", dtype=torch.float16)
    finally:
        os.umask(old)
    paths = [tmp_path / "m", *(tmp_path / "m").rglob("*")]
    assert any(p.is_dir() for p in paths[1:]) and any(p.is_file() for p in paths)
    for p in paths:
        assert p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644), p
