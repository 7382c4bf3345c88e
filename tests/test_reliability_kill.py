"""Kill and resume: real `flowtok train tokenizer` and `flowtok tokenize` processes are stopped
with SIGINT or SIGKILL at random (seeded) points, then rerun with --resume / the same command.

Checked each time: every checkpoint or shard left behind is complete (nothing half-written), and
the resumed run ends bit-identical to a run that was never interrupted (train: model + EMA
weights after N steps on CPU; tokenize: every file of the latents folder)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from flowtok.config import load_preset
from flowtok.tokenizer.model import Tokenizer
from flowtok.train.checkpoint import latest_checkpoint
from flowtok_cli.app import app

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
              pytest.mark.slow]  # each starts a Python process that imports torch (~3 s)

runner = CliRunner()
KILL_BY_STEP = 4  # training is stopped after a random step in 1..4 ...
MAX_STEPS = 40  # ... of 40, so the signal never lands after the last step (steps take ~15 ms)
TRAIN_SETS = [f"train_tokenizer.{k}" for k in (
    f"max_steps={MAX_STEPS}", "ckpt_every=2", "eval_every=0", "log_every=1", "batch_size=4")]
WAIT_S = 120


# `flowtok ARGS` as a new Python process; Ctrl-C is re-armed first, since a test runner started
# in the background passes SIGINT on as ignored and Python would then keep ignoring it
MAIN = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from flowtok_cli.app import main; main()")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", MAIN, *args]


def _start(args: list[str], stderr: Path) -> subprocess.Popen:
    """A real flowtok process with the test's thread count, so results match bit for bit."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()),
           "MKL_NUM_THREADS": str(torch.get_num_threads())}
    with open(stderr, "wb") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)


def _wait_until(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _kill(proc: subprocess.Popen, sig: int, errfile: Path) -> None:
    proc.send_signal(sig)
    code = proc.wait(WAIT_S)
    expected = -signal.SIGKILL if sig == signal.SIGKILL else 128 + signal.SIGINT
    assert code == expected, f"exit {code}: " + errfile.read_text()[-2000:]
    if sig == signal.SIGINT:
        assert "Traceback" not in errfile.read_text()


def _scenarios(kind: str, n: int) -> list[tuple[str, int, int, float]]:
    """(id, signal, progress to wait for, extra delay in s): random, but the same every run."""
    rng = random.Random(f"flowtok-{kind}")
    out = []
    for i in range(n):
        sig = (signal.SIGKILL, signal.SIGINT)[i % 2]
        point = rng.randint(1, KILL_BY_STEP) if kind == "train" else rng.randint(1, 20)
        delay = rng.uniform(0.0, 0.12 if kind == "train" else 0.02)
        out.append((f"{sig.name}-at-{point}+{delay * 1000:.0f}ms", sig, point, delay))
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ----------------------------------------------------------------------------- train


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_imgs")
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def _train_args(data: Path, out: Path) -> list[str]:
    sets = [x for s in TRAIN_SETS for x in ("--set", s)]
    return ["train", "tokenizer", "--data", str(data), "--preset", "tiny", "-o", str(out),
            "--json", *sets]


def _train_in_process(data: Path, out: Path, *extra: str):
    torch.manual_seed(12345)  # the command seeds its own init: this state must not matter
    res = runner.invoke(app, _train_args(data, out) + list(extra))
    assert res.exit_code == 0, res.output
    return res


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / "checkpoints" / f"step_{MAX_STEPS}"
    return {**load_file(str(folder / "model.safetensors")),
            **{f"ema.{k}": v for k, v in load_file(str(folder / "ema_model.safetensors")).items()},
            **{f"export.{k}": v for k, v in load_file(str(run / "model/model.safetensors")).items()}}


@pytest.fixture(scope="module")
def train_reference(train_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("train_ref") / "run"
    _train_in_process(train_data, run)
    return _final_weights(run)


def _logged_steps(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    steps = [0]
    for line in log.read_text().splitlines():
        try:
            steps.append(json.loads(line).get("step", 0))
        except ValueError:  # a line cut by SIGKILL
            pass
    return max(steps)


@pytest.mark.parametrize("name, sig, point, delay", _scenarios("train", 6),
                         ids=[s[0] for s in _scenarios("train", 6)])
def test_killed_training_resumes_to_identical_weights(tmp_path, train_data, train_reference,
                                                      name, sig, point, delay):
    run, err = tmp_path / "run", tmp_path / "stderr.txt"
    proc = _start(_cli(*_train_args(train_data, run)), err)
    _wait_until(proc, lambda: _logged_steps(run) >= point, f"step {point}")
    time.sleep(delay)
    _kill(proc, sig, err)
    done = _logged_steps(run)
    folder = latest_checkpoint(run)  # raises if the pointer leads to a damaged folder
    if sig == signal.SIGINT:  # Ctrl-C: the step in progress finishes and is saved
        assert folder is not None and int(folder.name.split("_")[1]) >= done
    if folder is not None:  # SIGKILL: at most the steps since the last checkpoint are lost
        assert int(folder.name.split("_")[1]) >= done - 3
    for step_dir in (run / "checkpoints").glob("step_*"):  # every folder there is complete
        for f in step_dir.glob("*.safetensors"):
            load_file(str(f))
    res = _train_in_process(train_data, run, "--resume")
    assert json.loads(res.stdout)["step"] == MAX_STEPS
    final = _final_weights(run)
    assert final.keys() == train_reference.keys()
    for k, v in final.items():
        assert torch.equal(v, train_reference[k]), k


# ----------------------------------------------------------------------------- tokenize


@pytest.fixture(scope="module")
def tokenize_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenize")
    imgs = root / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(1)
    rows = []
    for i in range(160):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), np.uint8)).save(imgs / f"{i:03d}.png")
        rows.append(json.dumps({"file_name": f"{i:03d}.png", "text": f"picture {i}"}))
    (imgs / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    tok = root / "tok"
    Tokenizer(load_preset("tiny").tokenizer).save_pretrained(tok)
    ref = root / "ref"
    res = runner.invoke(app, _tokenize_args(imgs, ref, tok))
    assert res.exit_code == 0, res.output
    return imgs, tok, ref


def _tokenize_args(imgs: Path, out: Path, tok: Path) -> list[str]:
    return ["tokenize", str(imgs), "-o", str(out), "-t", str(tok), "--shard-size", "4",
            "--batch-size", "4", "--json"]


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("shard_*.safetensors")) if folder.is_dir() else []


@pytest.mark.parametrize("name, sig, point, delay", _scenarios("tokenize", 5),
                         ids=[s[0] for s in _scenarios("tokenize", 5)])
def test_killed_tokenize_resumes_to_identical_shards(tmp_path, tokenize_setup, name, sig, point,
                                                     delay):
    imgs, tok, ref = tokenize_setup
    lat, err = tmp_path / "lat", tmp_path / "stderr.txt"
    proc = _start(_cli(*_tokenize_args(imgs, lat, tok)), err)
    _wait_until(proc, lambda: len(_shards(lat)) >= point, f"{point} shards")
    time.sleep(delay)
    _kill(proc, sig, err)
    if sig == signal.SIGINT:
        assert "finished shards" in err.read_text() and "rerun the same command" in err.read_text()
    left = _shards(lat)
    assert len(left) < 40 and not (lat / "index.json").exists()  # it really was cut short
    for shard in left:  # every shard on disk is complete and final
        assert shard.read_bytes() == (ref / shard.name).read_bytes(), shard.name
    res = runner.invoke(app, _tokenize_args(imgs, lat, tok))
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["shards_skipped"] == len(left)
    assert _digest(lat) == _digest(ref)  # same files, same bytes, no temp files left over
