"""Webdataset ``.tar`` shards, the layout LAION / DataComp / img2dataset tools produce, read and
written with the standard library's ``tarfile`` (no ``webdataset`` dependency).

A shard ``000000.tar`` holds samples as consecutive members sharing a key (the member name up to
the first dot of its base name): ``key.jpg`` / ``key.png`` (image), ``key.txt`` (caption),
``key.json`` (metadata), and for latents ``key.latents.safetensors`` (posterior ``mean`` and
``logvar``, fp16 (K, C); never pickles) or ``key.latent.npy`` (mean only, ``allow_pickle=False``).

Streaming for training: the step's global batch has ``slots`` parts (ranks x micro-batches);
slot ``s`` reads shards ``s, s + slots, …`` of a per-epoch permutation, through a shuffle
buffer, so the data of a slot does not depend on which process runs it. A sample is remembered
as (file, offset, size) of its members and read only when it leaves the shuffle buffer, so
resuming at step ``n`` fast-forwards through tar headers without decoding images.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flowtok.atomic import AtomicFile
from flowtok.data.imagefolder import BLACK
from flowtok.errors import DataError

SHARD_PATTERN = "{:06d}.tar"
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")
LATENTS_EXT = "latents.safetensors"
LATENT_NPY_EXT = "latent.npy"
DEFAULT_SHUFFLE_BUFFER = 1000  # samples held per slot stream; webdataset's usual order of size


def split_key(name: str) -> tuple[str, str]:
    """Member name -> (key, extension): ``a/b/x.latents.safetensors`` -> (``a/b/x``,
    ``latents.safetensors``), webdataset's rule (the key is everything up to the first dot of
    the base name)."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot:
        return name, ""
    return (f"{head}/{stem}" if head else stem), ext.lower()


def safe_key(name: str) -> str:
    """A relative file name as a webdataset key: extension dropped, other dots made ``_``."""
    p = Path(name)
    stem = p.with_suffix("").as_posix() if p.suffix else p.as_posix()
    return stem.replace(".", "_")


# ----------------------------------------------------------------------------- writing


class ShardWriter:
    """Writes one ``.tar`` shard atomically (temp file, fsync, rename on close)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = AtomicFile(self.path)
        self._tar = tarfile.open(fileobj=self._out.file, mode="w")  # noqa: SIM115 - closed in close()
        self.count = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Add one sample: ``members`` maps extension (``png``, ``txt``, …) to bytes."""
        for ext, data in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uname = info.gname = "flowtok"
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> None:
        self._tar.close()
        self._out.commit()

    def abort(self) -> None:
        self._tar.close()
        self._out.abort()

    def __enter__(self) -> ShardWriter:  # noqa: PYI034
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ----------------------------------------------------------------------------- reading


class Sample(dict):
    """One sample: extension -> (path, offset, size) of its member, read lazily by ``read``."""

    key: str = ""

    def read(self, ext: str) -> bytes:
        path, offset, size = self[ext]
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def load(self) -> dict[str, Any]:
        """All members as bytes, plus ``__key__``."""
        return {"__key__": self.key, **{ext: self.read(ext) for ext in self}}


def list_shards(source: str | Path) -> list[Path]:
    """The ``.tar`` shards of ``source``: a folder (recursive, sorted), one file, or a glob."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        shards = sorted(p for p in source.rglob("*.tar") if not p.name.startswith("."))
    else:
        import glob

        shards = sorted(Path(p) for p in glob.glob(str(source), recursive=True))
    if not shards:
        raise DataError(f"{source}: no webdataset .tar shards found")
    return shards


def has_shards(source: str | Path) -> bool:
    """True when ``source`` is a .tar file or a folder holding .tar shards."""
    source = Path(source)
    if source.is_file():
        return source.suffix == ".tar"
    return source.is_dir() and any(p.suffix == ".tar" for p in source.rglob("*.tar"))


def iter_shard(path: str | Path) -> Iterator[Sample]:
    """Samples of one shard in file order (members grouped by consecutive key); reads headers
    only."""
    current: Sample | None = None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = split_key(info.name)
                if current is None or key != current.key:
                    if current:
                        yield current
                    current = Sample()
                    current.key = key
                current[ext] = (str(path), info.offset_data, info.size)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{path}: cannot read tar shard ({e})") from e
    if current:
        yield current


def shuffled(samples: Iterator[Sample], buffer: int, rng: random.Random) -> Iterator[Sample]:
    """webdataset's shuffle buffer: fill to ``buffer``, then yield a random element and refill."""
    if buffer <= 1:
        yield from samples
        return
    pool: list[Sample] = []
    for s in samples:
        if len(pool) < buffer:
            pool.append(s)
            continue
        i = rng.randrange(buffer)
        yield pool[i]
        pool[i] = s
    rng.shuffle(pool)
    yield from pool


def slot_stream(shards: list[Path], slot: int, slots: int, seed: int,
                buffer: int = DEFAULT_SHUFFLE_BUFFER) -> Iterator[Sample]:
    """Endless samples of ``slot``: per epoch, shards ``slot::slots`` of a seeded permutation,
    shuffled through a buffer seeded by (seed, slot, epoch)."""
    if len(shards) < slots:
        raise DataError(f"{len(shards)} shard(s) for {slots} data slots (processes x "
                        "grad_accum): write at least as many shards (smaller --shard-size)")
    epoch = 0
    while True:
        order = list(shards)
        random.Random(seed * 7919 + epoch).shuffle(order)
        mine = order[slot::slots]
        rng = random.Random((seed * 7919 + epoch) * 4099 + slot)
        any_sample = False
        for s in shuffled((s for p in mine for s in iter_shard(p)), buffer, rng):
            any_sample = True
            yield s
        if not any_sample:
            raise DataError(f"shards {[p.name for p in mine]}: no samples")
        epoch += 1


class SlotStreams:
    """Batches from webdataset shards for the trainer's (step, slot, slots) requests.

    Each slot is one endless stream; a request for step ``n`` takes that slot's samples
    ``[n * B, (n + 1) * B)``, fast-forwarding (headers only) after a resume.
    """

    def __init__(self, source: str | Path, decode: Callable[[Sample], Any], seed: int = 0,
                 buffer: int = DEFAULT_SHUFFLE_BUFFER):
        self.shards = list_shards(source)
        self.decode, self.seed, self.buffer = decode, seed, buffer
        self._streams: dict[tuple[int, int], tuple[Iterator[Sample], int]] = {}
        # samples that could not be decoded (key, reason): skipped, so a slot's later batches
        # shift by one sample each and a resume past them is off by as many samples
        self.failed: list[tuple[str, str]] = []

    def take(self, step: int, batch_size: int, slot: int = 0, slots: int = 1) -> list[Any]:
        """The ``batch_size`` decoded samples of ``slot`` at ``step``."""
        want = step * batch_size
        it, pos = self._streams.get((slot, slots), (None, 0))
        if it is None or pos > want:
            it, pos = slot_stream(self.shards, slot, slots, self.seed, self.buffer), 0
        for _ in range(want - pos):
            next(it)
        out = []
        while len(out) < batch_size:
            sample = next(it)
            try:
                out.append(self.decode(sample))
            except DataError as e:  # one damaged sample must not end a long run
                self.failed.append((sample.key, str(e)))
        self._streams[(slot, slots)] = (it, want + batch_size)
        return out

    def head(self, n: int) -> list[Any]:
        """The first ``n`` samples in file order, decoded (data statistics, sample grids)."""
        out = []
        for p in self.shards:
            for s in iter_shard(p):
                if len(out) >= n:
                    return out
                out.append(self.decode(s))
        return out


# ----------------------------------------------------------------------------- decoding


def caption_of(sample: Sample) -> str | None:
    """``key.txt``, else the ``caption`` / ``text`` field of ``key.json``."""
    if "txt" in sample:
        return sample.read("txt").decode("utf-8").strip()
    if "json" in sample:
        meta = json.loads(sample.read("json"))
        text = meta.get("caption", meta.get("text"))
        return None if text is None else str(text)
    return None


def image_of(sample: Sample, size: int, background: tuple[int, int, int] = BLACK) -> np.ndarray:
    """The sample's image as uint8 (size, size, 3) (same resize / crop / background as image
    folders)."""
    from flowtok.data.imagefolder import load_image

    ext = next((e for e in IMAGE_EXTS if e in sample), None)
    if ext is None:
        raise DataError(f"{sample.key}: no image member ({', '.join(IMAGE_EXTS)})")
    try:
        return load_image(io.BytesIO(sample.read(ext)), size, background)
    except (DataError, TypeError, OSError) as e:
        raise DataError(f"{sample.key}.{ext}: cannot read image ({e})") from e


def latents_of(sample: Sample):
    """(mean, logvar) float32 torch tensors (K, C); logvar is None for ``.latent.npy``."""
    import torch

    if LATENTS_EXT in sample:
        from safetensors.torch import load

        t = load(sample.read(LATENTS_EXT))
        return t["mean"].float(), t["logvar"].float()
    if LATENT_NPY_EXT in sample:
        arr = np.load(io.BytesIO(sample.read(LATENT_NPY_EXT)), allow_pickle=False)
        return torch.from_numpy(np.asarray(arr, dtype=np.float32)), None
    raise DataError(f"{sample.key}: no latents member ({LATENTS_EXT} or {LATENT_NPY_EXT})")


def latent_sample(sample: Sample):
    """(mean, logvar, caption, file name) of a latents sample, the tuple flow training
    streams; a ``.latent.npy`` mean gets a point posterior (logvar -30)."""
    import torch

    mean, logvar = latents_of(sample)
    caption = caption_of(sample)
    if not caption:
        raise DataError(f"{sample.key}: no caption (key.txt or caption / text in key.json)")
    meta = json.loads(sample.read("json")) if "json" in sample else {}
    logvar = logvar if logvar is not None else torch.full_like(mean, -30.0)
    return mean, logvar, caption, str(meta.get("file_name", sample.key))


def latents_bytes(mean, logvar) -> bytes:
    """One sample's posterior as safetensors bytes (fp16 mean and logvar, (K, C))."""
    import torch
    from safetensors.torch import save

    return save({"mean": mean.to(torch.float16).contiguous(),
                 "logvar": logvar.to(torch.float16).contiguous()})


# ----------------------------------------------------------------------------- tokenize


def write_latent_tars(records: list, tokenizer, out: Path, tokenizer_dir: Path, *,
                      batch_size: int = 64, shard_size: int = 4096, part: tuple[int, int] = (0, 1),
                      on_progress: Callable[[int], None] | None = None):
    """Encode image records into webdataset shards of latents under ``out`` (``000000.tar``, …,
    members ``key.latents.safetensors``, ``key.txt``, ``key.json``) + ``tokenizer.json``.

    Shard i covers records [i * shard_size, (i + 1) * shard_size); existing shards are skipped
    (resumable); with ``part=(w, n)`` only shards i with i % n == w are written (workers /
    ranks), and only ``part=(0, 1)`` writes failed.json. Returns a shards.TokenizeReport.
    """
    import torch

    from flowtok.data.imagefolder import load_records, unreadable_reason
    from flowtok.data.shards import (
        FAILED_FILE,
        TOKENIZER_FILE,
        TokenizeReport,
        _write_json_atomic,
        tokenizer_info,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = tokenizer_info(tokenizer_dir, tokenizer)
    info_path = out / TOKENIZER_FILE
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old.get("sha256") != info["sha256"] or old.get("config") != info["config"]:
            raise DataError(f"{out}: already holds latents from another tokenizer "
                            f"({old.get('path')}); use a new output folder")
    _write_json_atomic(info_path, info)
    index, count = part
    n_shards = (len(records) + shard_size - 1) // shard_size
    failed: list[tuple[str, str]] = []
    written = skipped = items = 0
    for s in range(n_shards):
        if s % count != index:
            continue
        chunk = records[s * shard_size: (s + 1) * shard_size]
        path = out / SHARD_PATTERN.format(s)
        if path.is_file():
            keys = {smp.key for smp in iter_shard(path)}
            failed += [(r.name, unreadable_reason(r, tokenizer.cfg.image_size, path,
                                                 tokenizer.cfg.background))
                       for r in chunk if safe_key(r.name) not in keys]
            skipped += 1
            items += len(keys)
        else:
            for stale in out.glob(f".{path.name}.*.tmp"):
                stale.unlink(missing_ok=True)
            loaded = load_records(chunk, tokenizer.cfg.image_size, tokenizer.cfg.background)
            failed += loaded.failed
            with ShardWriter(path) as w, torch.no_grad():
                for i in range(0, len(loaded.images), batch_size):
                    post = tokenizer.encode(torch.from_numpy(loaded.images[i: i + batch_size]))
                    for j, rec in enumerate(loaded.records[i: i + batch_size]):
                        members = {LATENTS_EXT: latents_bytes(post.mean[j].cpu(),
                                                              post.logvar[j].cpu())}
                        if rec.caption is not None:
                            members["txt"] = rec.caption.encode("utf-8")
                        members["json"] = json.dumps({"file_name": rec.name,
                                                      "caption": rec.caption}).encode()
                        w.write(safe_key(rec.name), members)
            written += 1
            items += len(loaded.records)
        if on_progress is not None:
            on_progress(len(chunk))
    if count == 1:
        failed_path = out / FAILED_FILE
        if failed:
            _write_json_atomic(failed_path, [{"file_name": n, "reason": r} for n, r in failed])
        else:
            failed_path.unlink(missing_ok=True)
    return TokenizeReport(items, written, skipped, failed)
