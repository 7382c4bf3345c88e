"""`flowtok tokenize` / `detokenize` / `eval tokenizer` / `train tokenizer` through the CLI:
shard layout, resume after a kill, unreadable files, round trip back to PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from flowtok.config import load_preset
from flowtok.data.shards import read_shards
from flowtok.tokenizer.model import Tokenizer
from flowtok_cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tok") / "model"
    Tokenizer(load_preset("tiny").tokenizer).save_pretrained(path)
    return path


def _images(folder, n=10, size=16, bad=()):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"{i:03d}.png"
        if i in bad:
            (folder / name).write_bytes(b"not a png")
        else:
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                folder / name)
        rows.append(json.dumps({"file_name": name, "text": f"caption {i}"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def _tokenize(imgs, out, tok_dir, *extra):
    return runner.invoke(app, ["tokenize", str(imgs), "-o", str(out), "--tokenizer",
                               str(tok_dir), "--shard-size", "4", "--batch-size", "3", "--json",
                               *extra])


def test_tokenize_writes_shards_index_and_tokenizer_record(tmp_path, tok_dir):
    imgs = _images(tmp_path / "imgs")
    res = _tokenize(imgs, tmp_path / "lat", tok_dir)
    assert res.exit_code == 0, res.output
    lat = tmp_path / "lat"
    assert sorted(p.name for p in lat.glob("shard_*")) == [
        "shard_00000.safetensors", "shard_00001.safetensors", "shard_00002.safetensors"]
    shards = read_shards(lat)
    assert shards.mean.shape == (10, 8, 4) and shards.mean.dtype == torch.float16
    assert shards.captions[3] == "caption 3" and shards.file_names[9] == "009.png"
    index = json.loads((lat / "index.json").read_text())
    assert index["items"][5] == {"file_name": "005.png", "caption": "caption 5",
                                 "shard": "shard_00001.safetensors", "row": 1}
    info = json.loads((lat / "tokenizer.json").read_text())
    assert (info["K"], info["C"], info["image_size"]) == (8, 4, 16)
    # the stored mean is the tokenizer's posterior mean in fp16
    tok = Tokenizer.from_pretrained(tok_dir)
    img = torch.from_numpy(np.array(Image.open(imgs / "005.png")))[None]
    with torch.no_grad():
        expected = tok.encode(img).mean[0].half()
    assert torch.equal(shards.mean[5], expected)


def test_rerun_after_a_kill_redoes_only_the_missing_shard(tmp_path, tok_dir):
    imgs, lat = _images(tmp_path / "imgs"), tmp_path / "lat"
    assert _tokenize(imgs, lat, tok_dir).exit_code == 0
    index_before = (lat / "index.json").read_text()
    finished = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in lat.glob("shard_*")}
    # simulate a kill mid-run: the last shard never landed, its temp file was left behind
    (lat / "shard_00002.safetensors").unlink()
    (lat / ".shard_00002.safetensors.abc.tmp").write_bytes(b"partial")
    (lat / "index.json").unlink()
    res = _tokenize(imgs, lat, tok_dir)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["shards_skipped"], out["shards_written"]) == (2, 1)
    for p in lat.glob("shard_*"):
        data, mtime = finished[p.name]
        assert p.read_bytes() == data
        if p.name != "shard_00002.safetensors":
            assert p.stat().st_mtime_ns == mtime  # finished shards were not rewritten
    assert (lat / "index.json").read_text() == index_before


def test_unreadable_files_are_reported_and_the_rest_is_written(tmp_path, tok_dir):
    imgs = _images(tmp_path / "imgs", bad=(2, 7))
    res = _tokenize(imgs, tmp_path / "lat", tok_dir)
    assert res.exit_code == 1
    failed = json.loads((tmp_path / "lat/failed.json").read_text())
    assert [f["file_name"] for f in failed] == ["002.png", "007.png"]
    shards = read_shards(tmp_path / "lat")
    assert len(shards) == 8 and "002.png" not in shards.file_names
    assert all(f["reason"].startswith(str(imgs / f["file_name"]) + ": cannot read image")
               for f in failed)
    first = (tmp_path / "lat/failed.json").read_bytes()
    # a rerun keeps reporting them (exit 1), with the same reasons, without redoing shards
    res = _tokenize(imgs, tmp_path / "lat", tok_dir)
    assert res.exit_code == 1 and json.loads(res.stdout)["shards_skipped"] == 3
    assert (tmp_path / "lat/failed.json").read_bytes() == first
    # a file repaired since its shard was written is still missing from it: say how to redo it
    Image.new("RGB", (16, 16)).save(imgs / "007.png")
    res = _tokenize(imgs, tmp_path / "lat", tok_dir)
    assert res.exit_code == 1
    failed = json.loads((tmp_path / "lat/failed.json").read_text())
    assert failed[0] == json.loads(first)[0]
    assert failed[1] == {"file_name": "007.png", "reason": (
        f"{imgs / '007.png'}: could not be read when shard_00001.safetensors was written; "
        "delete that shard and rerun to include it")}


def test_detokenize_decodes_every_latent_to_a_png_with_its_caption(tmp_path, tok_dir):
    imgs = _images(tmp_path / "imgs", n=5)
    assert _tokenize(imgs, tmp_path / "lat", tok_dir).exit_code == 0
    res = runner.invoke(app, ["detokenize", str(tmp_path / "lat"), "-o", str(tmp_path / "rec"),
                              "--json"])
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in (tmp_path / "rec").glob("*.png"))
    assert pngs == [f"{i:03d}.png" for i in range(5)]
    tok = Tokenizer.from_pretrained(tok_dir)
    z = read_shards(tmp_path / "lat").mean[:1].float()
    with torch.no_grad():
        expected = ((tok.decode(z).clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 0)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "rec/000.png")), expected.numpy())
    meta = (tmp_path / "rec/metadata.jsonl").read_text().splitlines()
    assert json.loads(meta[4]) == {"file_name": "004.png", "text": "caption 4"}


def test_eval_tokenizer_reports_psnr_and_ssim(tmp_path, tok_dir):
    imgs = _images(tmp_path / "imgs", n=6)
    res = runner.invoke(app, ["eval", "tokenizer", str(imgs), "--tokenizer", str(tok_dir),
                              "--json", "--n", "4"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n"] == 4 and 0 < out["psnr"] < 60 and -1 <= out["ssim"] <= 1
    assert "shapes" not in out  # captions are not shapes prompts


def test_train_tokenizer_cli_writes_a_loadable_model(tmp_path):
    imgs = _images(tmp_path / "imgs", n=8)
    res = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "--val", str(imgs),
                              "--preset", "tiny", "-o", str(tmp_path / "run"), "--json",
                              "--set", "train_tokenizer.max_steps=3"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step"] == 3
    tok = Tokenizer.from_pretrained(tmp_path / "run/model")
    assert tok.cfg.image_size == 16
    assert json.loads((tmp_path / "run/config.json").read_text())["name"] == "tiny"


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["safetensors", "webdataset"])
def test_tokenize_with_2_workers_writes_the_same_files_as_one_process(tmp_path, tok_dir,
                                                                      monkeypatch, fmt):
    """`--workers 2` (two spawned processes, shard i to worker i % 2) ends with byte-identical
    shards, index, tokenizer record and failed.json (one unreadable image) as one process."""
    from flowtok.data import tokenize_parts

    imgs = _images(tmp_path / "imgs", n=9, bad=(4,))
    one = _tokenize(imgs, tmp_path / "one", tok_dir, "--format", fmt)
    assert one.exit_code == 1, one.output  # the unreadable image is reported
    by_workers = []
    real = tokenize_parts.run_workers

    def spy(*args, **kwargs):
        by_workers.append(real(*args, **kwargs))
        return by_workers[-1]

    monkeypatch.setattr(tokenize_parts, "run_workers", spy)
    two = _tokenize(imgs, tmp_path / "two", tok_dir, "--format", fmt, "--workers", "2")
    assert two.exit_code == 1, two.output
    assert by_workers == [3]  # the workers wrote all 3 shards; the final pass only indexed
    assert json.loads(two.stdout) == {**json.loads(one.stdout), "out": str(tmp_path / "two")}
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    shards = [n for n in a if n.endswith((".tar", ".safetensors"))]
    assert len(shards) == 3 and "failed.json" in a
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
