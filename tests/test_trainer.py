"""The common Trainer: exact resume, schedule, EMA, checkpoint folders, non-finite losses,
time boxes; exercised with the tiny tokenizer task and a toy regression task."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import flowtok.device
from flowtok.config import TrainConfig, load_preset
from flowtok.errors import FlowTokError
from flowtok.train.checkpoint import latest_checkpoint
from flowtok.train.ema import EMA
from flowtok.train.schedule import lr_multiplier
from flowtok.train.tokenizer_task import TokenizerTask, epoch_indices
from flowtok.train.trainer import Trainer


def _tiny_task(seed: int = 0):
    cfg = load_preset("tiny")
    cfg.train_tokenizer.max_steps = 6
    cfg.train_tokenizer.eval_every = 2
    cfg.train_tokenizer.ckpt_every = 2
    cfg.train_tokenizer.log_every = 1
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    torch.manual_seed(0)
    return cfg, TokenizerTask(cfg, images, images[:4])


def _weights(folder):
    return load_file(str(folder / "model.safetensors")), load_file(str(folder /
                                                                       "ema_model.safetensors"))


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    cfg, task = _tiny_task()
    Trainer(task, cfg.train_tokenizer, tmp_path / "a", full_config=cfg, device="cpu",
            progress=False).fit()
    cfg, task = _tiny_task()
    first = Trainer(task, cfg.train_tokenizer, tmp_path / "b", full_config=cfg, device="cpu",
                    progress=False).fit(stop_after=3)
    assert first["stopped"] == "stop_after" and first["step"] == 3
    torch.manual_seed(123)  # a fresh process would start from other RNG states: resume restores
    np.random.seed(7)
    cfg, task = _tiny_task()
    second = Trainer(task, cfg.train_tokenizer, tmp_path / "b", full_config=cfg, device="cpu",
                     progress=False).fit(resume=True)
    assert second["step"] == 6 and second["stopped"] == "done"
    a, b = _weights(tmp_path / "a/checkpoints/step_6"), _weights(tmp_path / "b/checkpoints/step_6")
    for da, db in zip(a, b):
        assert da.keys() == db.keys()
        for k in da:
            assert torch.equal(da[k], db[k]), k
    assert (tmp_path / "b/model/model.safetensors").is_file()  # EMA export at the end
    assert (tmp_path / "b/samples/step_6.png").is_file()


def test_checkpoint_folder_layout_pointer_and_pruning(tmp_path):
    cfg, task = _tiny_task()
    cfg.train_tokenizer.keep_checkpoints = 2
    Trainer(task, cfg.train_tokenizer, tmp_path, full_config=cfg, device="cpu",
            progress=False).fit()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_4", "step_6"]
    assert latest_checkpoint(tmp_path) == root / "step_6"
    files = sorted(p.name for p in (root / "step_6").iterdir())
    assert files == ["config.json", "ema_model.safetensors", "model.safetensors",
                     "optimizer.json", "optimizer.safetensors", "rng.safetensors",
                     "trainer_state.json"]
    state = json.loads((root / "step_6/trainer_state.json").read_text())
    assert state["step"] == 6 and state["data_position"] == 6
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert all("psnr" in r["eval"] for r in log if "eval" in r)


def test_warmup_then_cosine_reaches_the_floor():
    cfg = TrainConfig(warmup_steps=10, max_steps=110, min_lr_ratio=0.1, schedule="cosine")
    assert lr_multiplier(0, cfg) == pytest.approx(0.1)
    assert lr_multiplier(9, cfg) == pytest.approx(1.0)
    assert lr_multiplier(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(110, cfg) == pytest.approx(0.1)
    assert lr_multiplier(500, TrainConfig(warmup_steps=10, schedule="constant")) == 1.0


def test_ema_follows_the_closed_form():
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, decay=0.5)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)  # effective decay min(0.5, 2/11) = 2/11
    assert float(ema.module.weight) == pytest.approx(1 - 2 / 11)


def test_batches_are_a_pure_function_of_the_step():
    a = epoch_indices(10, 4, step=2, seed=0)  # items 8, 9 of epoch 0 then 0, 1 of epoch 1
    assert a.tolist() == epoch_indices(10, 4, step=2, seed=0).tolist()
    epoch0 = torch.cat([epoch_indices(10, 5, s, 0) for s in range(2)])
    assert sorted(epoch0.tolist()) == list(range(10))  # an epoch visits every item once


class _ToyTask:
    """Fit y = 3x; ``poison`` makes the loss NaN from that step on."""

    def __init__(self, poison: int | None = None):
        self.lin = nn.Linear(1, 1)
        self.poison = poison

    def modules(self):
        return {"lin": self.lin}

    def batch(self, step, generator):
        x = torch.randn(8, 1, generator=generator)
        return x, 3 * x

    def loss(self, batch, step):
        x, y = batch
        loss = ((self.lin(x) - y) ** 2).mean()
        if self.poison is not None and step >= self.poison:
            loss = loss * math.nan
        return loss, {}

    def evaluate(self, ema_modules, step):
        return {"w": float(ema_modules["lin"].weight)}

    def samples(self, ema_modules, step):
        return None


def _toy_cfg(**kw):
    base = {"max_steps": 100, "warmup_steps": 0, "lr": 0.2, "ema_decay": 0.0, "log_every": 5,
                "eval_every": 0, "ckpt_every": 10, "weight_decay": 0.0}
    return TrainConfig(**{**base, **kw})


def test_toy_regression_converges_and_reports_metrics(tmp_path):
    result = Trainer(_ToyTask(), _toy_cfg(), tmp_path, full_config=load_preset("tiny"),
                     device="cpu", progress=False).fit()
    assert result["eval"]["w"] == pytest.approx(3.0, abs=0.1)
    assert result["stopped"] == "done" and result["train"]["s_per_step"] > 0


def test_repeated_nan_losses_stop_with_a_clear_error_keeping_the_last_checkpoint(tmp_path):
    trainer = Trainer(_ToyTask(poison=12), _toy_cfg(), tmp_path, full_config=load_preset("tiny"),
                      device="cpu", progress=False)
    with pytest.raises(FlowTokError, match="NaN/Inf for 5 steps in a row"):
        trainer.fit()
    assert latest_checkpoint(tmp_path).name == "step_10"
    skipped = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sum("skipped" in r for r in skipped) == 5


def test_a_single_nan_step_is_skipped_and_counted(tmp_path):
    class OneBad(_ToyTask):
        def loss(self, batch, step):
            loss, logs = super().loss(batch, step)
            return (loss * math.nan if step == 3 else loss), logs

    result = Trainer(OneBad(), _toy_cfg(), tmp_path, full_config=load_preset("tiny"),
                     device="cpu", progress=False).fit()
    assert result["bad_steps"] == 1 and result["step"] == 100


def test_time_box_stops_cleanly_with_a_checkpoint(tmp_path):
    result = Trainer(_ToyTask(), _toy_cfg(), tmp_path, full_config=load_preset("tiny"),
                     device="cpu", progress=False).fit(max_minutes=0.0)
    assert result["stopped"] == "time" and result["step"] == 0
    assert latest_checkpoint(tmp_path).name == "step_0"


class _DtypeProbe(_ToyTask):
    """Records the dtype the linear layer computes in (bf16 under CPU autocast)."""

    seen: list

    def loss(self, batch, step):
        x, y = batch
        out = self.lin(x)
        self.seen = [*getattr(self, "seen", []), out.dtype]
        return ((out.float() - y) ** 2).mean(), {}


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("auto", torch.float32),
                                              ("fp32", torch.float32)])
def test_cpu_precision_bf16_autocasts_and_auto_stays_fp32(tmp_path, monkeypatch, precision, dtype):
    monkeypatch.setattr(flowtok.device, "cpu_has_native_bf16", lambda: True)
    task = _DtypeProbe()
    result = Trainer(task, _toy_cfg(precision=precision, max_steps=60), tmp_path,
                     full_config=load_preset("tiny"), device="cpu", progress=False).fit()
    assert set(task.seen) == {dtype}
    assert result["eval"]["w"] == pytest.approx(3.0, abs=0.1)  # and it still trains


def test_cpu_bf16_without_native_units_warns_and_trains_in_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(flowtok.device, "cpu_has_native_bf16", lambda: False)
    task = _DtypeProbe()
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        Trainer(task, _toy_cfg(precision="bf16", max_steps=5), tmp_path,
                full_config=load_preset("tiny"), device="cpu", progress=False).fit()
    assert set(task.seen) == {torch.float32}
