"""Latent shards: a folder of tokenizer posteriors that the flow model trains on.

Layout of a latents folder:
  shard_00000.safetensors  mean, logvar: fp16 [n, K, C]; its metadata holds the shard's own
                           rows as JSON ({"items": [{file_name, caption}], "planned": [...]})
  index.json               {"version", "num_items", "shard_size", "items": [{file_name, caption,
                           shard, row}]}, assembled from the shards when a run finishes
  tokenizer.json           which tokenizer wrote it: path, sha256 of its weights, K, C, size,
                           scale factor and its full config (so `detokenize` can rebuild it)
  failed.json              files that could not be read (name, reason), when there were any

Shard i always covers planned files [i * shard_size, (i + 1) * shard_size) of the sorted scan, so
a rerun can skip every shard that exists (each is written atomically: temp file, fsync, rename)
and redo only the missing ones, without touching finished shards.
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from flowtok.atomic import write_bytes_atomic
from flowtok.data.imagefolder import ImageRecord, load_records, unreadable_reason
from flowtok.errors import CheckpointError, DataError
from flowtok.safe_load import load_safetensors

SHARD_PATTERN = "shard_{:05d}.safetensors"
INDEX_FILE = "index.json"
TOKENIZER_FILE = "tokenizer.json"
FAILED_FILE = "failed.json"
FORMAT_VERSION = 1
# temp files of write_bytes_atomic (".<name>.<random>.tmp") that a killed run leaves behind
STALE_TEMP_GLOBS = (".shard_*.tmp", f".{INDEX_FILE}.*.tmp", f".{TOKENIZER_FILE}.*.tmp",
                    f".{FAILED_FILE}.*.tmp")


def _write_atomic(path: Path, data: bytes) -> None:
    """Atomic write; a full disk or other OS error becomes a DataError that says what is kept."""
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise DataError(
            f"{path}: could not be written ({why}); finished shards are kept, the one being "
            "written was discarded; fix this and rerun the same command to continue"
        ) from e


def _write_json_atomic(path: Path, obj) -> None:
    _write_atomic(path, (json.dumps(obj, indent=1) + "\n").encode())


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path}: unreadable or not valid JSON ({e.__class__.__name__}); "
                        "delete the latents folder and run tokenize again") from e


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class TokenizeReport:
    """What a tokenize run did."""

    num_items: int  # latents in the folder
    shards_written: int
    shards_skipped: int  # finished by an earlier run
    failed: list[tuple[str, str]]  # (file name, reason)


def tokenizer_info(tokenizer_dir: Path, tokenizer) -> dict:
    """The tokenizer.json record for a tokenizer loaded from ``tokenizer_dir``."""
    from flowtok.config import to_dict
    from flowtok.tokenizer.model import WEIGHTS_NAME

    weights = Path(tokenizer_dir) / WEIGHTS_NAME
    if not weights.is_file():
        weights = Path(tokenizer_dir) / "tokenizer" / WEIGHTS_NAME
    c = tokenizer.cfg
    return {"version": FORMAT_VERSION, "path": str(Path(tokenizer_dir).resolve()),
            "sha256": file_sha256(weights) if weights.is_file() else None,
            "K": c.num_latent_tokens, "C": c.token_channels, "image_size": c.image_size,
            "scale_factor": c.scale_factor, "config": to_dict(c)}


def _shard_items(path: Path) -> tuple[list[dict], list[str]] | None:
    """(items, planned names) of a finished shard, or None when the file is unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        data = json.loads(meta["rows"])
        return data["items"], data["planned"]
    except Exception:  # noqa: BLE001 - a damaged shard is simply redone
        return None


def write_shards(
    records: list[ImageRecord], tokenizer, out: Path, tokenizer_dir: Path, *,
    batch_size: int = 64, shard_size: int = 1024,
    on_progress: Callable[[int], None] | None = None, part: tuple[int, int] = (0, 1),
) -> TokenizeReport:
    """Encode ``records`` into latent shards under ``out`` (resumable; see the module doc).

    ``on_progress(n)`` is called with the number of planned files each finished shard covered.
    ``part=(w, n)``: only shards i with i % n == w, and no index (workers / torchrun ranks; a
    final ``part=(0, 1)`` call skips every finished shard and writes the index).
    """
    from safetensors.torch import save

    if shard_size <= 0 or batch_size <= 0:
        raise DataError("--shard-size and --batch-size must be positive")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if part[1] == 1:  # the only writer (parts run concurrently and own their temp files)
        for pattern in STALE_TEMP_GLOBS:  # left by a run that was killed mid-write
            for stale in out.glob(pattern):
                stale.unlink(missing_ok=True)
    info = tokenizer_info(tokenizer_dir, tokenizer)
    info_path = out / TOKENIZER_FILE
    if info_path.is_file():
        old = _read_json(info_path)
        if old.get("sha256") != info["sha256"] or old.get("config") != info["config"]:
            raise DataError(
                f"{out}: already holds latents from another tokenizer ({old.get('path')}); "
                "use a new output folder"
            )
    _write_json_atomic(info_path, info)
    size = tokenizer.cfg.image_size
    n_shards = (len(records) + shard_size - 1) // shard_size
    all_items: list[dict] = []
    failed: list[tuple[str, str]] = []
    written = skipped = 0
    for s in range(n_shards):
        if s % part[1] != part[0]:
            continue
        chunk = records[s * shard_size: (s + 1) * shard_size]
        planned = [r.name for r in chunk]
        path = out / SHARD_PATTERN.format(s)
        done = _shard_items(path) if path.is_file() else None
        if done is not None:
            items, old_planned = done
            if old_planned != planned:
                raise DataError(
                    f"{path}: was written for a different list of images (the input folder "
                    "changed); use a new output folder"
                )
            skipped += 1
            done_names = {it["file_name"] for it in items}
            failed += [(r.name, unreadable_reason(r, size, path, tokenizer.cfg.background))
                       for r in chunk if r.name not in done_names]
        else:
            loaded = load_records(chunk, size, tokenizer.cfg.background)
            failed += loaded.failed
            means, logvars = [], []
            with torch.no_grad():
                for i in range(0, len(loaded.images), batch_size):
                    post = tokenizer.encode(torch.from_numpy(loaded.images[i: i + batch_size]))
                    means.append(post.mean.to(torch.float16).cpu())
                    logvars.append(post.logvar.to(torch.float16).cpu())
            K, C = tokenizer.cfg.num_latent_tokens, tokenizer.cfg.token_channels
            mean = torch.cat(means) if means else torch.zeros(0, K, C, dtype=torch.float16)
            logvar = torch.cat(logvars) if logvars else torch.zeros(0, K, C, dtype=torch.float16)
            items = [{"file_name": r.name, "caption": r.caption} for r in loaded.records]
            rows = json.dumps({"items": items, "planned": planned})
            _write_atomic(path, save({"mean": mean.contiguous(), "logvar": logvar.contiguous()},
                                     metadata={"rows": rows}))
            written += 1
        for row, it in enumerate(items):
            all_items.append({**it, "shard": path.name, "row": row})
        if on_progress is not None:
            on_progress(len(chunk))
    if part[1] > 1:
        return TokenizeReport(len(all_items), written, skipped, failed)
    _write_json_atomic(out / INDEX_FILE, {"version": FORMAT_VERSION, "num_items": len(all_items),
                                          "shard_size": shard_size, "items": all_items})
    failed_path = out / FAILED_FILE
    if failed:
        _write_json_atomic(failed_path, [{"file_name": n, "reason": r} for n, r in failed])
    else:
        failed_path.unlink(missing_ok=True)
    return TokenizeReport(len(all_items), written, skipped, failed)


@dataclass
class LatentShards:
    """A latents folder in memory: mean, logvar fp16 (N, K, C) + captions and file names."""

    mean: torch.Tensor
    logvar: torch.Tensor
    captions: list[str | None]
    file_names: list[str]
    tokenizer: dict

    def __len__(self) -> int:
        return self.mean.shape[0]

    def sample(self, index: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """z = mean + std * eps for rows ``index`` (fp32, (len(index), K, C))."""
        mean = self.mean[index].float()
        std = torch.exp(0.5 * self.logvar[index].float())
        return mean + std * torch.randn(mean.shape, generator=generator)


def read_shards(folder: str | Path) -> LatentShards:
    """Load a latents folder written by ``write_shards`` (raises DataError when incomplete)."""
    folder = Path(folder)
    index_path, info_path = folder / INDEX_FILE, folder / TOKENIZER_FILE
    if not index_path.is_file() or not info_path.is_file():
        raise DataError(
            f"{folder}: not a finished latents folder (needs {INDEX_FILE} and {TOKENIZER_FILE}); "
            "run `flowtok tokenize IMAGES -o FOLDER` (again) to finish it"
        )
    index, info = _read_json(index_path), _read_json(info_path)
    items = index["items"]
    shards: dict[str, dict[str, torch.Tensor]] = {}
    for name in sorted({it["shard"] for it in items}):
        try:
            shards[name] = load_safetensors(folder / name)
        except CheckpointError as e:
            raise DataError(f"{e}; delete it and rerun tokenize to redo it") from e
    K, C = info["K"], info["C"]
    if items:
        rows: dict[str, list[int]] = {}
        for it in items:
            rows.setdefault(it["shard"], []).append(it["row"])
        order = list(rows)  # shards in index order; within a shard, rows in index order
        if [it["shard"] for it in items] != [n for n in order for _ in rows[n]]:
            raise DataError(f"{index_path}: items are not grouped by shard; rerun tokenize")
        mean = torch.cat([shards[n]["mean"][torch.tensor(rows[n])] for n in order])
        logvar = torch.cat([shards[n]["logvar"][torch.tensor(rows[n])] for n in order])
    else:
        mean = logvar = torch.zeros(0, K, C, dtype=torch.float16)
    if mean.shape[1:] != (K, C):
        raise DataError(f"{folder}: shards hold {tuple(mean.shape[1:])} latents, "
                        f"tokenizer.json says ({K}, {C})")
    return LatentShards(mean=mean, logvar=logvar, captions=[it["caption"] for it in items],
                        file_names=[it["file_name"] for it in items], tokenizer=info)

