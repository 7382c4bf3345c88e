"""Faults while running: NaN/Inf losses, gradients and weights, a full disk while writing a
checkpoint or a shard, a crash while swapping a checkpoint, Ctrl-C twice. Each ends with a clear
error and the last good checkpoint / finished shards intact, and resuming then gives the result
of a run that never failed."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from safetensors import SafetensorError
from torch import nn
from typer.testing import CliRunner

from flowtok.config import TrainConfig, load_preset
from flowtok.errors import CheckpointError, FlowTokError
from flowtok.tokenizer.model import Tokenizer
from flowtok.train import checkpoint as ckpt
from flowtok.train.checkpoint import latest_checkpoint
from flowtok.train.trainer import Trainer
from flowtok_cli.app import app

runner = CliRunner()
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class Toy:
    """Fit y = 3x (+ an unused parameter); ``fault(step, self)`` may return a loss multiplier."""

    def __init__(self, fault=None):
        torch.manual_seed(0)
        self.net = nn.Linear(1, 1)
        self.net.spare = nn.Parameter(torch.zeros(3))  # in no loss: NaN there leaves loss finite
        self.fault = fault

    def modules(self):
        return {"net": self.net}

    def batch(self, step, generator):
        x = torch.randn(8, 1, generator=generator)
        return x, 3 * x

    def loss(self, batch, step):
        x, y = batch
        loss = ((self.net(x) - y) ** 2).mean()
        scale = self.fault(step, self) if self.fault else None
        return (loss * scale if scale is not None else loss), {}

    def evaluate(self, ema_modules, step):
        return {"w": float(ema_modules["net"].weight)}

    def samples(self, ema_modules, step):
        return None


def _trainer(out, fault=None, **kw):
    cfg = TrainConfig(**{"max_steps": 10, "warmup_steps": 0, "lr": 0.1, "ema_decay": 0.9,
                         "log_every": 5, "eval_every": 0, "ckpt_every": 5, "weight_decay": 0.0,
                         **kw})
    return Trainer(Toy(fault), cfg, out, full_config=load_preset("tiny"), device="cpu",
                   progress=False)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**safetensors.torch.load_file(str(folder / "net.safetensors")),
            **{f"ema.{k}": v for k, v in
               safetensors.torch.load_file(str(folder / "ema_net.safetensors")).items()}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 10-step run every faulty run must end up equal to after --resume."""
    out = tmp_path_factory.mktemp("ref")
    _trainer(out).fit()
    return _weights(out / "checkpoints/step_10")


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


# ----------------------------------------------------------------------------- numerical faults


def test_inf_losses_in_a_row_stop_with_a_clear_message_and_keep_the_last_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, lambda step, task: math.inf if step >= 7 else None,
                       max_steps=20)
    with pytest.raises(FlowTokError, match="NaN/Inf for 5 steps in a row at step 11") as info:
        trainer.fit()
    assert "last good checkpoint is kept" in str(info.value)
    assert latest_checkpoint(tmp_path).name == "step_5"
    assert not (tmp_path / "checkpoints/step_10").exists()  # the bad steps were never saved


def test_a_non_finite_gradient_with_a_finite_loss_is_skipped_and_counted(tmp_path):
    def inf_grad(step, task):
        if step == 3:
            task.hook = task.net.weight.register_hook(lambda g: g * math.inf)
        elif step == 4:
            task.hook.remove()

    result = _trainer(tmp_path, inf_grad).fit()
    assert result["bad_steps"] == 1 and result["step"] == 10
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "checkpoints/step_10")
               .values())
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "skipped" in r] == [3]


def test_nan_weights_are_never_written_over_the_last_good_checkpoint(tmp_path):
    def poison(step, task):
        if step == 8:
            with torch.no_grad():
                task.net.spare.fill_(math.nan)  # a blow-up the loss does not see

    with pytest.raises(CheckpointError, match="step_10: not saved: .* hold NaN/Inf") as info:
        _trainer(tmp_path, poison).fit()
    assert "last good checkpoint (step_5) is kept" in str(info.value)
    assert latest_checkpoint(tmp_path).name == "step_5"
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path / "checkpoints/step_5")
               .values())


# ----------------------------------------------------------------------------- disk full


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _fail_save_file_of(name):
    real = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        if ".step_10." in str(filename) and Path(filename).name == name:
            Path(filename).write_bytes(b"partial")  # what a full disk leaves behind
            raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")
        return real(tensors, filename, metadata)

    return "safetensors.torch.save_file", save_file


def _fail_fsync_of(part):
    real = os.fsync

    def fsync(fd):
        if part in _fd_path(fd):
            raise ENOSPC
        return real(fd)

    return "os.fsync", fsync


def _fail_pointer():
    real = ckpt.write_text_atomic

    def write_text_atomic(path, text):
        if text.strip() == "step_10":
            raise ENOSPC
        return real(path, text)

    return "flowtok.train.checkpoint.write_text_atomic", write_text_atomic


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("fault", [
    lambda: _fail_save_file_of("net.safetensors"),
    lambda: _fail_save_file_of("optimizer.safetensors"),
    lambda: _fail_fsync_of("trainer_state.json"),
    lambda: _fail_pointer(),
], ids=["weights", "optimizer", "fsync", "pointer"])
def test_a_full_disk_while_checkpointing_is_a_clear_error_and_resume_recovers(
        tmp_path, monkeypatch, reference, fault):
    target, fake = fault()
    _trainer(tmp_path).fit(stop_after=5)  # step_5: the last good checkpoint
    before = _digest(tmp_path / "checkpoints/step_5")
    with monkeypatch.context() as m:
        m.setattr(target, fake)
        with pytest.raises(CheckpointError, match="the disk is full") as info:
            _trainer(tmp_path).fit(resume=True)
    assert "previous checkpoint (step_5) is intact" in str(info.value)
    assert "\n" not in str(info.value)
    root = tmp_path / "checkpoints"
    assert latest_checkpoint(tmp_path) == root / "step_5"
    assert _digest(root / "step_5") == before
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]  # no half-written folders
    # space freed: --resume redoes steps 5..10 and ends exactly where an undisturbed run does
    assert _trainer(tmp_path).fit(resume=True)["step"] == 10
    _assert_same(_weights(root / "step_10"), reference)


def test_train_cli_reports_a_full_disk_in_one_line(tmp_path, monkeypatch):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), i * 60, np.uint8)).save(imgs / f"{i}.png")
    target, fake = _fail_fsync_of("trainer_state.json")
    monkeypatch.setattr(target, fake)
    res = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "--preset", "tiny",
                              "-o", str(tmp_path / "run"), "--set", "train_tokenizer.max_steps=2"])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "the disk is full" in res.stderr and "no earlier checkpoint exists" in res.stderr


def test_train_cli_reports_a_full_disk_while_exporting_the_model_in_one_line(tmp_path,
                                                                            monkeypatch):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), i * 60, np.uint8)).save(imgs / f"{i}.png")
    real = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        if Path(filename).parent.name.startswith(".model."):  # the export to RUN/model
            raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")
        return real(tensors, filename, metadata)

    monkeypatch.setattr("safetensors.torch.save_file", save_file)
    res = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "--preset", "tiny",
                              "-o", str(tmp_path / "run"), "--set", "train_tokenizer.max_steps=2"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "could not write a weights file" in res.stderr and "os error 28" in res.stderr
    assert latest_checkpoint(tmp_path / "run").name == "step_2"  # the checkpoint came first


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tok") / "model"
    Tokenizer(load_preset("tiny").tokenizer).save_pretrained(path)
    return path


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_a_full_disk_while_tokenizing_keeps_finished_shards_and_a_rerun_completes(
        tmp_path, monkeypatch, tok_dir):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(10):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), np.uint8)).save(
            imgs / f"{i:02d}.png")
    args = ["-t", str(tok_dir), "--shard-size", "3", "--json"]
    assert runner.invoke(app, ["tokenize", str(imgs), "-o", str(tmp_path / "ref"), *args]
                         ).exit_code == 0
    lat = tmp_path / "lat"
    target, fake = _fail_fsync_of("shard_00002")
    with monkeypatch.context() as m:
        m.setattr(target, fake)
        res = runner.invoke(app, ["tokenize", str(imgs), "-o", str(lat), *args])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "shard_00002.safetensors: could not be written (the disk is full)" in res.stderr
    assert sorted(p.name for p in lat.iterdir()) == [
        "shard_00000.safetensors", "shard_00001.safetensors", "tokenizer.json"]  # no temp files
    res = runner.invoke(app, ["tokenize", str(imgs), "-o", str(lat), *args])
    assert res.exit_code == 0 and json.loads(res.stdout)["shards_skipped"] == 2
    assert _digest(lat) == _digest(tmp_path / "ref")  # identical to an undisturbed run


# ----------------------------------------------------------------------------- crashes, Ctrl-C


def test_a_crash_while_re_saving_the_same_step_leaves_a_checkpoint_resume_finds(
        tmp_path, monkeypatch, reference):
    _trainer(tmp_path).fit(stop_after=5)
    root = tmp_path / "checkpoints"
    before = _digest(root / "step_5")
    real = os.replace

    def replace(src, dst):
        if Path(dst) == root / "step_5" and Path(src).name.startswith(".step_5."):
            raise KeyboardInterrupt  # killed between moving the old folder away and the new in
        return real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(ckpt.os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            _trainer(tmp_path).fit(resume=True, stop_after=5)  # re-saves step_5
    assert not (root / "step_5").exists() and (root / ".step_5.old").is_dir()
    assert latest_checkpoint(tmp_path) == root / "step_5"  # the backup is put back
    assert _digest(root / "step_5") == before
    _trainer(tmp_path).fit(resume=True)
    _assert_same(_weights(root / "step_10"), reference)


def test_ctrl_c_once_saves_and_stops_twice_stops_at_once(tmp_path, reference):
    def ctrl_c(times):
        def fault(step, task):
            if step == 6:
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
        return fault

    handler = signal.getsignal(signal.SIGINT)
    result = _trainer(tmp_path / "once", ctrl_c(1)).fit()
    assert result["stopped"] == "interrupted" and result["step"] == 7
    assert latest_checkpoint(tmp_path / "once").name == "step_7"
    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "twice", ctrl_c(2)).fit()
    assert latest_checkpoint(tmp_path / "twice").name == "step_5"
    assert signal.getsignal(signal.SIGINT) is handler  # the trainer's handler is removed again
    _trainer(tmp_path / "twice").fit(resume=True)
    _assert_same(_weights(tmp_path / "twice/checkpoints/step_10"), reference)
