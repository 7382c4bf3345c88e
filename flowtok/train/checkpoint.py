"""Training checkpoints as folders: ``checkpoints/step_N/`` + a ``latest`` pointer written last.

A folder holds config.json, ``<module>.safetensors`` and ``ema_<module>.safetensors`` per
trainable module, ``optimizer.safetensors`` (every state tensor, flattened) + ``optimizer.json``
(the scalars), ``rng.safetensors`` (torch / CUDA / numpy / python RNG states as tensors) and
``trainer_state.json`` (step, schedule position, counters). It is written into a temp folder,
fsynced, then renamed; only then is ``latest`` replaced, so a crash never leaves a half checkpoint
behind the pointer. Saving a step that already exists keeps the old folder as ``.step_N.old``
until the new one is in place (``latest_checkpoint`` puts it back after a crash in between). A
full disk raises CheckpointError and leaves the previous checkpoint as it was. Never pickle.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flowtok.atomic import backup_path, replace_folder, write_text_atomic
from flowtok.config import FlowTokConfig, save_config
from flowtok.errors import CheckpointError
from flowtok.safe_load import load_safetensors

LATEST = "latest"
STATE_FILE = "trainer_state.json"


@dataclass
class TrainState:
    """What a checkpoint restores besides tensors."""

    step: int  # number of optimizer steps done; the next step to run
    ema_updates: int = 0
    bad_steps: int = 0  # total skipped non-finite steps
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- small helpers




def _state_dict_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- optimizer / RNG


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (tensors keyed "state.<param>.<name>", JSON-able scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val):
                tensors[f"state.{pid}.{name}"] = val.detach().cpu().contiguous().clone()
            else:
                scalars["state"].setdefault(str(pid), {})[name] = val
    return tensors, scalars


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        scalars: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = val
    for pid, st in scalars.get("state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def rng_to_tensors() -> tuple[dict[str, torch.Tensor], dict]:
    """Every RNG the training loop touches, as tensors + a few JSON scalars."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_name, np_keys, np_pos, np_gauss, np_cached = np.random.get_state()
    tensors["numpy.keys"] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    tensors["python.state"] = torch.tensor(py_state, dtype=torch.int64)
    scalars = {"numpy": [np_name, int(np_pos), int(np_gauss), float(np_cached)],
               "python": [py_version, py_gauss]}
    return tensors, scalars


def rng_from_tensors(tensors: dict[str, torch.Tensor], scalars: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states[: torch.cuda.device_count()])
    name, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state((name, tensors["numpy.keys"].numpy().astype(np.uint32), pos, has_gauss,
                         cached))
    version, gauss = scalars["python"]
    random.setstate((version, tuple(int(x) for x in tensors["python.state"].tolist()), gauss))


# ----------------------------------------------------------------------------- save / load


def save_checkpoint(
    run_dir: Path, state: TrainState, modules: dict[str, nn.Module],
    ema_modules: dict[str, nn.Module] | None, optimizer: torch.optim.Optimizer,
    config: FlowTokConfig, keep: int,
) -> Path:
    """Write ``run_dir/checkpoints/step_N`` atomically, then the ``latest`` pointer; prune old.

    Any OS error (a full disk, a lost mount) raises CheckpointError and leaves the previous
    checkpoint, and the pointer to it, untouched.
    """
    from safetensors import SafetensorError

    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{state.step}"
    named = {**modules, **{f"ema_{k}": m for k, m in (ema_modules or {}).items()}}
    bad = [f"{name}.{k}" for name, mod in named.items() for k, v in mod.state_dict().items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # never let a NaN overwrite the last good checkpoint
        pointer = root / LATEST
        kept = pointer.read_text().strip() if pointer.is_file() else "none yet"
        raise CheckpointError(
            f"{final}: not saved: {len(bad)} weight tensor(s) hold NaN/Inf (first: {bad[0]}); "
            f"the last good checkpoint ({kept}) is kept; lower train.lr, then --resume"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".step_*.tmp"):  # left behind by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        _write_folder(final, state, modules, ema_modules, optimizer, config)
        write_text_atomic(root / LATEST, final.name + "\n")
    except (OSError, SafetensorError) as e:  # safetensors reports I/O errors as its own type
        previous = root / LATEST
        kept = (f"the previous checkpoint ({previous.read_text().strip()}) is intact"
                if previous.is_file() else "no earlier checkpoint exists")
        full = getattr(e, "errno", None) == errno.ENOSPC or f"os error {errno.ENOSPC})" in str(e)
        why = "the disk is full" if full else " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"{final}: could not write the checkpoint ({why}); {kept}; free space or fix the "
            "output folder, then rerun with --resume"
        ) from e
    _prune(root, keep, final.name)
    return final


def _write_folder(final: Path, state: TrainState, modules: dict[str, nn.Module],
                  ema_modules: dict[str, nn.Module] | None, optimizer: torch.optim.Optimizer,
                  config: FlowTokConfig) -> None:
    """Write every file into a temp folder, fsync, then rename it to ``final`` (the same step
    again, e.g. after a resume, swaps folders and keeps the old one as a backup until then)."""
    from safetensors.torch import save_file

    with replace_folder(final) as tmp:
        save_config(config, tmp / "config.json")
        for name, mod in modules.items():
            save_file(_state_dict_cpu(mod), str(tmp / f"{name}.safetensors"))
        for name, mod in (ema_modules or {}).items():
            save_file(_state_dict_cpu(mod), str(tmp / f"ema_{name}.safetensors"))
        opt_tensors, opt_scalars = optimizer_to_flat(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(opt_scalars))
        rng_tensors, rng_scalars = rng_to_tensors()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        trainer_state = {"step": state.step, "ema_updates": state.ema_updates,
                         "bad_steps": state.bad_steps, "scheduler": {"step": state.step},
                         "data_position": state.step, "rng": rng_scalars, "extra": state.extra}
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2))


def _prune(root: Path, keep: int, protect: str) -> None:
    steps = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")),
        key=lambda p: int(p.name.split("_")[1]) if p.name.split("_")[1].isdigit() else -1,
    )
    for p in steps[: max(0, len(steps) - max(1, keep))]:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``latest`` points to, or None when the run has no checkpoint yet."""
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    backup = backup_path(folder)
    if not folder.exists() and (backup / STATE_FILE).is_file():
        os.replace(backup, folder)  # killed while swapping in a re-save of the same step
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(
            f"{pointer}: points to {folder.name}, which is missing or incomplete; "
            "delete the pointer to start over or point it at an existing step_N folder"
        )
    return folder


def load_checkpoint(
    folder: Path, modules: dict[str, nn.Module], ema_modules: dict[str, nn.Module] | None,
    optimizer: torch.optim.Optimizer,
) -> TrainState:
    """Restore modules, EMA, optimizer and RNGs in place; return the TrainState."""
    try:
        for name, mod in modules.items():
            mod.load_state_dict(load_safetensors(folder / f"{name}.safetensors"), strict=True)
        for name, mod in (ema_modules or {}).items():
            mod.load_state_dict(load_safetensors(folder / f"ema_{name}.safetensors"), strict=True)
        optimizer_from_flat(optimizer, load_safetensors(folder / "optimizer.safetensors"),
                            json.loads((folder / "optimizer.json").read_text()))
        meta = json.loads((folder / STATE_FILE).read_text())
        rng_from_tensors(load_safetensors(folder / "rng.safetensors"), meta["rng"])
        state = TrainState(step=int(meta["step"]), ema_updates=int(meta["ema_updates"]),
                           bad_steps=int(meta["bad_steps"]), extra=meta.get("extra", {}))
    except (CheckpointError, OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        others = sorted(p.name for p in folder.parent.glob("step_*") if p != folder)
        hint = (f"; to go back to an earlier one, write its name ({', '.join(others)}) into "
                f"{folder.parent / LATEST}" if others else "")
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(
            f"{folder}: cannot resume from this checkpoint ({reason}); it does not match the "
            f"current config, or is damaged{hint}"
        ) from e
    return state
