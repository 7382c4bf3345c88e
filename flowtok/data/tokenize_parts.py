"""`tokenize` split across worker processes or torchrun ranks: shard i belongs to part i % n.

Both shard writers are resumable and skip finished shards, so the parts never coordinate: each
writes its own shards, and a final single pass (``part=(0, 1)``) over the whole list only reads
what the parts wrote and assembles the index / failed list.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = ("safetensors", "webdataset")


def encode(records: list, tokenizer, out: Path, tokenizer_dir: Path, fmt: str, *,
           batch_size: int, shard_size: int, part: tuple[int, int] = (0, 1), on_progress=None):
    """Write part ``part`` of the shards in format ``fmt``; returns a shards.TokenizeReport."""
    if fmt == "webdataset":
        from flowtok.data.webdataset import write_latent_tars

        return write_latent_tars(records, tokenizer, out, tokenizer_dir, batch_size=batch_size,
                                 shard_size=shard_size, part=part, on_progress=on_progress)
    from flowtok.data.shards import write_shards

    return write_shards(records, tokenizer, out, tokenizer_dir, batch_size=batch_size,
                        shard_size=shard_size, on_progress=on_progress, part=part)


def _worker(images: str, out: str, tokenizer_dir: str, device: str, fmt: str, batch_size: int,
            shard_size: int, part: tuple[int, int], threads: int) -> tuple[int, int]:
    """One spawned worker: its own tokenizer, its own shards. Returns (written, skipped)."""
    import torch

    from flowtok.data.imagefolder import scan_folder
    from flowtok.tokenizer.model import Tokenizer

    torch.set_num_threads(threads)
    tok = Tokenizer.from_pretrained(tokenizer_dir, device=torch.device(device))
    rep = encode(scan_folder(images), tok, Path(out), Path(tokenizer_dir), fmt,
                 batch_size=batch_size, shard_size=shard_size, part=part)
    return rep.shards_written, rep.shards_skipped


def run_workers(images: Path, out: Path, tokenizer_dir: Path, device: str, fmt: str, *,
                batch_size: int, shard_size: int, workers: int) -> int:
    """Encode every part in ``workers`` spawned processes (GPUs round-robin on CUDA, CPU cores
    split evenly on CPU); returns the number of shards they wrote."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    import torch

    dev = torch.device(device)
    gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = []
    for w in range(workers):
        d = f"cuda:{w % gpus}" if gpus else "cpu"
        jobs.append((str(images), str(out), str(tokenizer_dir), d, fmt, batch_size, shard_size,
                     (w, workers), threads))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        results = list(ex.map(_worker, *zip(*jobs)))
    return sum(written for written, _ in results)


def run_rank_part(records: list, tokenizer, out: Path, tokenizer_dir: Path, fmt: str, *,
                  batch_size: int, shard_size: int, on_progress=None) -> int:
    """Under torchrun: this rank writes part (rank, world), then waits for the others; returns
    the number of shards all ranks wrote."""
    import torch
    import torch.distributed as dist

    from flowtok.device import init_process_group

    info = init_process_group(torch.device("cpu"))  # gloo: only a barrier and one sum
    rep = encode(records, tokenizer, out, tokenizer_dir, fmt, batch_size=batch_size,
                 shard_size=shard_size, part=(info.rank, info.world), on_progress=on_progress)
    written = torch.tensor([rep.shards_written])
    dist.all_reduce(written)
    return int(written.item())
