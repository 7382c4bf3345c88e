"""Webdataset .tar shards with the standard library: round trip, streaming split by slot with a
shuffle buffer, exact fast-forward after a resume, and `tokenize --format webdataset`."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from flowtok.data import webdataset as wds
from flowtok.errors import DataError


def _png(seed: int, size: int = 8) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def shards(tmp_path):
    """4 shards x 5 samples, the LAION layout: key.png, key.txt, key.json."""
    for s in range(4):
        with wds.ShardWriter(tmp_path / wds.SHARD_PATTERN.format(s)) as w:
            for i in range(5):
                n = s * 5 + i
                w.write(f"{n:09d}", {"png": _png(n), "txt": f"caption {n}".encode(),
                                     "json": json.dumps({"caption": f"caption {n}"}).encode()})
    return tmp_path


def test_written_shards_are_plain_tars_that_read_back_unchanged(shards):
    assert sorted(p.name for p in shards.iterdir()) == [f"00000{i}.tar" for i in range(4)]
    with tarfile.open(shards / "000001.tar") as tar:  # any tar tool sees key.ext members
        assert tar.getnames()[:3] == ["000000005.png", "000000005.txt", "000000005.json"]
    samples = [s.load() for p in wds.list_shards(shards) for s in wds.iter_shard(p)]
    assert [s["__key__"] for s in samples] == [f"{n:09d}" for n in range(20)]
    assert all(s["png"] == _png(int(s["__key__"])) for s in samples)
    assert samples[7]["txt"] == b"caption 7"


def test_member_names_split_at_the_first_dot_of_the_base_name():
    assert wds.split_key("a/b/x.latents.safetensors") == ("a/b/x", "latents.safetensors")
    assert wds.split_key("000001.JPG") == ("000001", "jpg")
    assert wds.safe_key("sub/img.v2.png") == "sub/img_v2"


def test_slots_partition_every_epoch_and_shuffle_within_it(shards):
    decode = wds.caption_of
    streams = wds.SlotStreams(shards, decode, seed=0, buffer=4)
    # 2 slots x 2 steps x 5 samples = one epoch of 20 samples: each exactly once
    seen = [c for step in range(2) for slot in range(2) for c in streams.take(step, 5, slot, 2)]
    assert sorted(seen) == sorted(f"caption {n}" for n in range(20))
    assert seen != [f"caption {n}" for n in range(20)]  # the shuffle buffer reordered them
    # a slot's stream does not depend on the process that reads it
    again = wds.SlotStreams(shards, decode, seed=0, buffer=4)
    assert again.take(1, 5, 1, 2) == streams.take(1, 5, 1, 2)


def test_resume_fast_forwards_to_the_same_samples(shards):
    decode = wds.caption_of
    straight = wds.SlotStreams(shards, decode, seed=3, buffer=6)
    batches = [straight.take(step, 3) for step in range(9)]  # crosses an epoch boundary
    resumed = wds.SlotStreams(shards, decode, seed=3, buffer=6)
    assert resumed.take(7, 3) == batches[7] and resumed.take(8, 3) == batches[8]


def test_images_decode_like_image_folders_and_too_few_shards_is_an_error(shards):
    streams = wds.SlotStreams(shards, lambda s: wds.image_of(s, 8), seed=0)
    img = streams.head(1)[0]
    assert img.dtype == np.uint8 and img.shape == (8, 8, 3)
    assert np.array_equal(img, np.asarray(Image.open(io.BytesIO(_png(0)))))
    with pytest.raises(DataError, match="4 shard"):
        wds.SlotStreams(shards, wds.caption_of).take(0, 1, 0, 8)


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    """A tiny tokenizer, 7 captioned images, and their latents as 4 webdataset shards written
    in 2 parts (as 2 workers / ranks would)."""
    from flowtok.config import load_preset
    from flowtok.data.imagefolder import scan_folder
    from flowtok.data.webdataset import write_latent_tars
    from flowtok.tokenizer.model import Tokenizer

    root = tmp_path_factory.mktemp("lat")
    (root / "imgs").mkdir()
    for i in range(7):
        (root / "imgs" / f"im.{i}.png").write_bytes(_png(i, 16))
        (root / "imgs" / f"im.{i}.txt").write_text(f"picture {i}")
    torch.manual_seed(0)
    Tokenizer(load_preset("tiny").tokenizer).save_pretrained(root / "tok")
    tok = Tokenizer.from_pretrained(root / "tok")
    records = scan_folder(root / "imgs")
    for part in ((1, 2), (0, 2)):
        rep = write_latent_tars(records, tok, root / "wds", root / "tok", shard_size=2,
                                part=part)
        assert rep.shards_written == 2  # shards 1, 3 then 0, 2
    return root


def test_tokenize_webdataset_holds_the_same_latents_as_safetensors_shards(latents):
    """`flowtok tokenize --format webdataset` after the parts only assembles; read back, the
    shards hold the same posteriors (fp16) and captions as the safetensors format."""
    from typer.testing import CliRunner

    from flowtok.data.shards import read_shards
    from flowtok.data.webdataset import iter_shard, latent_sample, list_shards
    from flowtok_cli.app import app

    assert sorted(p.name for p in (latents / "wds").glob("*.tar")) == [
        f"00000{i}.tar" for i in range(4)]
    common = [str(latents / "imgs"), "-t", str(latents / "tok"), "--json"]
    run = CliRunner().invoke(app, ["tokenize", *common, "-o", str(latents / "wds"),
                                   "--format", "webdataset", "--shard-size", "2"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["shards_skipped"] == 4  # the parts did all the work
    run = CliRunner().invoke(app, ["tokenize", *common, "-o", str(latents / "st")])
    assert run.exit_code == 0, run.output
    rows = [latent_sample(s) for p in list_shards(latents / "wds") for s in iter_shard(p)]
    mean, logvar = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
    captions, names = [r[2] for r in rows], [r[3] for r in rows]
    ref = read_shards(latents / "st")
    assert names == ref.file_names and captions == ref.captions
    assert torch.equal(mean, ref.mean.float()) and torch.equal(logvar, ref.logvar.float())


def test_streamed_flow_batches_encode_captions_like_the_cache(latents):
    from flowtok.config import load_preset
    from flowtok.data.webdataset import SlotStreams, latent_sample
    from flowtok.text.encoders import build_text_encoder
    from flowtok.tokenizer.model import Tokenizer
    from flowtok.train.flow_task import FlowTask

    cfg = load_preset("tiny")
    enc = build_text_encoder("tiny", cfg.K, cfg.text.feature_dim)
    stream = SlotStreams(latents / "wds", latent_sample, seed=0, buffer=2)
    task = FlowTask(cfg, "t2i", Tokenizer.from_pretrained(latents / "tok"), enc, stream)
    batch = task.batch(0, torch.Generator().manual_seed(0), slot=1, slots=2)
    captions = batch.pop("captions")
    assert len(captions) == cfg.train_flow.batch_size
    losses = []
    for b in ({**batch, "captions": captions}, {**batch, "text": task.text.lookup(captions)}):
        torch.manual_seed(0)  # the same dropout draws
        losses.append(task.loss(b, 0)[0].item())
    assert losses[0] == losses[1]


def test_train_flow_streams_webdataset_latents(latents, tmp_path):
    from typer.testing import CliRunner

    from flowtok_cli.app import app

    res = CliRunner().invoke(app, [
        "train", "flow", "--data", str(latents / "wds"), "--tokenizer", str(latents / "tok"),
        "-o", str(tmp_path / "t2i"), "--preset", "tiny", "--json", "--eval-prompts", "0",
        "--set", "train_flow.max_steps=2", "--set", "train_flow.batch_size=2",
        "--set", "train_flow.grad_accum=2", "--set", "train_flow.eval_every=0"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["global_batch"] == 4
    assert (tmp_path / "t2i/model/config.json").is_file()


def test_train_tokenizer_streams_webdataset_shards(shards, tmp_path):
    from typer.testing import CliRunner

    from flowtok_cli.app import app

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "tokenizer", "--data", str(shards), "-o", str(out),
                                   "--preset", "tiny", "--json", "--shuffle-buffer", "3",
                                   "--set", "train_tokenizer.max_steps=2",
                                   "--set", "train_tokenizer.batch_size=3",
                                   "--set", "train_tokenizer.grad_accum=2",
                                   "--set", "train_tokenizer.eval_every=0"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["global_batch"] == 6
    assert (out / "model/model.safetensors").is_file()


def test_an_undecodable_sample_is_skipped_and_listed(tmp_path):
    with wds.ShardWriter(tmp_path / "000000.tar") as w:
        w.write("a", {"png": _png(1)})
        w.write("b", {"png": b"not an image"})
        w.write("c", {"png": _png(2)})
    streams = wds.SlotStreams(tmp_path, lambda s: wds.image_of(s, 8), buffer=1)
    batch = streams.take(0, 2)
    assert [img.tobytes() for img in batch] == [
        np.asarray(Image.open(io.BytesIO(_png(i)))).tobytes() for i in (1, 2)]
    assert [key for key, _ in streams.failed] == ["b"]
