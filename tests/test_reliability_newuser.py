"""What a new user hits first (issue 26): options this machine cannot honour, non-finite outputs,
`generate` keeping its work, `-o` never orphaning files, and a Python API that takes what people
pass. Every failure is one `error:` line (exit 1 runtime, 2 usage), never a traceback."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from flowtok.errors import ArgumentError, CheckpointError, NumericalError
from flowtok.pipeline import FlowTokPipeline
from flowtok_cli import generate_cmd
from flowtok_cli.app import app

runner = CliRunner()
HUGE_SEED = 2**70


# model_dir: tests/conftest.py (a tiny t2i + i2t model folder)


@pytest.fixture(scope="module")
def pipe(model_dir):
    return FlowTokPipeline.from_pretrained(model_dir, device="cpu")


def _errors(res) -> list[str]:
    """The CLI's error contract: no traceback, and the `error:` lines."""
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors, res.output
    return errors


def _generate(model_dir: Path, out: Path, *args: str):
    return runner.invoke(app, ["generate", "--model", str(model_dir), "-o", str(out),
                               "--steps", "2", "--device", "cpu", *args])


def _poison(src: Path, dst: Path, part: str) -> str:
    """Copy a model folder and put a NaN into the first float tensor of ``part``; its name."""
    shutil.copytree(src, dst)
    f = dst / part / "model.safetensors"
    state = load_file(f)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, f)
    return name


# ----------------------------------------------------------------------------- devices, seeds


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("command", ["generate", "caption"])
def test_device_cuda_without_cuda_is_a_usage_error_naming_the_option(model_dir, tmp_path, command):
    img = tmp_path / "a.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(img)
    args = ["a cat", "-o", str(tmp_path / "out")] if command == "generate" else [str(img)]
    res = runner.invoke(app, [command, *args, "--model", str(model_dir), "--device", "cuda"])
    assert res.exit_code == 2
    assert _errors(res) == [("error: --device cuda: CUDA is not available here (this torch is a "
                            "CPU-only build); use --device cpu")]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "banana"])
def test_a_device_name_torch_does_not_know_is_a_usage_error(model_dir, tmp_path, device):
    res = _generate(model_dir, tmp_path / "out", "a cat", "--device", device)
    assert res.exit_code == 2
    [line] = _errors(res)
    assert line.startswith(f"error: --device {device}: ") and "use cpu" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed, n", [(HUGE_SEED, 1), (2**64 - 1, 2), (-(2**63) - 1, 1)])
def test_a_seed_outside_torchs_range_is_a_usage_error(model_dir, tmp_path, seed, n):
    res = _generate(model_dir, tmp_path / "out", "a cat", "--seed", str(seed), "-n", str(n))
    assert res.exit_code == 2
    assert _errors(res)[0].startswith(f"error: --seed {seed}: out of range")
    assert not (tmp_path / "out").exists()


def test_the_largest_seed_torch_takes_draws(model_dir, tmp_path):
    res = _generate(model_dir, tmp_path / "out", "a cat", "--seed", str(2**64 - 1))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / f"00000_a-cat_s{2**64 - 1}.png").is_file()


# ----------------------------------------------------------------------------- non-finite outputs


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_non_finite_temperature_is_a_usage_error(model_dir, tmp_path, value):
    res = _generate(model_dir, tmp_path / "out", "a cat", "--temperature", value)
    assert res.exit_code == 2
    assert _errors(res)[0].startswith(f"error: --temperature {value}: must be a finite number")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("part, command", [("t2i", "generate"), ("tokenizer", "generate"),
                                           ("tokenizer", "caption"), ("i2t", "caption")])
def test_nan_weights_are_refused_naming_the_file_and_tensor(model_dir, tmp_path, part, command):
    bad = tmp_path / "bad"
    name = _poison(model_dir, bad, part)
    img = tmp_path / "a.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(img)
    args = ["a cat", "-o", str(tmp_path / "out")] if command == "generate" else [str(img)]
    res = runner.invoke(app, [command, *args, "--model", str(bad), "--device", "cpu"])
    assert res.exit_code == 1
    assert _errors(res) == [(f"error: {bad / part / 'model.safetensors'}: tensor {name} contains "
                            "NaN; the weights are damaged (a diverged training run?); re-export "
                            "or retrain the model")]
    assert not list(tmp_path.glob("out*"))  # a failed load leaves no empty -o folder


def test_nan_that_appears_while_sampling_is_an_error_naming_the_weights(model_dir):
    """Weights changed in Python after loading (the load-time check cannot see them)."""
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    with torch.no_grad():
        for p in pipe.t2i.flow.parameters():
            p.fill_(float("nan"))
    with pytest.raises(NumericalError, match="text-to-image flow produced NaN/Inf because the "
                                             "t2i weights do \\(tensor flow\\."):
        pipe("a cat", num_inference_steps=2)
    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    with torch.no_grad():
        for p in pipe.tokenizer.encoder.parameters():
            p.fill_(float("nan"))
    with pytest.raises(NumericalError, match="tokenizer's encoder produced NaN/Inf because the "
                                             "tokenizer weights do \\(tensor encoder\\."):
        pipe.caption(np.zeros((16, 16, 3), np.uint8))


def test_an_overflow_with_finite_weights_names_the_settings(pipe):
    pipe.config.flow.temperature = 1e38  # finite, but the noise overflows to inf in float32
    try:
        with pytest.raises(NumericalError, match="produced NaN/Inf with guidance 2.0, "
                                                 "temperature 1e\\+38"):
            pipe("a cat", num_inference_steps=2)
    finally:
        pipe.config.flow.temperature = 1.0


def test_a_failed_model_load_leaves_no_output_folder(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    res = runner.invoke(app, ["generate", "a cat", "--model", str(tmp_path / "missing"),
                              "-o", str(out)])
    assert res.exit_code == 1
    _errors(res)
    assert not (tmp_path / "a").exists()


def test_a_failed_run_keeps_an_output_folder_that_already_existed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    res = runner.invoke(app, ["generate", "a cat", "--model", str(tmp_path / "missing"),
                              "-o", str(out)])
    assert res.exit_code == 1 and out.is_dir()


# ----------------------------------------------------------------------------- generate keeps work


def _metadata(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def _interrupt_after(monkeypatch, k: int) -> None:
    """Ctrl-C right after the k-th image is drawn."""
    real = FlowTokPipeline.iter_images

    def iter_images(self, *a, **kw):
        for i, item in enumerate(real(self, *a, **kw)):
            if i == k:
                raise KeyboardInterrupt
            yield item
    monkeypatch.setattr(FlowTokPipeline, "iter_images", iter_images)


def test_ctrl_c_keeps_finished_images_and_a_rerun_draws_only_the_rest(model_dir, tmp_path,
                                                                     monkeypatch):
    out = tmp_path / "out"
    _interrupt_after(monkeypatch, 3)
    res = _generate(model_dir, out, "a cat", "-n", "5", "--batch-size", "2")
    assert res.exit_code == 130
    assert "interrupted; 3 new image(s)" in res.stderr
    kept = sorted(p.name for p in out.glob("*.png"))
    assert kept == ["00000_a-cat_s0.png", "00001_a-cat_s1.png", "00002_a-cat_s2.png"]
    assert [r["file_name"] for r in _metadata(out)] == kept
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    monkeypatch.undo()
    res = _generate(model_dir, out, "a cat", "-n", "5", "--batch-size", "2", "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert (result["written"], result["skipped"]) == (2, 3)
    assert "3 of 5 images are already in" in res.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before  # untouched
    assert [r["file_name"] for r in _metadata(out)] == [f"{i:05d}_a-cat_s{i}.png" for i in range(5)]


def test_the_rerun_images_equal_those_of_an_uninterrupted_run(model_dir, tmp_path, monkeypatch):
    _interrupt_after(monkeypatch, 1)
    _generate(model_dir, tmp_path / "a", "a cat", "-n", "3")
    monkeypatch.undo()
    _generate(model_dir, tmp_path / "a", "a cat", "-n", "3")
    _generate(model_dir, tmp_path / "b", "a cat", "-n", "3")
    for p in (tmp_path / "b").glob("*.png"):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "a" / p.name)))


def test_overwrite_redoes_existing_images(model_dir, tmp_path):
    out = tmp_path / "out"
    assert _generate(model_dir, out, "a cat", "-n", "2").exit_code == 0
    res = _generate(model_dir, out, "a cat", "-n", "2", "--overwrite", "--json")
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["written"], json.loads(res.stdout)["skipped"]) == (2, 0)
    assert len(_metadata(out)) == 2  # replaced, not listed twice


def test_reusing_the_output_folder_lists_every_image_in_it(model_dir, tmp_path):
    out = tmp_path / "out"
    assert _generate(model_dir, out, "a cat", "-n", "2").exit_code == 0
    assert _generate(model_dir, out, "a dog").exit_code == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["00000_a-cat_s0.png", "00000_a-dog_s0.png", "00001_a-cat_s1.png"]
    rows = _metadata(out)
    assert sorted(r["file_name"] for r in rows) == pngs
    assert {r["file_name"]: r["text"] for r in rows}["00000_a-dog_s0.png"] == "a dog"


def test_a_same_named_image_of_other_settings_is_not_overwritten_silently(model_dir, tmp_path):
    out = tmp_path / "out"
    assert _generate(model_dir, out, "a cat").exit_code == 0
    png = out / "00000_a-cat_s0.png"
    before = png.read_bytes()
    res = _generate(model_dir, out, "a cat", "--guidance", "3")
    assert res.exit_code == 2
    assert _errors(res) == [(f"error: {png}: exists from another run (its guidance differ); pass "
                            "--overwrite to replace it, or another -o folder")]
    assert png.read_bytes() == before
    assert _generate(model_dir, out, "a cat", "--guidance", "3", "--overwrite").exit_code == 0
    assert png.read_bytes() != before and _metadata(out)[0]["guidance"] == 3.0


def test_an_image_whose_metadata_line_was_lost_is_listed_again(model_dir, tmp_path):
    """A kill between writing a PNG and its line (or an older flowtok's overwritten list)."""
    out = tmp_path / "out"
    assert _generate(model_dir, out, "a cat", "-n", "2").exit_code == 0
    (out / "metadata.jsonl").write_text(json.dumps(_metadata(out)[0]) + "\n{\"file_na")
    res = _generate(model_dir, out, "a cat", "-n", "2", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["skipped"] == 2
    assert [r["file_name"] for r in _metadata(out)] == ["00000_a-cat_s0.png", "00001_a-cat_s1.png"]
    assert _metadata(out)[1]["seed"] == 1 and _metadata(out)[1]["model"] == "tiny"


def test_a_png_not_made_by_generate_is_reported_not_listed(model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (4, 4)).save(out / "holiday.png")
    res = _generate(model_dir, out, "a cat")
    assert res.exit_code == 0
    assert f"warning: {out / 'holiday.png'}: not an image from flowtok generate" in res.stderr
    assert [r["file_name"] for r in _metadata(out)] == ["00000_a-cat_s0.png"]


def test_several_images_at_temperature_zero_warn_that_they_are_identical(model_dir, tmp_path):
    res = _generate(model_dir, tmp_path / "out", "a cat", "-n", "2", "--temperature", "0")
    assert res.exit_code == 0
    assert "temperature 0 draws the same image for every seed" in res.stderr
    res = _generate(model_dir, tmp_path / "out1", "a cat", "--temperature", "0")
    assert "temperature 0" not in res.stderr


def test_steps_above_the_bound_are_a_usage_error(model_dir, tmp_path):
    res = _generate(model_dir, tmp_path / "out", "a cat", "--steps", "100000")
    assert res.exit_code == 2
    assert _errors(res) == [(f"error: --steps 100000: at most {generate_cmd.MAX_STEPS}; images "
                            "stop changing after 20-50 Euler steps")]


# ----------------------------------------------------------------------------- Python API


def test_import_flowtok_is_cheap_and_exports_the_api_lazily():
    code = ("import sys, flowtok; assert 'torch' not in sys.modules, 'torch imported eagerly'; "
            "from flowtok import FlowTokPipeline, Tokenizer; assert 'torch' in sys.modules; "
            "print(FlowTokPipeline.__module__, Tokenizer.__module__)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["flowtok.pipeline", "flowtok.tokenizer.model"]


def test_an_unknown_name_in_flowtok_is_an_attribute_error():
    import flowtok

    with pytest.raises(AttributeError, match="has no attribute 'Pipeline'"):
        flowtok.Pipeline  # noqa: B018


def test_caption_takes_a_path_pil_image_array_tensor_or_lists_of_them(pipe, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    one = pipe.caption(rgb, num_inference_steps=2)
    assert len(one) == 1 and isinstance(one[0], str)
    as_float = torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1
    for image in (str(tmp_path / "a.png"), tmp_path / "a.png", Image.fromarray(rgb),
                  torch.from_numpy(rgb), as_float):
        assert pipe.caption(image, num_inference_steps=2) == one, type(image)
    assert pipe.caption([rgb, Image.fromarray(rgb)], num_inference_steps=2) == one * 2
    assert pipe.caption(np.stack([rgb, rgb, rgb]), num_inference_steps=2) == one * 3
    assert pipe.caption([], num_inference_steps=2) == []


@pytest.mark.parametrize("bad, message", [
    (42, "caption\\(\\) got a int; pass a path, a PIL image"),
    ({"a": 1}, "caption\\(\\) got a dict"),
    ([b"bytes"], "caption\\(\\) got a list holding a bytes"),
    (np.zeros((16, 16, 3), np.float32), "array images must be uint8 \\(H, W, 3\\)"),
    (np.zeros((16, 16), np.uint8), "must be \\(H, W, 3\\) or a \\(B, H, W, 3\\) batch"),
    (np.zeros((2, 16, 16, 3, 1), np.uint8), "must be \\(H, W, 3\\) or a \\(B, H, W, 3\\) batch"),
])
def test_caption_rejects_other_inputs_with_a_value_error(pipe, bad, message):
    with pytest.raises(ValueError, match=message):
        pipe.caption(bad, num_inference_steps=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 0}, "num_inference_steps must be an integer of at least 1, got 0"),
    ({"num_inference_steps": 2.5}, "num_inference_steps must be an integer"),
    ({"guidance_scale": -5.0}, "guidance_scale must be a finite number of at least 0"),
    ({"guidance_scale": math.nan}, "guidance_scale must be a finite number .* got nan"),
    ({"guidance_scale": math.inf}, "guidance_scale must be a finite number"),
    ({"batch_size": 0}, "batch_size must be an integer of at least 1, got 0"),
    ({"num_images_per_prompt": 0}, "num_images_per_prompt must be an integer of at least 1"),
    ({"seed": HUGE_SEED}, f"seed {HUGE_SEED} is out of range"),
    ({"seed": 1.5}, "seed must be an integer"),
])
def test_bad_generate_arguments_raise_value_errors_saying_what_was_expected(pipe, kwargs, message):
    with pytest.raises(ArgumentError, match=message) as info:
        pipe("a cat", **kwargs)
    assert isinstance(info.value, ValueError)


def test_bad_caption_arguments_raise_value_errors(pipe):
    img = np.zeros((16, 16, 3), np.uint8)
    for kwargs in ({"num_inference_steps": 0}, {"guidance_scale": math.nan}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            pipe.caption(img, **kwargs)


def test_a_device_the_machine_lacks_is_a_value_error_in_python(model_dir):
    with pytest.raises(ValueError, match="--device tpu: not a device name"):
        FlowTokPipeline.from_pretrained(model_dir, device="tpu")


# ----------------------------------------------------------------------------- model folders


def test_a_tokenizer_folder_given_as_the_model_says_so(model_dir):
    with pytest.raises(CheckpointError, match=f"{model_dir / 'tokenizer'}: is a tokenizer folder, "
                                              f"not a model folder; pass the model folder that "
                                              f"holds it \\({model_dir}\\)"):
        FlowTokPipeline.from_pretrained(model_dir / "tokenizer")


def test_a_wrong_shape_names_the_tensor_and_both_shapes(model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    f = bad / "t2i" / "model.safetensors"
    state = load_file(f)
    name = next(k for k, v in state.items() if v.ndim == 2)
    shape = tuple(state[name].shape)
    state[name] = torch.zeros(shape[0] + 1, shape[1])
    save_file(state, f)
    with pytest.raises(CheckpointError) as info:
        FlowTokPipeline.from_pretrained(bad, device="cpu")
    assert str(info.value) == (f"{f}: does not match config.json ({bad / 'config.json'}): tensor "
                               f"{name} has shape {(shape[0] + 1, shape[1])}, expected {shape}; the "
                               "weights and config come from different models")


def test_a_missing_and_an_extra_tensor_are_named(model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    f = bad / "t2i" / "model.safetensors"
    state = load_file(f)
    name = min(state)
    shape = tuple(state.pop(name).shape)
    save_file(state, f)
    with pytest.raises(CheckpointError, match=re.escape(f"tensor {name} missing (expected shape "
                                                        f"{shape})")):
        FlowTokPipeline.from_pretrained(bad, device="cpu")
    state[name] = torch.zeros(shape)
    state["extra.weight"] = torch.zeros(3, 2)
    save_file(state, f)
    with pytest.raises(CheckpointError, match="unexpected tensor extra.weight \\(shape \\(3, 2\\)\\)"):
        FlowTokPipeline.from_pretrained(bad, device="cpu")


# ----------------------------------------------------------------------------- messages


def test_a_bad_value_in_a_model_config_names_config_json_and_the_field(model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["flow"]["steps"] = -3
    (bad / "config.json").write_text(json.dumps(cfg))
    res = _generate(bad, tmp_path / "out", "a cat")
    assert res.exit_code == 1
    assert _errors(res) == [(f"error: {bad / 'config.json'}: flow.steps is -3; it must be a finite "
                            "number of at least 1")]


def test_caption_of_a_folder_says_it_is_a_folder(model_dir, tmp_path):
    res = runner.invoke(app, ["caption", str(tmp_path), "--model", str(model_dir)])
    assert res.exit_code == 1
    assert _errors(res) == [(f"error: {tmp_path}: is a folder; pass image files, e.g. "
                            f"{tmp_path}/*.png")]


def test_caption_of_a_symlink_loop_or_a_broken_link_says_so(model_dir, tmp_path):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    (tmp_path / "c.png").symlink_to(tmp_path / "gone.png")
    res = runner.invoke(app, ["caption", str(tmp_path / "a.png"), str(tmp_path / "c.png"),
                              "--model", str(model_dir)])
    assert res.exit_code == 1
    assert _errors(res) == [
        (f"error: {tmp_path / 'a.png'}: a symlink loop (the link leads back to itself); fix or "
        "remove the link"),
        (f"error: {tmp_path / 'c.png'}: a broken symlink (its target {tmp_path / 'gone.png'} does "
        "not exist)")]


def test_prompts_that_is_a_folder_says_a_text_file_is_expected(model_dir, tmp_path):
    res = runner.invoke(app, ["generate", "--prompts", str(tmp_path), "--model", str(model_dir),
                              "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert _errors(res) == [(f"error: {tmp_path}: is a folder; --prompts takes a text file with "
                            "one prompt per line")]


@pytest.mark.parametrize("args, code, message", [
    (["generate", "a cat", "--device", "tpu", "-o", "OUT"], 2, "--device tpu: not a device name"),
    (["generate", "a cat", "--model", "MISSING", "-o", "OUT"], 1, "MISSING: not a folder"),
    (["caption", "MISSING.png"], 1, "1 of 1 image(s) could not be read"),
    # parse errors: a bad value, an unknown option, a missing argument, in a nested command too
    (["generate", "a cat", "--steps", "abc", "-o", "OUT"], 2, "Invalid value for '--steps'"),
    (["generate", "a cat", "--bogus", "-o", "OUT"], 2, "No such option: --bogus"),
    (["eval", "shapes"], 2, "Missing argument"),
    (["train", "flow", "--bogus"], 2, "No such option: --bogus"),
])
def test_with_json_an_error_is_a_json_object_on_stderr(model_dir, tmp_path, args, code, message):
    args = [str(tmp_path / a) if a.startswith(("MISSING", "OUT")) else a for a in args]
    model = [] if "--model" in args or args[0] in ("eval", "train") else ["--model", str(model_dir)]
    res = runner.invoke(app, [*args, *model, "--json"])
    assert res.exit_code == code
    assert "Traceback" not in res.output
    error = json.loads(res.stderr.strip().splitlines()[-1])
    assert error["exit_code"] == code and message in error["error"]
    assert not any(line.startswith("error:") for line in res.stderr.splitlines())


def test_without_json_the_same_error_stays_a_text_line(model_dir, tmp_path):
    res = _generate(model_dir, tmp_path / "out", "a cat", "--device", "tpu")
    assert _errors(res)[0].startswith("error: --device tpu")
    res = _generate(model_dir, tmp_path / "out", "a cat", "--steps", "abc")
    assert res.exit_code == 2 and "Invalid value for '--steps'" in res.stderr
    assert not res.stderr.lstrip().startswith("{")


def test_tokenize_and_caption_read_one_list_of_formats_and_report_skipped_files(tmp_path):
    from flowtok.data.imagefolder import IMAGE_EXTENSIONS, image_formats
    from flowtok_cli.caption_cmd import IMAGE_FORMATS

    assert IMAGE_FORMATS == image_formats()
    assert {".tif", ".tiff"} <= set(IMAGE_EXTENSIONS)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(imgs / "a.png")
    Image.fromarray(rgb).save(imgs / "b.tif")
    (imgs / "b.txt").write_text("a caption")  # a caption file is expected, not reported
    (imgs / "notes.psd").write_bytes(b"8BPS")
    res = runner.invoke(app, ["tokenize", str(imgs), "-o", str(tmp_path / "lat"), "--json",
                              "--device", "cpu"])  # also: the shipped model's tokenizer by default
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert (result["latents"], result["skipped_files"]) == (2, 1)
    assert (f"warning: skipped 1 file(s) that are not {image_formats()} images: notes.psd"
            in res.stderr)
    from flowtok.pipeline import default_model_path

    shipped = json.loads((default_model_path() / "tokenizer" / "config.json").read_text())
    tok = shipped.get("tokenizer", shipped)
    assert (result["K"], result["C"]) == (tok["num_latent_tokens"], tok["token_channels"])


# ----------------------------------------------------------------------------- defaults and help


def _help(*command: str) -> str:
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "100"}, terminal_width=100)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_help_keeps_square_brackets_and_shows_no_type_beside_flags():
    text = re.sub(r"[\s│]+", " ", _help("bench", "sample"))  # undo the table's wrapping
    assert "(needs matplotlib: pip install matplotlib)" in text
    for line in _help("generate").splitlines():
        if "--grid" in line or "--overwrite" in line or "--json" in line:
            assert "<bool>" not in line, line


def test_reflow_joins_prose_lines_and_keeps_examples():
    from flowtok_cli.app import reflow

    doc = """First line.

    A paragraph written
    over two lines, and flowtok[plot].

    Examples:
      flowtok a
      flowtok b
    """
    assert reflow(doc) == ("First line.\n\nA paragraph written over two lines, and "
                           "flowtok\\[plot].\n\nExamples:\n  flowtok a\n  flowtok b")


@pytest.mark.parametrize("command", [("tokenize",), ("bench", "kernels"), ("train", "flow"),
                                     ("eval", "shapes"), ("data", "emoji")])
def test_help_prose_wraps_to_the_terminal_not_to_the_docstring(command):
    """At 100 columns no prose line of the description stops far short of the edge before a
    line that continues its sentence (the ragged right edge of hard docstring breaks)."""
    text = _help(*command)
    intro = text.split("╭")[0].split("Examples:")[0]
    lines = [line.rstrip() for line in intro.splitlines()]
    for a, b in itertools.pairwise(lines):
        if a.strip() and b.strip() and not b.startswith("   "):
            assert len(a) > 100 - 25, (a, b)


def test_bench_kernels_groups_rows_that_cannot_run_into_one_line_per_cause(monkeypatch):

    result = {
        "device": {"name": "cpu", "type": "cpu"}, "dtype": "fp32",
        "shapes": {"attention": "2x2x77x72", "rows": "154x256"},
        "ceilings": {"matmul": {"tflops": 0.1}, "copy": {"gbps": 10.0}},
        "timing": {"method": "perf_counter", "repeats": 5}, "notes": [],
        "rows": [{"op": "attention", "mode": "fwd", "provider": "eager", "status": "ok",
                  "median_ms": 1.0, "tflops": 0.01, "gbps": None, "pct_of_ceiling": 10.0,
                  "vs_fastest_sdpa": 1.0}]
        + [{"op": op, "mode": "fwd", "provider": p, "status": "unavailable",
            "reason": "needs a CUDA device"} for op in ("attention", "euler_cfg_step")
           for p in ("triton", "cuda")],
    }
    monkeypatch.setattr("flowtok.bench.kernels.run_kernel_bench", lambda opts: result)
    res = runner.invoke(app, ["bench", "kernels", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if "unavailable" in line]
    assert lines == [("unavailable (needs a CUDA device): 4 row(s): attention fwd triton, attention "
                     "fwd cuda, euler_cfg_step fwd triton, euler_cfg_step fwd cuda")]


def test_doctor_checks_the_shipped_model_and_times_it():
    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["default_model"]
    assert m["ok"] is True and m["steps"] == 4
    assert all(m[k] >= 0 for k in ("load_s", "generate_s", "caption_s"))
    assert isinstance(m["caption"], str) and m["caption"]


def test_doctor_reads_versions_without_importing_the_packages():
    """Importing transformers alone took about a second of doctor's 7.7 s: versions come from
    the package metadata, and the shipped model's text encoder loads without transformers."""
    code = ("import sys, json; from flowtok_cli.doctor_cmd import collect, check_default_model; "
            "info = collect(); m = check_default_model(); "
            "print(json.dumps([info['transformers'], m['ok'], 'transformers' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    version, ok, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert ok is True and imported is False
    assert version is None or version[0].isdigit() or version == "installed"


def test_a_nonfinite_weight_is_found_by_the_sum_check_whatever_its_neighbours():
    from flowtok.pipeline import nonfinite_weight

    lin = torch.nn.Linear(64, 64)
    assert nonfinite_weight(lin) is None
    for bad, kind in ((float("nan"), "NaN"), (float("inf"), "Inf"), (float("-inf"), "Inf")):
        with torch.no_grad():
            lin.weight.fill_(1.0)
            lin.weight[3, 5] = bad
        assert nonfinite_weight(lin) == ("weight", kind)
    with torch.no_grad():  # +inf and -inf in one tensor sum to NaN: still named, as Inf
        lin.weight.fill_(1.0)
        lin.weight[0, 0], lin.weight[1, 1] = float("inf"), float("-inf")
    assert nonfinite_weight(lin) == ("weight", "Inf")


def test_doctor_reports_a_broken_shipped_model_and_exits_1(monkeypatch, tmp_path):
    monkeypatch.setattr("flowtok.pipeline.default_model_path", lambda: tmp_path)
    res = runner.invoke(app, ["doctor"])
    assert res.exit_code == 1
    assert f"shipped model: FAILED ({tmp_path}: not a flowtok model folder" in res.stdout
