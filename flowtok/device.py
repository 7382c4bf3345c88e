"""Where and in what precision code runs: the device, the dtype and autocast, peak memory, and
the process group torchrun starts (rank, world size, local device).

Every layer uses these (training, evaluation, data tokenizing, benchmarks), so they live here
rather than in ``flowtok.train``. Defaults are the safe ones: fp32 on a CPU, speed opt-in.
"""

from __future__ import annotations

import atexit
import functools
import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from flowtok.errors import ArgumentError, ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)  # rank 0 evaluates while the others wait


# ----------------------------------------------------------------------------- device


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda when available, else cpu. A device name torch does not know, or one this
    machine lacks (CUDA on a CPU-only torch, cuda:3 with two GPUs, MPS off a Mac), is an
    ArgumentError (a ValueError) naming the option and what would work, raised before any model
    is loaded."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ArgumentError(f"--device {device}: not a device name; use {_device_choices()}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise ArgumentError(f"--device {device}: CUDA is not available here ({why}); "
                                "use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ArgumentError(f"--device {device}: this machine has {count} CUDA device(s); "
                                f"use cuda:0 … cuda:{count - 1}")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ArgumentError(f"--device {device}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "meta"):
        raise ArgumentError(f"--device {device}: flowtok does not run on {dev.type}; "
                            f"use {_device_choices()}")
    return dev


def _device_choices() -> str:
    """The devices this machine can run, for error messages."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda", "cuda:N"]
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        names.append("mps")
    return ", ".join(names)


def move_to(obj: Any, device: torch.device) -> Any:
    """Move every tensor inside nested tuples / lists / dicts to ``device``."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    return obj


def peak_memory(device: torch.device) -> int | None:
    """Peak bytes allocated on a CUDA device since the last reset; None elsewhere."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- dtype and autocast


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bf16" (the names of ``DTYPES``)."""
    return {v: k for k, v in DTYPES.items()}[dtype]


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """None -> bf16 on CUDA, fp32 on CPU."""
    if name is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ConfigError(f"--dtype {name!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` for weights already cast to it (no weight-cast cache); fp32: none."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmul units


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); None where unknown (not
    Linux). Without those units torch's CPU bf16 matmul takes a scalar fallback path."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in CPU_BF16_FLAGS)
    except OSError:
        return None
    return None


def precision_autocast(precision: str, device: torch.device):
    """Autocast for ``train.precision`` over fp32 master weights: bf16 on CUDA (auto or bf16)
    and, asked for, on a CPU with native bf16 units. ``auto`` stays fp32 on a CPU: whether bf16
    pays depends on those units; measured, an AVX512-BF16 EPYC ran the emoji64 flow step 1.8x
    faster in bf16 on one thread (benchmarks/flow/cpu_bf16_step.py), while an AVX2-only EPYC
    ran the same step about 40x slower than in fp32. So bf16 on a CPU without the units falls
    back to fp32 with a warning."""
    dev = device.type
    if dev == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if precision == "bf16":
        if dev != "cpu":
            raise ConfigError(f"train.precision bf16 is for CUDA or CPU devices, not {dev}")
        if cpu_has_native_bf16() is False:
            warnings.warn("train.precision bf16: this CPU has no native bf16 units (AVX512-BF16 or "
                          "AMX), where bf16 runs many times slower than fp32; training in fp32",
                          RuntimeWarning, stacklevel=2)
            return nullcontext()
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


# ----------------------------------------------------------------------------- torchrun processes


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: torchrun's RANK / WORLD_SIZE / LOCAL_RANK (1 process: 0/1/0)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read torchrun's environment; a plain `python`/`flowtok` run is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(os.environ.get("RANK", "0")), world=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def local_device(device: str | torch.device | None) -> torch.device:
    """The device this rank should use: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    dev = resolve_device(None if device is None else str(device))
    info = env_info()
    if dev.type == "cuda" and info.world > 1 and dev.index is None:
        dev = torch.device("cuda", info.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def init_process_group(device: torch.device) -> DistInfo:
    """Join torchrun's process group (nccl on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    import torch.distributed as dist

    info = env_info()
    if info.world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
        atexit.register(leave_process_group)
    return info


def leave_process_group() -> None:
    """Destroy the process group while the interpreter is still whole. A rank that exits with
    gloo's worker threads alive can abort (SIGABRT) during interpreter teardown when they free
    tensors that still hold Python references; torchrun then kills the other ranks (seen as a
    rare failure of the 2-process tests). No-op when there is no group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
