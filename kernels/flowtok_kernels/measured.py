"""Dispatch by measurement: which backend `flowtok bench kernels` last measured fastest here.

A small JSON file (``FLOWTOK_KERNELS_CACHE``, else ``$XDG_CACHE_HOME/flowtok/kernel_dispatch.json``,
else ``~/.cache/flowtok/kernel_dispatch.json``; ``FLOWTOK_KERNELS_CACHE=off`` turns the whole
mechanism off) holds, per device key (device name + torch version), per op and shape class, the
backend the benchmark measured fastest and the times it compared::

    {"schema": "flowtok.kernel_dispatch/1",
     "devices": {"NVIDIA H100 80GB HBM3 | torch 2.11.0": {
         "measured_at": "2026-12-03T15:00:00Z", "source": "flowtok bench kernels",
         "ops": {"layernorm_modulate": {"bf16 large fwd": {
             "backend": "torch", "ms": {"torch": 0.041, "triton": 0.052},
             "shape": [128, 77, 1152]}}}}}}

``auto`` (dispatch._choose_auto) looks up its op and shape class here first and takes the
measured backend when it can run the call; otherwise it applies the static rule. A shape class
is coarse on purpose, so one benchmark shape speaks for the calls like it: the dtype, the size
regime (attention: keys <= or > dispatch.SHORT_KEYS; row ops: fewer or more than
``LARGE_ELEMENTS`` elements, launch-bound or bandwidth-bound), and fwd or fwd+bwd (whether any
input needs a gradient). The file is read once per process (``reload()`` forgets it).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

SCHEMA = "flowtok.kernel_dispatch/1"
CACHE_ENV = "FLOWTOK_KERNELS_CACHE"
OFF = ("off", "0", "none", "false")
LARGE_ELEMENTS = 1 << 20  # row ops below this many elements are launch-bound
SHORT_KEYS = 128  # = dispatch.SHORT_KEYS (kept here so dispatch can import this module)
_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

_state: dict[str, Any] = {"loaded": False, "data": None, "disabled": 0}


def cache_path() -> Path | None:
    """Where the measurements live; None when FLOWTOK_KERNELS_CACHE turns them off."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in OFF and env:
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowtok" / "kernel_dispatch.json"


def device_key(device: torch.device) -> str:
    """Device name + torch version: a measurement holds for this GPU (or CPU) and this torch."""
    if device.type == "cuda":
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            name = torch.cuda.get_device_name(index)
        except (AssertionError, RuntimeError):  # asked about CUDA where torch has none
            name = "unknown"
    else:
        name = platform.processor() or platform.machine() or device.type
    return f"{device.type}: {name} | torch {torch.__version__}"


def dtype_label(dtype: torch.dtype) -> str:
    return _DTYPES.get(dtype, str(dtype).removeprefix("torch."))


def shape_class(op: str, dtype: torch.dtype, *, keys: int = 0, elements: int = 0,
                backward: bool = False) -> str:
    """The class of calls one measurement speaks for (see the module docstring)."""
    if op == "attention":
        size = f"keys<={SHORT_KEYS}" if keys <= SHORT_KEYS else f"keys>{SHORT_KEYS}"
    else:
        size = "large" if elements >= LARGE_ELEMENTS else "small"
    return f"{dtype_label(dtype)} {size} {'fwd+bwd' if backward else 'fwd'}"


class disabled:
    """Within: auto ignores the measurements (the benchmark times the static rule's choice)."""

    def __enter__(self):
        _state["disabled"] += 1
        _forget_choices()

    def __exit__(self, *exc):
        _state["disabled"] -= 1
        _forget_choices()


_on_change: list = []  # callbacks (dispatch forgets its memoised auto choices)


def on_change(callback) -> None:
    """Call ``callback()`` whenever what ``lookup`` answers may have changed."""
    _on_change.append(callback)


def _forget_choices() -> None:
    for callback in _on_change:
        callback()


def reload() -> None:
    """Read the file again on the next lookup (and recompute auto's memoised choices)."""
    _state.update(loaded=False, data=None)
    _forget_choices()


def _load() -> dict | None:
    if not _state["loaded"]:
        _state["loaded"] = True
        path = cache_path()
        data = None
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = None  # a broken cache is no cache: the static rule applies
            if not isinstance(data, dict) or data.get("schema") != SCHEMA:
                data = None
        _state["data"] = data
    return _state["data"]


def lookup(op: str, device: torch.device, cls: str) -> dict | None:
    """{"backend", "ms", ...} measured for ``op`` / ``cls`` on ``device``, or None."""
    if _state["disabled"]:
        return None
    data = _load()
    if not data:
        return None
    try:
        entry = data["devices"][device_key(device)]["ops"][op][cls]
    except (KeyError, TypeError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("backend"), str) else None


def record(device: torch.device, choices: dict[str, dict[str, dict]], measured_at: str,
           source: str = "flowtok bench kernels") -> Path | None:
    """Merge ``choices`` ({op: {shape class: {"backend", "ms", ...}}}) for ``device`` into the
    file (written atomically) and return its path; None when measurements are turned off."""
    path = cache_path()
    if path is None:
        return None
    data: dict = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        data = {"schema": SCHEMA, "devices": {}}
    dev = data["devices"].setdefault(device_key(device), {"ops": {}})
    dev.update(measured_at=measured_at, source=source)
    for op, classes in choices.items():
        dev["ops"].setdefault(op, {}).update(classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kernel_dispatch.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    reload()
    return path
