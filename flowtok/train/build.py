"""Assemble a flow training run from folders: a tokenizer, training data (an image folder or
webdataset latent shards), held-out images, per-image styles, the text encoder and starting
weights -> a FlowTask, and the Trainer that runs it.

`flowtok train flow` and the benchmark scripts (benchmarks/flow/) build their runs here, so a
run is put together one way; config resolution (presets, files, ``--set``) stays with the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from flowtok.config import FlowTokConfig
from flowtok.train.flow_task import FlowTask
from flowtok.train.trainer import Trainer

VAL_LIMIT = 1000  # held-out images encoded for evaluation; more only slow every evaluation down


def build_flow_task(cfg: FlowTokConfig, direction: str, tokenizer: str | Path, data: str | Path,
                    *, val: str | Path | None = None, val_limit: int | None = VAL_LIMIT,
                    eval_prompts: int = 0, init: str | Path | None = None,
                    device: str | torch.device | None = None, shuffle_buffer: int = 1000,
                    on_encode: Callable[[Path], None] | None = None) -> FlowTask:
    """The FlowTask that trains ``direction`` ("t2i" or "i2t") under ``cfg``.

    ``tokenizer``: a tokenizer folder; ``cfg.tokenizer`` is set to its config (the flow lives in
    its latent space). ``data``: an image folder with captions, encoded with the tokenizer
    (``on_encode(data)`` is called first: it takes a while), or webdataset shards of latents,
    streamed. ``val``: held-out images, the first ``val_limit`` of them (None: all).
    ``eval_prompts``: for t2i on shapes data, this many canonical prompts scored by ShapesEval
    at each evaluation (0: none). ``init``: a model folder whose ``direction`` model to start
    from. ``device``: as ``flowtok.device.local_device`` (``cuda:LOCAL_RANK`` under torchrun).

    With ``cfg.flow.style_key`` every image's style is read from its folder's metadata.jsonl
    (flowtok.data.styles), which shards do not carry: a ConfigError."""
    from flowtok.data.latents import latents_from_folder, stream_head
    from flowtok.data.webdataset import SlotStreams, has_shards, latent_sample
    from flowtok.device import local_device
    from flowtok.errors import ConfigError, DataError
    from flowtok.text.encoders import build_text_encoder
    from flowtok.tokenizer.model import Tokenizer

    tok = Tokenizer.from_pretrained(tokenizer)
    cfg.tokenizer = tok.cfg  # the flow model lives in this tokenizer's latent space
    dev = local_device(device)
    tok.to(dev)
    if has_shards(data):  # webdataset latents: streamed, captions encoded per batch
        train = SlotStreams(data, latent_sample, cfg.train_flow.seed, shuffle_buffer)
        head = stream_head(train, 1)
        if head.mean.shape[1:] != (cfg.K, cfg.C):
            raise DataError(f"{data}: shards hold {tuple(head.mean.shape[1:])} latents, "
                            f"{tokenizer} makes ({cfg.K}, {cfg.C}); tokenize with it")
        first_caption = head.captions[0]
    else:
        if on_encode is not None:
            on_encode(Path(data))
        train = latents_from_folder(tok, data)
        first_caption = train.captions[0]
    val_set = latents_from_folder(tok, val, limit=val_limit) if val is not None else None
    if cfg.flow.style_key:  # a style per image (flowtok.data.styles)
        if has_shards(data):
            raise ConfigError("flow.style_key needs an image folder as --data, not shards")
        from flowtok.data.styles import attach_styles

        for folder, latents in ((data, train), (val, val_set)):
            if latents is not None:
                attach_styles(cfg.flow, folder, latents)
    prompts = _shapes_prompts(eval_prompts, first_caption) if direction == "t2i" else None
    t = cfg.text
    encoder = build_text_encoder(t.encoder, cfg.K, t.feature_dim, t.encoder_path,
                                 pooled_token=t.pooled_token, feature_layers=t.feature_layers)
    start = None
    if init is not None:
        from flowtok.pipeline import FlowTokPipeline

        start = getattr(FlowTokPipeline.from_pretrained(init, device="cpu"), direction)
        if start is None:
            raise DataError(f"{init}: has no {direction}/ model to start from")
    return FlowTask(cfg, direction, tok, encoder, train, val_set, prompts, device=dev, init=start)


def _shapes_prompts(n: int, first_caption: str) -> list[str] | None:
    """``n`` canonical shapes prompts when the data are shapes captions (and ``n`` > 0)."""
    if n <= 0:
        return None
    from flowtok.eval.shapes_eval import parse_caption

    if parse_caption(first_caption) is None:
        return None
    from flowtok.data.shapes import canonical_prompts

    return canonical_prompts(n, seed=0)


def flow_trainer(task: FlowTask, out: str | Path, *, cfg: FlowTokConfig | None = None,
                 progress: bool = False) -> Trainer:
    """The Trainer of ``task`` writing the run folder ``out``, under ``cfg`` (default: the
    task's own). Another ``cfg`` may differ from the task's in the schedule alone (max_steps,
    warmup, eval / checkpoint intervals, which FlowTask never reads), e.g. sized to a time box
    after timing a few of the task's steps."""
    cfg = cfg or task.cfg
    return Trainer(task, cfg.train_flow, out, full_config=cfg, device=str(task.device),
                   progress=progress)
