"""Bad input ends well: every damaged, odd or hostile image, prompt, argument and checkpoint
either converts as documented or gives a one-line error that names it (exit 1 runtime, 2 usage),
never a traceback. README "When things go wrong" lists the same behaviour."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from flowtok.config import apply_overrides, load_preset
from flowtok.data.imagefolder import MAX_PIXELS, load_folder, load_image, scan_folder
from flowtok.data.shards import read_shards
from flowtok.errors import CheckpointError, DataError
from flowtok.flow.model import TextImageFlow
from flowtok.pipeline import FlowTokPipeline
from flowtok.tokenizer.model import Tokenizer
from flowtok_cli.app import app

runner = CliRunner()
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tok") / "model"
    Tokenizer(load_preset("tiny").tokenizer).save_pretrained(path)
    return path


# model_dir: tests/conftest.py (a tiny t2i + i2t model folder)


def _one_line_error(output: str) -> None:
    """The CLI's error contract: an `error: ...` line (with --json: a JSON object holding the
    error and exit code), and no traceback."""
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")
              or (line.startswith('{"error": ') and "exit_code" in json.loads(line))]
    assert errors, output


# ----------------------------------------------------------------------------- images


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def _claim_size(png: bytes, w: int, h: int) -> bytes:
    """The same PNG with an IHDR that claims w x h pixels (a decompression bomb's header)."""
    ihdr = png[12:16] + struct.pack(">II", w, h) + png[24:29]
    return png[:16] + struct.pack(">II", w, h) + png[24:29] + struct.pack(
        ">I", zlib.crc32(ihdr) & 0xFFFFFFFF) + png[33:]


def _exif_png(orientation: int) -> tuple[bytes, np.ndarray]:
    """An 8x8 PNG with four coloured quadrants + EXIF orientation, and how it must display."""
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:4, :4], arr[:4, 4:], arr[4:, :4], arr[4:, 4:] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (
        255, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    shown = {3: np.rot90(arr, 2), 6: np.rot90(arr, -1), 8: np.rot90(arr, 1)}[orientation]
    return _png_bytes(Image.fromarray(arr), exif=exif), shown


def _jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _la() -> bytes:
    arr = np.zeros((8, 8, 2), np.uint8)
    arr[..., 0], arr[:, :4, 1], arr[:, 4:, 1] = 200, 255, 0  # left opaque grey, right clear
    return _png_bytes(Image.fromarray(arr, "LA"))


def _palette_with_transparency() -> bytes:
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.paste(0, (0, 0, 4, 8))
    return _png_bytes(im, transparency=0)


def _deep16() -> bytes:
    arr = np.array([[0, 0, 32896, 32896, 65535, 65535, 200, 200]] * 8, np.uint16)
    return _png_bytes(Image.fromarray(arr))  # mode I;16


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in ((0, 0, 255), (255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return buf.getvalue()


def _grey_ramp() -> np.ndarray:
    return (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)  # 0, 4, ..., 252


def _rgba() -> bytes:
    """Top half opaque, bottom left half transparent (alpha 128), bottom right clear."""
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., :3] = (200, 100, 50)
    arr[:4, :, 3], arr[4:, :4, 3], arr[4:, 4:, 3] = 255, 128, 0
    return _png_bytes(Image.fromarray(arr, "RGBA"))


def _rgba_over_black(a: np.ndarray) -> bool:
    half = np.round(np.array([200, 100, 50]) * 128 / 255)  # (100, 50, 25)
    return bool((a[:4] == (200, 100, 50)).all() and (np.abs(a[4:, :4] - half) <= 1).all()
                and (a[4:, 4:] == 0).all())


def _cmyk_jpeg() -> bytes:
    """A CMYK JPEG (print workflows): left half pure red (0, 255, 255, 0), right half cyan."""
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[:, :4], arr[:, 4:] = (0, 255, 255, 0), (255, 0, 0, 0)
    return _jpeg_bytes(Image.fromarray(arr, "CMYK"))


def _cmyk_colours(a: np.ndarray) -> bool:
    """The colours a print workflow means (red, cyan), and exactly what PIL's own CMYK -> RGB
    conversion of the decoded file gives."""
    pil = np.asarray(Image.open(io.BytesIO(_cmyk_jpeg())).convert("RGB"))
    a16 = a.astype(np.int16)
    return bool((a == pil).all() and (np.abs(a16[:, :3] - (255, 0, 0)) <= 16).all()
                and (np.abs(a16[:, 5:] - (0, 255, 255)) <= 16).all())


def _checker() -> np.ndarray:
    return (np.indices((8, 8)).sum(0) % 2).astype(bool)


def _bilevel() -> bytes:
    im = Image.fromarray(_checker())
    assert im.mode == "1"
    return _png_bytes(im)  # a 1-bit PNG


def _corrupt_idat() -> bytes:
    png = bytearray(_png_bytes(_noise(32, 32)))
    start = png.index(b"IDAT") + 4
    png[start + 10: start + 60] = bytes(50)  # zlib stream damaged, CRC now wrong
    return bytes(png)


# name -> (file name, bytes, expected): expected is a callable check of the (8, 8, 3) array, or
# a regex the one-line DataError must match (it always names the file too).
IMAGE_CASES = {
    "zero_bytes": ("empty.png", lambda: b"", "empty file"),
    "truncated_png": ("cut.png", lambda: _png_bytes(_noise(32, 32))[:300], "cannot read image"),
    "truncated_jpeg": ("cut.jpg", lambda: _jpeg_bytes(_noise(64, 64))[:400], "(?i)truncated"),
    "corrupted_pixel_data": ("bad_idat.png", _corrupt_idat, "cannot read image"),
    "text_file_named_png": ("notes.png", lambda: b"hello, I am text\n", "not an image"),
    "html_named_jpg": ("page.jpg", lambda: b"<html><body>404</body></html>", "not an image"),
    "png_named_jpg": ("really_png.jpg", lambda: _png_bytes(Image.new("RGB", (8, 8), (9, 99, 199))),
                      lambda a: a.reshape(-1, 3).tolist() == [[9, 99, 199]] * 64),
    "jpeg_named_png": ("really_jpeg.png", lambda: _jpeg_bytes(Image.new("RGB", (8, 8), (250, 0, 0))),
                       lambda a: a[..., 0].min() > 240 and a[..., 1:].max() < 15),
    "grey_L": ("grey.png", lambda: _png_bytes(Image.fromarray(_grey_ramp(), "L")),
               lambda a: (a == _grey_ramp()[..., None]).all()),
    "rgba_alpha_over_black": ("rgba.png", _rgba, _rgba_over_black),
    "cmyk_jpeg": ("cmyk.jpg", _cmyk_jpeg, _cmyk_colours),
    "bilevel_1_bit": ("bw.png", _bilevel,
                      lambda a: (a == np.where(_checker(), 255, 0)[..., None]).all()),
    "grey_alpha_LA": ("la.png", _la, lambda a: (a[:, :4] == 200).all() and (a[:, 4:] == 0).all()),
    "palette_transparency": ("pal.png", _palette_with_transparency,
                             lambda a: (a[:, :4] == 0).all() and (a[:, 4:] == (10, 200, 30)).all()),
    "16_bit_grey_scaled": ("deep.png", _deep16,
                           lambda a: a[0, ::2, 0].tolist() == [0, 128, 255, 1]),
    "exif_rotate_180": ("r3.png", lambda: _exif_png(3)[0], lambda a: (a == _exif_png(3)[1]).all()),
    "exif_rotate_90_cw": ("r6.png", lambda: _exif_png(6)[0], lambda a: (a == _exif_png(6)[1]).all()),
    "exif_rotate_90_ccw": ("r8.png", lambda: _exif_png(8)[0],
                           lambda a: (a == _exif_png(8)[1]).all()),
    "one_pixel": ("dot.png", lambda: _png_bytes(Image.new("RGB", (1, 1), (1, 2, 3))),
                  lambda a: (a == (1, 2, 3)).all()),
    "smaller_than_a_patch": ("tiny.png", lambda: _png_bytes(Image.new("RGB", (3, 2), (7, 7, 7))),
                             lambda a: (a == 7).all()),
    "extreme_aspect_strip": ("strip.png", lambda: _png_bytes(Image.new("RGB", (4000, 2), (5, 6, 7))),
                             lambda a: (a == (5, 6, 7)).all()),
    "animated_gif_first_frame": ("anim.gif", _animated_gif,
                                 lambda a: a[..., 2].min() > 200 and a[..., :2].max() < 40),
    "bomb_over_pil_limit": ("bomb.png", lambda: _claim_size(_png_bytes(_noise(8, 8)), 100_000,
                                                              100_000), "decompression-bomb"),
    "bomb_over_our_limit": ("big.png", lambda: _claim_size(_png_bytes(_noise(8, 8)), 9000, 9000),
                            "9000x9000 pixels.*decompression-bomb"),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_each_kind_of_image_converts_as_documented_or_fails_naming_the_file(tmp_path, case):
    name, make, expected = IMAGE_CASES[case]
    path = tmp_path / name
    path.write_bytes(make())
    if callable(expected):
        arr = load_image(path, 8)
        assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8
        assert expected(arr), arr[..., 0]
    else:
        with pytest.raises(DataError, match=expected) as info:
            load_image(path, 8)
        msg = str(info.value)
        assert msg.startswith(str(path)) and "\n" not in msg


def test_our_bomb_limit_is_below_pils_so_our_message_comes_first():
    assert MAX_PIXELS < Image.MAX_IMAGE_PIXELS


def test_a_folder_named_like_an_image_is_an_error_naming_it(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match="dir.png"):
        load_image(tmp_path / "dir.png", 8)


def test_captions_that_are_not_utf8_name_their_file(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_bytes(b"caf\xe9")  # latin-1, not UTF-8
    with pytest.raises(DataError, match=r"a\.txt: not valid UTF-8 \(byte 3\)"):
        scan_folder(tmp_path)
    (tmp_path / "a.txt").unlink()
    (tmp_path / "metadata.jsonl").write_bytes(b'{"file_name": "a.png", "text": "\xff"}\n')
    with pytest.raises(DataError, match="metadata.jsonl: not valid UTF-8"):
        scan_folder(tmp_path)


def test_tokenize_writes_every_readable_image_reports_the_rest_and_exits_1(tmp_path, tok_dir):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name, make, _ in IMAGE_CASES.values():
        (imgs / name).write_bytes(make())
    bad = sorted(n for n, _m, e in IMAGE_CASES.values() if not callable(e))
    good = sorted(n for n, _m, e in IMAGE_CASES.values() if callable(e))
    res = runner.invoke(app, ["tokenize", str(imgs), "-o", str(tmp_path / "lat"), "-t",
                              str(tok_dir), "--shard-size", "5", "--json"])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    error = json.loads(res.stderr.strip().splitlines()[-1])  # --json: errors as JSON too
    assert error["exit_code"] == 1 and "could not be read" in error["error"]
    failed = json.loads((tmp_path / "lat/failed.json").read_text())
    assert sorted(f["file_name"] for f in failed) == bad
    assert all(f["reason"].startswith(str(imgs / f["file_name"])) for f in failed)
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning: unreadable")]
    assert len(warned) == len(bad) and all(any(b in w for b in bad) for w in warned)
    shards = read_shards(tmp_path / "lat")
    assert sorted(shards.file_names) == good
    assert torch.isfinite(shards.mean.float()).all()


# ----------------------------------------------------------------------------- prompts


def _generate(model_dir, out, *args):
    return runner.invoke(app, ["generate", "--model", str(model_dir), "-o", str(out),
                               "--steps", "1", *args])


def _bad_prompt(p: str) -> bool:
    import unicodedata

    return not p.strip() or any(unicodedata.category(c) == "Cc" and c not in "\t\n" for c in p)


@SETTINGS
@given(prompt=st.text(st.characters(codec="utf-8"), max_size=30))
@example(prompt="")  # empty
@example(prompt=" \t\n")  # whitespace only
@example(prompt="a\x00b")  # NUL
@example(prompt="\x1b[31mred")  # an ANSI escape
@example(prompt="del\x7f")  # DEL
@example(prompt="nel\x85")  # a C1 control
@example(prompt="🐈‍⬛ 🙂🙃")  # emoji with a zero-width joiner
@example(prompt="قطة حمراء")  # right-to-left: Arabic
@example(prompt="חתול אדום")  # right-to-left: Hebrew
@example(prompt="-n 5")  # looks like an option
def test_any_prompt_draws_or_is_refused_with_a_usage_error(model_dir, prompt):
    with tempfile.TemporaryDirectory() as out:
        res = _generate(model_dir, out, "--json", "--", prompt)
        if _bad_prompt(prompt):
            assert res.exit_code == 2, res.output
            _one_line_error(res.stderr)
        else:
            assert res.exit_code == 0, res.output
            meta = json.loads((Path(out) / "metadata.jsonl").read_text())
            assert meta["text"] == prompt  # emoji, RTL text and option-like text kept exactly
            assert Image.open(json.loads(res.stdout)["images"][0]).text["flowtok:prompt"] == prompt


def test_a_10000_character_prompt_is_truncated_to_K_tokens_with_a_warning(model_dir, tmp_path):
    res = _generate(model_dir, tmp_path, "a red circle " * 770)
    assert res.exit_code == 0, res.output
    assert "warning: prompt truncated to 8 tokens" in res.stderr


@SETTINGS
@given(data=st.binary(max_size=40))
@example(data=b"a cat\n\xff\xfe bad\n")  # invalid UTF-8
@example(data=b"\xef\xbb\xbfa cat\r\na dog\r\n")  # BOM + Windows line ends
@example(data=b"\n\n  \n")  # no prompt at all
@example(data=b"ok\nbell\x07\n")  # a control character
@example(data="قطة\nchat 🐈\n".encode())  # right-to-left and emoji lines
def test_any_prompts_file_draws_its_lines_or_is_refused_with_a_usage_error(model_dir, data):
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "prompts.txt"
        f.write_bytes(data)
        res = _generate(model_dir, Path(tmp) / "out", "--prompts", str(f))
        try:
            lines = [x.strip() for x in data.decode("utf-8-sig").splitlines() if x.strip()]
        except UnicodeDecodeError:
            assert res.exit_code == 2 and "not valid UTF-8" in res.stderr, res.output
            _one_line_error(res.stderr)
            return
        if not lines or any(_bad_prompt(x) for x in lines):
            assert res.exit_code == 2, res.output
            _one_line_error(res.stderr)
        else:
            assert res.exit_code == 0, res.output
            rows = (Path(tmp) / "out/metadata.jsonl").read_text().splitlines()
            assert [json.loads(r)["text"] for r in rows] == lines  # no BOM in prompt 1


@SETTINGS
@given(steps=st.integers(-3, 2), n=st.integers(-2, 2),
       guidance=st.floats(-3, 3) | st.sampled_from([float("nan"), float("inf"), 1.0]))
@example(steps=0, n=1, guidance=1.0)
@example(steps=1, n=0, guidance=1.0)
@example(steps=1, n=1, guidance=0.5)
@example(steps=1, n=1, guidance=float("nan"))
@example(steps=1, n=1, guidance=float("inf"))
@example(steps=2, n=2, guidance=1.0)
def test_steps_n_and_guidance_are_checked_before_any_work(model_dir, steps, n, guidance):
    with tempfile.TemporaryDirectory() as out:
        res = _generate(model_dir, out, "a cat", "--steps", str(steps), "-n", str(n),
                        "--guidance", str(guidance), "--json")
        valid = steps >= 1 and n >= 1 and guidance >= 1 and guidance != float("inf")
        if valid:
            assert res.exit_code == 0, res.output
            assert len(json.loads(res.stdout)["images"]) == n
        else:
            assert res.exit_code == 2, res.output
            _one_line_error(res.stderr)
            assert not list(Path(out).glob("*.png"))


def test_guidance_below_1_is_explained(model_dir, tmp_path):
    res = _generate(model_dir, tmp_path, "a cat", "--guidance", "0.5")
    assert res.exit_code == 2 and "pushes images away from the prompt" in res.stderr


# ----------------------------------------------------------------------------- arguments


def test_an_output_folder_under_a_file_is_a_usage_error(model_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    res = _generate(model_dir, tmp_path / "file" / "sub", "a cat")
    assert res.exit_code == 2 and "cannot create the output folder" in res.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_a_read_only_output_folder_is_a_usage_error(model_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    res = _generate(model_dir, ro, "a cat")
    assert res.exit_code == 2 and "not writable" in res.stderr


@pytest.mark.parametrize("command", ["generate", "tokenize", "train tokenizer"])
def test_an_unwritable_output_folder_is_a_usage_error_even_as_root(model_dir, tok_dir, tmp_path,
                                                                   monkeypatch, command):
    """Root writes through a chmod, and CI runs as root, so the folder is made read-only and
    the permission check check_out_dir relies on (os.access) also answers "no" for it, as it
    does for a normal user; every command that writes a folder must then stop with exit 2
    naming it, before writing anything there."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _noise(16, 16).save(imgs / "a.png")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    real_access, asked = os.access, []

    def access(path, mode, *args, **kwargs):
        if Path(path) == ro and mode & os.W_OK:
            asked.append(mode)
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    args = {"generate": ["generate", "--model", str(model_dir), "--steps", "1", "a cat"],
            "tokenize": ["tokenize", str(imgs), "-t", str(tok_dir)],
            "train tokenizer": ["train", "tokenizer", "--data", str(imgs), "--preset", "tiny",
                                "--set", "train_tokenizer.max_steps=1"]}[command]
    try:
        res = runner.invoke(app, [*args, "-o", str(ro)])
    finally:
        ro.chmod(0o700)
    assert asked, "check_out_dir no longer asks whether the folder is writable"
    assert res.exit_code == 2, res.output
    _one_line_error(res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {ro}: not writable; pass another folder with -o"]
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["a cat", "--prompts", "PROMPTS"], "give exactly one of PROMPT or --prompts FILE"),
    ([], "give exactly one of PROMPT or --prompts FILE"),
])
def test_prompt_and_prompts_file_conflict_is_a_usage_error(model_dir, tmp_path, args, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog\n")
    res = _generate(model_dir, tmp_path / "out", *[str(prompts) if a == "PROMPTS" else a
                                                   for a in args])
    assert res.exit_code == 2, res.output
    _one_line_error(res.stderr)
    assert f"error: {message}" in res.stderr.splitlines()
    assert not (tmp_path / "out").exists()  # refused before any work


def test_nproc_inside_torchrun_is_a_usage_error(tmp_path, monkeypatch):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _noise(16, 16).save(imgs / "a.png")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)  # if the check went, init fails, not hangs
    res = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "-o",
                              str(tmp_path / "run"), "--preset", "tiny", "--nproc", "2"])
    assert res.exit_code == 2, res.output
    _one_line_error(res.stderr)
    assert "--nproc inside torchrun" in res.stderr


def _flowtok(*args: str) -> subprocess.CompletedProcess:
    """The real command in a fresh process: what a user sees on the terminal."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "flowtok_cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_debug_shows_the_traceback_that_is_otherwise_one_line(tmp_path):
    missing = tmp_path / "no_model"
    args = ["generate", "--model", str(missing), "-o", str(tmp_path / "out"), "a cat"]
    plain = _flowtok(*args)
    assert plain.returncode == 1, plain.stderr
    message = f"{missing}: not a folder; pass a flowtok model folder"
    assert plain.stderr.splitlines() == [f"error: {message}"]
    debug = _flowtok("--debug", *args)
    assert debug.returncode == 1, debug.stderr
    assert debug.stderr.startswith("Traceback (most recent call last):"), debug.stderr
    assert 'pipeline.py", line' in debug.stderr  # where it was raised
    assert debug.stderr.splitlines()[-1] == f"flowtok.errors.CheckpointError: {message}"


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'; choose one of: B, H, XL"),
    (["--preset", "tiny", "--set", "train_tokenizer.max_steps=0"], "max_steps must be positive"),
    (["--preset", "tiny", "--set", "tokenizer.nonsense=1"], "unknown key"),
    (["--preset", "tiny", "--set", "train_tokenizer.lr=fast"], "train_tokenizer.lr"),
])
def test_train_refuses_bad_presets_and_overrides_with_exit_2(tmp_path, args, message):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _noise(16, 16).save(imgs / "a.png")
    res = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "-o",
                              str(tmp_path / "run"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    _one_line_error(res.stderr)


def test_train_into_an_output_path_that_is_a_file_is_a_usage_error(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _noise(16, 16).save(imgs / "a.png")
    (tmp_path / "run").write_text("x")
    res = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "-o",
                              str(tmp_path / "run"), "--preset", "tiny"])
    assert res.exit_code == 2 and "exists and is a file" in res.stderr


@SETTINGS
@given(batch=st.integers(-2, 3), shard=st.integers(-2, 3))
@example(batch=0, shard=2)
@example(batch=2, shard=-1)
@example(batch=1, shard=1)
def test_tokenize_sizes_below_1_are_usage_errors(tok_dir, batch, shard):
    with tempfile.TemporaryDirectory() as tmp:
        imgs = Path(tmp) / "imgs"
        imgs.mkdir()
        for i in range(3):
            _noise(16, 16, i).save(imgs / f"{i}.png")
        res = runner.invoke(app, ["tokenize", str(imgs), "-o", str(Path(tmp) / "lat"), "-t",
                                  str(tok_dir), "--batch-size", str(batch), "--shard-size",
                                  str(shard)])
        if batch >= 1 and shard >= 1:
            assert res.exit_code == 0, res.output
            assert len(read_shards(Path(tmp) / "lat")) == 3
        else:
            assert res.exit_code == 2, res.output
            assert "Traceback" not in res.output


@pytest.mark.parametrize("setup, code, message", [
    ("out_is_file", 2, "exists and is a file"),
    ("no_images", 2, "no images found (reads png, jpg, jpeg, webp, bmp, gif, tif, tiff)"),
    ("missing_folder", 1, "not a folder"),
])
def test_tokenize_argument_errors(tmp_path, tok_dir, setup, code, message):
    imgs, out = tmp_path / "imgs", tmp_path / "lat"
    imgs.mkdir()
    if setup != "no_images":
        _noise(16, 16).save(imgs / "a.png")
    if setup == "out_is_file":
        out.write_text("x")
    if setup == "missing_folder":
        imgs = tmp_path / "missing"
    res = runner.invoke(app, ["tokenize", str(imgs), "-o", str(out), "-t", str(tok_dir)])
    assert res.exit_code == code, res.output
    assert message in res.stderr
    _one_line_error(res.stderr)


# ----------------------------------------------------------------------------- checkpoints


def _tok_copy(tok_dir, tmp_path) -> Path:
    dst = tmp_path / "tok"
    shutil.copytree(tok_dir, dst)
    return dst


def _damage_truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _damage_header(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[8:40] = b"{" * 32  # the JSON header no longer parses
    p.write_bytes(bytes(data))


def _damage_random(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())


def _damage_empty(p: Path) -> None:
    p.write_bytes(b"")


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_header, _damage_random,
                                    _damage_empty], ids=["truncated", "bad_header", "random",
                                                         "empty"])
def test_a_damaged_tokenizer_is_refused_naming_the_file(tok_dir, tmp_path, damage):
    tok = _tok_copy(tok_dir, tmp_path)
    damage(tok / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupted or truncated"):
        Tokenizer.from_pretrained(tok)
    res = runner.invoke(app, ["tokenize", str(tmp_path), "-o", str(tmp_path / "lat"), "-t",
                              str(tok)])
    assert res.exit_code == 1 and "corrupted or truncated" in res.stderr
    _one_line_error(res.stderr)


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "pytorch_model.bin", "model.ckpt",
                                  "model.pkl", "model.pickle", "MODEL.CKPT"])
def test_pickle_files_are_refused_never_opened(tok_dir, tmp_path, name):
    tok = _tok_copy(tok_dir, tmp_path)
    (tok / "model.safetensors").unlink()
    # a pickle that would create a file if it were ever unpickled
    (tok / name).write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode()
                             + b"'\ntR.")
    with pytest.raises(CheckpointError, match=f"found {name} but flowtok never loads pickle"):
        Tokenizer.from_pretrained(tok)
    with pytest.raises(CheckpointError, match="is a pickle file"):
        Tokenizer.from_pretrained(tok / name)
    with pytest.raises(CheckpointError, match="is a pickle file"):
        FlowTokPipeline.from_pretrained(tok / name)
    assert not (tmp_path / "pwned").exists()


def test_every_pickle_suffix_the_readme_names_is_refused():
    """README "When things go wrong" lists the pickle suffixes; each one is refused."""
    import re

    from flowtok.safe_load import PICKLE_SUFFIXES, refuse_pickle

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = re.search(r"Pickle files \(([^)]*)\)", readme)
    assert listed, "README no longer lists the pickle suffixes"
    named = re.findall(r"`(\.[a-z]+)`", listed.group(1))
    assert {".pt", ".pth", ".bin", ".ckpt", ".pkl"} <= set(named), named
    for suffix in named:
        assert suffix in PICKLE_SUFFIXES
        with pytest.raises(CheckpointError, match=rf"weights\{suffix}: is a pickle file"):
            refuse_pickle(f"weights{suffix}")


def test_a_tokenizer_config_from_a_newer_version_is_refused(tok_dir, tmp_path):
    tok = _tok_copy(tok_dir, tmp_path)
    cfg = json.loads((tok / "config.json").read_text())
    assert cfg["version"] == 1
    (tok / "config.json").write_text(json.dumps({**cfg, "version": 99}))
    with pytest.raises(CheckpointError, match="newer flowtok"):
        Tokenizer.from_pretrained(tok)
    (tok / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Tokenizer.from_pretrained(tok)


def _model_copy(model_dir, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


def test_a_model_config_from_a_newer_version_is_refused(model_dir, tmp_path):
    m = _model_copy(model_dir, tmp_path)
    cfg = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({**cfg, "version": 2}))
    res = _generate(m, tmp_path / "out", "a cat")
    assert res.exit_code == 1 and "newer flowtok" in res.stderr
    _one_line_error(res.stderr)


@pytest.mark.parametrize("field", ["num_latent_tokens", "token_channels"])
def test_a_tokenizer_and_flow_model_that_disagree_on_K_or_C_are_refused(model_dir, tmp_path,
                                                                        field):
    m = _model_copy(model_dir, tmp_path)
    other = apply_overrides(load_preset("tiny"), [f"tokenizer.{field}=12"])
    shutil.rmtree(m / "tokenizer")
    Tokenizer(other.tokenizer).save_pretrained(m / "tokenizer")
    with pytest.raises(CheckpointError, match="tokenizer latents are .* flow model expects 8x4"):
        FlowTokPipeline.from_pretrained(m)
    res = runner.invoke(app, ["caption", str(tmp_path / "x.png"), "--model", str(m)])
    assert res.exit_code == 1 and "flow model expects" in res.stderr


def test_a_flow_checkpoint_with_the_wrong_shapes_is_refused(model_dir, tmp_path):
    m = _model_copy(model_dir, tmp_path)
    other = apply_overrides(load_preset("tiny"), ["flow.width=32"])
    FlowTokPipeline(other, Tokenizer(other.tokenizer), TextImageFlow(other, "t2i")).save_pretrained(
        tmp_path / "narrow")
    shutil.copy(tmp_path / "narrow/t2i/model.safetensors", m / "t2i/model.safetensors")
    res = _generate(m, tmp_path / "out", "a cat")
    assert res.exit_code == 1 and "does not match config.json" in res.stderr
    _one_line_error(res.stderr)


def test_a_damaged_latents_folder_names_the_shard(tok_dir, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        _noise(16, 16, i).save(imgs / f"{i}.png")
    lat = tmp_path / "lat"
    assert runner.invoke(app, ["tokenize", str(imgs), "-o", str(lat), "-t", str(tok_dir),
                               "--shard-size", "2"]).exit_code == 0
    _damage_truncate(lat / "shard_00001.safetensors")
    with pytest.raises(DataError, match="shard_00001.safetensors: corrupted or truncated"):
        read_shards(lat)
    (lat / "index.json").write_text("{")
    with pytest.raises(DataError, match="index.json: unreadable or not valid JSON"):
        read_shards(lat)


def test_unreadable_images_in_a_training_folder_are_skipped_with_a_warning(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _noise(16, 16).save(imgs / "good.png")
    (imgs / "bad.png").write_bytes(b"")
    loaded = load_folder(imgs, 16)
    assert [r.name for r in loaded.records] == ["good.png"]
    assert loaded.failed[0][0] == "bad.png" and "empty file" in loaded.failed[0][1]
