"""The one training loop every flowtok model uses (tokenizer, flow model, captioner).

A model plugs in as a ``TrainTask``: it names its trainable modules and supplies data, loss,
evaluation and sample grids. The trainer owns everything else: AdamW, warmup + cosine/constant
schedule, grad clipping, EMA, bf16 autocast on CUDA, logging, non-finite-loss handling,
atomic checkpoints, exact resume, time boxes and SIGINT.

Exact resume rests on one rule: the data for step ``s`` is a pure function of ``s`` (the task's
``batch(step, generator)`` gets a generator seeded by (seed, step)), so a checkpoint needs no
iterator state; every other random draw comes from the global RNGs, which are checkpointed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from flowtok.config import FlowTokConfig, TrainConfig, save_config
from flowtok.device import precision_autocast, resolve_device
from flowtok.errors import ConfigError, FlowTokError
from flowtok.train import distributed
from flowtok.train.checkpoint import (
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from flowtok.train.ema import EMA
from flowtok.train.schedule import lr_multiplier

MAX_BAD_STEPS_IN_A_ROW = 5  # non-finite losses tolerated back to back before training stops


@runtime_checkable
class TrainTask(Protocol):
    """What a model supplies to the trainer."""

    def modules(self) -> dict[str, nn.Module]:
        """Trainable modules by name; all are optimised, saved and EMA'd."""

    def batch(self, step: int, generator: torch.Generator) -> Any:
        """The (deterministic) batch for ``step``; tensors anywhere in it are moved to device."""

    def loss(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss to minimise and named floats to log."""

    def evaluate(self, ema_modules: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Held-out metrics computed with the EMA (or raw, when EMA is off) modules."""

    def samples(self, ema_modules: dict[str, nn.Module], step: int) -> Any:
        """A PIL image grid to save as samples/step_N.png, or None."""


def _param_groups(modules: dict[str, nn.Module], weight_decay: float) -> list[dict]:
    """Decay matrices only: biases, norms and embeddings-as-vectors are left alone."""
    decay, no_decay = [], []
    for mod in modules.values():
        for p in mod.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """Runs ``task`` under ``cfg`` and writes the run folder ``out_dir``."""

    def __init__(self, task: TrainTask, cfg: TrainConfig, out_dir: Path, *,
                 full_config: FlowTokConfig, device: str | None = None, progress: bool = True):
        self.task, self.cfg, self.out_dir = task, cfg, Path(out_dir)
        self.full_config, self.progress = full_config, progress
        self.device = resolve_device(device)
        if cfg.max_steps <= 0:
            raise ConfigError(f"train.max_steps must be positive, got {cfg.max_steps}")
        self.scale = distributed.ScaleOut(cfg, self.device)  # torchrun ranks, DDP/FSDP, grad_accum
        self.device = self.scale.device
        torch.manual_seed(cfg.seed)
        self.modules = {k: m.to(self.device) for k, m in task.modules().items()}
        self.ema = ({k: EMA(m, cfg.ema_decay) for k, m in self.modules.items()}
                    if cfg.ema_decay > 0 else None)
        self.scale.wrap(task, self.modules, self.ema)  # before the optimizer: FSDP swaps params
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.modules, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas),
            foreach=True,
        )
        self.state = TrainState(step=0)
        self._interrupted = threading.Event()

    # ------------------------------------------------------------------ helpers

    def ema_modules(self) -> dict[str, nn.Module]:
        """EMA copies when EMA is on, else the live modules."""
        return {k: e.module for k, e in self.ema.items()} if self.ema else self.modules

    def _autocast(self):
        """Autocast for train.precision on this device (flowtok.device.precision_autocast)."""
        return precision_autocast(self.cfg.precision, self.device)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.scale.is_main:
            return
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def save(self) -> Path:
        for m in self.modules.values():
            m.train()
        if self.ema:
            self.state.ema_updates = next(iter(self.ema.values())).num_updates
        self.scale.sync_ema(self.ema)
        mods, ema_mods, opt = self.scale.checkpoint_views(
            self.modules, self.ema_modules() if self.ema else None, self.optimizer, gather=True)
        folder = None
        if self.scale.is_main:  # one writer (full state dicts); the other ranks wait
            folder = save_checkpoint(self.out_dir, self.state, mods, ema_mods, opt,
                                     self.full_config, self.cfg.keep_checkpoints)
            export = getattr(self.task, "export", None)
            if export is not None:
                export(self.ema_modules(), self.out_dir)
        distributed.barrier()
        return folder

    def resume(self) -> bool:
        """Load the latest checkpoint of ``out_dir``; False when there is none."""
        folder = latest_checkpoint(self.out_dir)
        if folder is None:
            return False
        mods, ema_mods, opt = self.scale.checkpoint_views(
            self.modules, self.ema_modules() if self.ema else None, self.optimizer, gather=False)
        self.state = load_checkpoint(folder, mods, ema_mods, opt)
        self.scale.after_load(self.ema)
        if self.ema:
            for e in self.ema.values():
                e.num_updates = self.state.ema_updates
        return True

    def _evaluate(self, step: int) -> dict[str, float]:
        self.scale.sync_ema(self.ema)
        if not self.scale.is_main:  # rank 0 evaluates; the others wait at the next collective
            return {}
        mods = self.ema_modules()
        for m in mods.values():
            m.eval()
        with torch.no_grad(), self._autocast():
            metrics = self.task.evaluate(mods, step)
            grid = self.task.samples(mods, step)
        for m in self.modules.values():
            m.train()
        if grid is not None:
            (self.out_dir / "samples").mkdir(exist_ok=True)
            grid.save(self.out_dir / "samples" / f"step_{step}.png")
        self._log({"step": step, "eval": metrics})
        return metrics

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._interrupted.is_set():  # a second Ctrl-C: stop now, without the checkpoint
                raise KeyboardInterrupt
            self._interrupted.set()  # the first: finish this step, save a checkpoint, stop

        return signal.signal(signal.SIGINT, handler)

    # ------------------------------------------------------------------ the loop

    def fit(self, resume: bool = False, max_minutes: float | None = None,
            stop_after: int | None = None) -> dict[str, Any]:
        """Train to cfg.max_steps (or until the time box / SIGINT / step ``stop_after``, each of
        which ends with a checkpoint); return the final metrics.

        The returned dict has ``step``, ``stopped`` ("done" | "time" | "interrupted" | "stop_after"), the last
        logged losses under ``train`` and the last evaluation under ``eval``.
        """
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.scale.is_main:
            save_config(self.full_config, self.out_dir / "config.json")
        if resume:
            self.resume()  # no checkpoint yet: start from step 0 (the CLI warns)
        for m in self.modules.values():
            m.train()
        previous_handler = self._install_sigint()
        start_time = time.monotonic()
        bar = None
        if self.progress and self.scale.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.state.step, dynamic_ncols=True,
                       desc="train")
        stopped, train_metrics, eval_metrics = "done", {}, {}
        bad_in_a_row = 0
        window_start, window_steps = time.monotonic(), 0
        try:
            while self.state.step < cfg.max_steps:
                step = self.state.step
                if stop_after is not None and step >= stop_after:
                    stopped = "stop_after"
                    break
                if distributed.agree(self._interrupted.is_set()):
                    stopped = "interrupted"
                    break
                if distributed.agree(max_minutes is not None
                                     and time.monotonic() - start_time > max_minutes * 60):
                    stopped = "time"
                    break
                lr = cfg.lr * lr_multiplier(step, cfg)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                # forward + backward (+ micro-batches, + all-reduce across ranks) + clipping
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                loss, logs, finite, grad_norm = self.scale.forward_backward(
                    self.task, step, seed=cfg.seed, params=params, grad_clip=cfg.grad_clip,
                    autocast=self._autocast)
                if not finite:
                    self.optimizer.zero_grad(set_to_none=True)
                    self.state.bad_steps += 1
                    bad_in_a_row += 1
                    self._log({"step": step, "skipped": "non-finite loss or gradient"})
                    if bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
                        raise FlowTokError(
                            f"{self.out_dir}: loss was NaN/Inf for {bad_in_a_row} steps in a row "
                            f"at step {step}; the last good checkpoint is kept; lower train.lr "
                            "or check the data, then --resume"
                        )
                    self.state.step += 1
                    continue
                bad_in_a_row = 0
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema:
                    for k, e in self.ema.items():
                        e.update(self.modules[k])
                self.state.step += 1
                window_steps += 1
                if bar is not None:
                    bar.update(1)
                done = self.state.step
                if done % cfg.log_every == 0 or done == cfg.max_steps:
                    dt = max(time.monotonic() - window_start, 1e-9)
                    train_metrics = {"loss": float(loss.detach()), **logs, "lr": lr,
                                     "grad_norm": grad_norm, "s_per_step": dt / window_steps,
                                     "images_per_s": window_steps * self.scale.global_batch(cfg.batch_size) / dt}
                    self._log({"step": done, "time_s": time.monotonic() - start_time,
                               **train_metrics})
                    if bar is not None:
                        bar.set_postfix(loss=f"{train_metrics['loss']:.4g}",
                                        img_s=f"{train_metrics['images_per_s']:.0f}")
                    window_start, window_steps = time.monotonic(), 0
                if cfg.eval_every > 0 and done % cfg.eval_every == 0 and done < cfg.max_steps:
                    eval_metrics = self._evaluate(done)
                if cfg.ckpt_every > 0 and done % cfg.ckpt_every == 0 and done < cfg.max_steps:
                    self.save()
        finally:
            if bar is not None:
                bar.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        self.save()
        eval_metrics = self._evaluate(self.state.step)
        return {"step": self.state.step, "stopped": stopped, "bad_steps": self.state.bad_steps,
                "minutes": (time.monotonic() - start_time) / 60, "train": train_metrics,
                "eval": eval_metrics}
