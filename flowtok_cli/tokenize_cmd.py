"""`flowtok tokenize` (images -> latent shards) and `flowtok detokenize` (shards -> PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import BatchSizeOpt, DeviceOpt, JsonOpt, OutOpt

TokenizerOpt = Annotated[
    Path | None, typer.Option("--tokenizer", "-t", help="Tokenizer folder (config.json + "
                              "model.safetensors), e.g. runs/tok/model (default: the shipped "
                              "model's).")
]
MAX_LISTED = 5  # skipped files named in the warning; the count covers the rest


def default_tokenizer() -> Path:
    """The shipped model's tokenizer, as generate and caption default to the shipped model."""
    from flowtok.errors import ConfigError
    from flowtok.pipeline import default_model_path

    model = default_model_path()
    if model is None:
        raise ConfigError("this install ships no default model; pass --tokenizer DIR")
    return model / "tokenizer"


def tokenize(
    images: Annotated[Path, typer.Argument(help="Folder of images (recursive).")],
    out: OutOpt,
    tokenizer: TokenizerOpt = None,
    batch_size: BatchSizeOpt = 64,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Images per shard.")] = 4096,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    fmt: Annotated[str, typer.Option(
        "--format", help="safetensors (shard_N.safetensors + index.json) or webdataset "
        "(000000.tar with key.latents.safetensors / key.txt / key.json).")] = "safetensors",
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Processes sharing the work (GPUs round-robin); under torchrun "
        "each rank writes its own shards instead.")] = 1,
) -> None:
    """Encode a folder of images into latent shards (posterior mean + logvar, fp16).

    Captions come from metadata.jsonl or .txt sidecars. Each shard is written atomically, so
    an interrupted run (Ctrl-C, kill, full disk) keeps every finished shard: rerun the same
    command to do only the missing ones. Unreadable files are listed in OUT/failed.json and the
    command exits 1 after writing every readable image. Files that are not images (png, jpg,
    jpeg, webp, bmp, gif, tif, tiff) or captions are skipped and named in a warning.

    Examples:
      flowtok tokenize data/emoji/train -o latents/emoji
      flowtok tokenize data/shapes/train -o latents/shapes --tokenizer runs/tok/model
      flowtok tokenize imgs/ -o latents/ -t runs/tok/model --batch-size 256 --shard-size 8192
      flowtok tokenize imgs/ -o wds/ -t runs/tok/model --format webdataset --workers 4
      torchrun --nproc-per-node 8 -m flowtok_cli tokenize imgs/ -o wds/ -t runs/tok/model --format webdataset
    """
    from flowtok.data import tokenize_parts
    from flowtok.data.imagefolder import image_formats, scan_folder
    from flowtok.data.shards import FAILED_FILE
    from flowtok.device import env_info, local_device
    from flowtok.tokenizer.model import Tokenizer

    if fmt not in tokenize_parts.FORMATS:
        raise common.usage_error(f"--format {fmt}: use {' or '.join(tokenize_parts.FORMATS)}")
    tokenizer = tokenizer or default_tokenizer()
    tok = Tokenizer.from_pretrained(tokenizer, device=local_device(device))
    skipped: list[str] = []
    records = scan_folder(images, skipped)
    if not records:
        raise common.usage_error(f"{images}: no images found (reads {image_formats()})")
    if skipped:
        shown = ", ".join(skipped[:MAX_LISTED]) + (" …" if len(skipped) > MAX_LISTED else "")
        common.warn(f"skipped {len(skipped)} file(s) that are not {image_formats()} images: "
                    f"{shown}")
    common.check_out_dir(out)
    bar = None
    if not json_out and common.is_tty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(records), desc="tokenize", unit="img")
    try:
        parts_written, dist = 0, env_info()
        sizes = {"batch_size": batch_size, "shard_size": shard_size}
        if dist.world > 1:  # torchrun: every rank writes its own shards, rank 0 then indexes
            parts_written = tokenize_parts.run_rank_part(records, tok, out, tokenizer, fmt,
                                                         **sizes)
            if not dist.is_main:
                return
        elif workers > 1:
            parts_written = tokenize_parts.run_workers(images, out, tokenizer, str(tok._device()),
                                                       fmt, workers=workers, **sizes)
        report = tokenize_parts.encode(records, tok, out, tokenizer, fmt, **sizes,
                                       on_progress=bar.update if bar else None)
        report.shards_written += parts_written
        report.shards_skipped -= parts_written
    except KeyboardInterrupt:
        typer.echo(f"interrupted; finished shards in {out} are kept; rerun the same command "
                   "to continue", err=True)
        raise typer.Exit(code=130) from None
    finally:
        if bar is not None:
            bar.close()
    result = {"out": str(out), "latents": report.num_items, "shards_written":
              report.shards_written, "shards_skipped": report.shards_skipped,
              "failed": len(report.failed), "skipped_files": len(skipped),
              "K": tok.cfg.num_latent_tokens,
              "C": tok.cfg.token_channels}
    if json_out:
        common.print_json(result)
    else:
        common.print_table([(k, str(v)) for k, v in result.items()], title="tokenize")
    if report.failed:
        for name, why in report.failed[:10]:
            common.warn(f"unreadable: {name}: {why}")
        raise common.runtime_error(
            f"{len(report.failed)} file(s) could not be read; listed in {out / FAILED_FILE}")


def detokenize(
    latents: Annotated[Path, typer.Argument(help="Latents folder written by `flowtok tokenize`.")],
    out: OutOpt,
    tokenizer: TokenizerOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Latents per decode.")] = 64,
    sample: Annotated[bool, typer.Option(
        "--sample", help="Decode a posterior sample instead of the mean.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --sample.")] = 0,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Decode latent shards back to PNGs (same relative names) + metadata.jsonl with captions.

    The tokenizer defaults to the one recorded in LATENTS/tokenizer.json.

    Examples:
      flowtok detokenize latents/shapes -o recon/
      flowtok detokenize latents/shapes -o recon/ --tokenizer runs/tok/model --sample --seed 1
    """
    from flowtok.detokenize import decode_shards

    images, path = decode_shards(latents, out, tokenizer, batch_size=batch_size, sample=sample,
                                 seed=seed, device=device)
    result = {"out": str(out), "images": images, "tokenizer": str(path)}
    if json_out:
        common.print_json(result)
    else:
        common.print_table([(k, str(v)) for k, v in result.items()], title="detokenize")
