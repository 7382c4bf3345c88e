"""Scale-out on the CPU with the gloo backend, through the real launcher
(`flowtok train tokenizer --nproc 2` re-runs itself under torch.distributed.run):

- 2 processes x batch 4 train the same weights as 1 process x 2 micro-batches of 4 (the same
  global batch of 8): max abs diff < 1e-5 in fp32 over model, EMA and optimizer state (only the
  order of summing the two half-batch gradients differs; measured 0.0);
- the 2-process checkpoint resumes in 1 process and continues exactly like the 1-process run;
- FSDP2 resumes the same checkpoint on 2 processes and trains the same weights;
- FSDP2 trains the flow model (whose 0-dim projector.log_temp it cannot shard) like DDP:
  max abs diff < 1e-4 over model, EMA and optimizer state after 3 steps (measured 0.0).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from flowtok_cli.app import app

TOL = 1e-5  # fp32: only the order of summing the two half-batch gradients differs
TINY = ["--preset", "tiny", "--set", "train_tokenizer.batch_size=4",
        "--set", "train_tokenizer.eval_every=0", "--set", "train_tokenizer.ckpt_every=3",
        "--set", "train_tokenizer.log_every=1", "--set", "train_tokenizer.keep_checkpoints=3"]


def _cli(data, out, *extra) -> list[str]:
    return ["train", "tokenizer", "--data", str(data), "-o", str(out), "--json", *TINY, *extra]


def _run(args: list[str]) -> dict:
    """`python -m flowtok_cli …` in a fresh process (as torchrun runs it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "flowtok_cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # rank 0 alone prints: this parses only if one JSON came


def _tensors(folder):
    return {f"{name}/{k}": v for name in ("model", "ema_model", "optimizer")
            for k, v in load_file(str(folder / f"{name}.safetensors")).items()}


def _max_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """3 steps with 2 processes (torchrun) and with 1 process x 2 micro-batches."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dist")
    (root / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            root / "imgs" / f"{i:02d}.png")
    steps = ["--set", "train_tokenizer.max_steps=3"]
    two = _run(_cli(root / "imgs", root / "two", "--nproc", "2", *steps))
    res = CliRunner().invoke(app, _cli(root / "imgs", root / "one",
                                       "--set", "train_tokenizer.grad_accum=2", *steps))
    assert res.exit_code == 0, res.output
    return root, two, json.loads(res.stdout)


def test_two_processes_train_the_same_weights_as_one_with_the_same_global_batch(runs):
    root, two, one = runs
    assert (two["world_size"], two["global_batch"]) == (2, 8)
    assert (one["world_size"], one["global_batch"]) == (1, 8)
    assert _max_diff(_tensors(root / "two/checkpoints/step_3"),
                     _tensors(root / "one/checkpoints/step_3")) < TOL
    # rank 0 alone wrote the log, one record per step
    records = [json.loads(x) for x in (root / "two/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert (root / "two/model/model.safetensors").is_file()


def test_one_process_batch_of_8_differs_so_the_comparison_can_fail(runs):
    """The same data in one micro-batch draws other posterior noise: the check above is not
    vacuous (a wrong data split or seed per slot would show up as a difference this size)."""
    root, _, _ = runs
    plain = CliRunner().invoke(app, _cli(root / "imgs", root / "plain",
                                         "--set", "train_tokenizer.batch_size=8",
                                         "--set", "train_tokenizer.max_steps=3"))
    assert plain.exit_code == 0, plain.output
    assert _max_diff(_tensors(root / "plain/checkpoints/step_3"),
                     _tensors(root / "one/checkpoints/step_3")) > 1e-3


RESUME_TO_6 = ["--resume", "--set", "train_tokenizer.max_steps=6"]


@pytest.fixture(scope="module")
def one_to_6(runs, tmp_path_factory):
    """The 1-process run, resumed from step 3 to step 6 in 1 process x 2 micro-batches."""
    root, _, _ = runs
    out = tmp_path_factory.mktemp("one6") / "one"
    shutil.copytree(root / "one", out)
    res = CliRunner().invoke(app, _cli(root / "imgs", out, *RESUME_TO_6,
                                       "--set", "train_tokenizer.grad_accum=2"))
    assert res.exit_code == 0, res.output
    return out / "checkpoints/step_6"


def test_a_two_process_checkpoint_resumes_in_one_process(runs, one_to_6, tmp_path):
    root, _, _ = runs
    shutil.copytree(root / "two", tmp_path / "two")
    res = CliRunner().invoke(app, _cli(root / "imgs", tmp_path / "two", *RESUME_TO_6,
                                       "--set", "train_tokenizer.grad_accum=2"))
    assert res.exit_code == 0, res.output
    assert _max_diff(_tensors(tmp_path / "two/checkpoints/step_6"), _tensors(one_to_6)) < TOL


def test_fsdp_resumes_a_ddp_checkpoint_and_trains_the_same_weights(runs, one_to_6, tmp_path):
    """FSDP2 (fully_shard) loads the full checkpoint into shards, trains, and gathers full
    model / EMA / optimizer state for rank 0 to write: same numbers as 1 process."""
    root, _, _ = runs
    shutil.copytree(root / "two", tmp_path / "two")
    res = _run(_cli(root / "imgs", tmp_path / "two", *RESUME_TO_6, "--nproc", "2",
                    "--set", "train_tokenizer.parallel=fsdp"))
    assert res["step"] == 6 and res["world_size"] == 2
    assert _max_diff(_tensors(tmp_path / "two/checkpoints/step_6"), _tensors(one_to_6)) < TOL


FLOW_TOL = 1e-4  # fp32; measured 0.0 after 3 steps (gloo, 2 processes)
FLOW_STEPS = 3


@pytest.fixture(scope="module")
def flow_runs(tmp_path_factory):
    """`train flow --task t2i` on the tiny preset, 2 processes, DDP and FSDP2, 3 steps each."""
    from PIL import Image

    from flowtok.config import load_preset
    from flowtok.tokenizer.model import Tokenizer

    root = tmp_path_factory.mktemp("dist_flow")
    imgs = root / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            imgs / f"{i:02d}.png")
        rows.append(json.dumps({"file_name": f"{i:02d}.png", "text": f"picture number {i}"}))
    (imgs / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    Tokenizer(load_preset("tiny").tokenizer).save_pretrained(root / "tok")
    results = {}
    for parallel in ("ddp", "fsdp"):
        results[parallel] = _run([
            "train", "flow", "--task", "t2i", "--data", str(imgs), "--tokenizer",
            str(root / "tok"), "-o", str(root / parallel), "--preset", "tiny", "--json",
            "--eval-prompts", "0", "--nproc", "2",
            "--set", f"train_flow.max_steps={FLOW_STEPS}", "--set", "train_flow.eval_every=0",
            "--set", "train_flow.log_every=1", "--set", "train_flow.batch_size=4",
            "--set", f"train_flow.parallel={parallel}"])
    return root, results


def test_fsdp_trains_the_flow_model_with_its_0_dim_temperature_like_ddp(flow_runs):
    """FSDP2 cannot shard the 0-dim projector.log_temp: it stays whole on every rank, its
    gradient is averaged by hand and clipped together with the sharded ones. Model, EMA and
    optimizer state must match DDP's within FLOW_TOL. (Leaving that gradient un-averaged, or
    out of the clipping norm, makes them differ by 4e-4 to 1e-3 after these 3 steps.)"""
    root, res = flow_runs
    for parallel in ("ddp", "fsdp"):
        assert (res[parallel]["step"], res[parallel]["world_size"]) == (FLOW_STEPS, 2)
    ddp = _tensors(root / f"ddp/checkpoints/step_{FLOW_STEPS}")
    fsdp = _tensors(root / f"fsdp/checkpoints/step_{FLOW_STEPS}")
    assert _max_diff(ddp, fsdp) < FLOW_TOL
    # the comparison covers what FSDP treats specially: the 0-dim parameter trained, and every
    # step was clipped (grad norm above train_flow.grad_clip = 1), so the mixed norm mattered
    temp = "model/projector.log_temp"
    assert temp in ddp and ddp[temp].ndim == 0
    assert abs(float(ddp[temp]) - math.log(1 / 0.07)) > 10 * FLOW_TOL
    norms = {p: [json.loads(x)["grad_norm"] for x in
                 (root / p / "log.jsonl").read_text().splitlines() if "grad_norm" in x]
             for p in ("ddp", "fsdp")}
    assert len(norms["ddp"]) == FLOW_STEPS and min(norms["ddp"]) > 1.0, norms
    assert np.allclose(norms["ddp"], norms["fsdp"], rtol=1e-5, atol=0), norms


def test_slots_need_a_task_that_can_split_its_batches():
    from flowtok.config import TrainConfig
    from flowtok.errors import ConfigError
    from flowtok.train.distributed import ScaleOut, task_batch

    class Plain:
        def batch(self, step, generator):
            return step

    assert task_batch(Plain(), 3, torch.Generator(), 0, 1) == 3
    with pytest.raises(ConfigError, match="slot"):
        task_batch(Plain(), 3, torch.Generator(), 1, 2)
    with pytest.raises(ConfigError, match="grad_accum"):
        ScaleOut(TrainConfig(grad_accum=0), torch.device("cpu"))
    with pytest.raises(ConfigError, match="parallel"):
        ScaleOut(TrainConfig(parallel="zero3"), torch.device("cpu"))


def test_nproc_strips_itself_from_the_relaunched_command():
    from flowtok_cli.launch import _strip_nproc

    assert _strip_nproc(["train", "flow", "--nproc", "8", "-o", "x"]) == ["train", "flow",
                                                                            "-o", "x"]
    assert _strip_nproc(["train", "--nproc=2"]) == ["train"]
    assert _strip_nproc(["train", "flow"]) is None
