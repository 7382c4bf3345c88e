"""How flowtok's benchmarks time one call, and the measured ceilings they divide by.

GPU: warm-up calls, then CUDA events around each timed call, median (and 20th / 80th
percentiles) of the repeats. Memory-bound kernels at FlowTok's sizes fit in an H100's 50 MB
L2, so ``flush_l2`` overwrites a buffer larger than L2 before each timed call (outside the
events), and the timed call reads its inputs from HBM as it would inside a model. CPU:
time.perf_counter around each call; only ratios within one run mean anything there.
Ceilings are measured on the device, not taken from datasheets: a large GEMM for FLOP/s and
a large device-to-device copy for bandwidth.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

L2_FLUSH_BYTES = 256 * 1024**2  # > 4x the largest L2 (H100: 50 MB)
GPU_MATMUL = {"size": 8192, "repeats": 20, "warmup": 3}
CPU_MATMUL = {"size": 1024, "repeats": 5, "warmup": 1}
GPU_COPY = {"bytes": 1024**3, "repeats": 20, "warmup": 3}  # 1 GiB: far beyond L2
CPU_COPY = {"bytes": 64 * 1024**2, "repeats": 5, "warmup": 1}


@dataclass
class Timing:
    """Wall time of one call in milliseconds over ``repeats`` timed calls after warm-up."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    p20_ms: float | None = None
    p80_ms: float | None = None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing_method(device: torch.device, flush_l2: bool = False) -> str:
    if device.type != "cuda":
        return "time.perf_counter + synchronize"
    return "cuda events" + (f", L2 flushed ({L2_FLUSH_BYTES >> 20} MiB memset) before each call"
                            if flush_l2 else "")


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int,
              flush_l2: bool = False) -> Timing:
    """Median wall time of ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    flush = (torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device=device)
             if flush_l2 and device.type == "cuda" else None)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            if flush is not None:
                flush.zero_()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append((time.perf_counter() - t0) * 1e3)
    ordered = sorted(times)
    return Timing(statistics.median(times), ordered[0], ordered[-1], repeats,
                  _percentile(ordered, 0.2), _percentile(ordered, 0.8))


def matmul_ceiling(device: torch.device, dtype: torch.dtype) -> dict:
    """Measured matmul FLOP/s: a large square GEMM (GPU: 8192^3 in ``dtype``; CPU: 1024^3 fp32).
    Achieved FLOP/s are reported as a share of this, not of a datasheet peak."""
    spec = GPU_MATMUL if device.type == "cuda" else CPU_MATMUL
    if device.type != "cuda":
        dtype = torch.float32
    n = spec["size"]
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    c = torch.empty(n, n, device=device, dtype=dtype)
    t = time_call(lambda: torch.mm(a, b, out=c), device, spec["repeats"], spec["warmup"])
    return {"tflops": 2 * n**3 / (t.median_ms * 1e-3) / 1e12, "dtype": str(dtype).split(".")[-1],
            "shape": [n, n, n], "median_ms": t.median_ms,
            "method": f"torch.mm, {timing_method(device)}"}


def copy_bandwidth(device: torch.device) -> dict:
    """Measured device-to-device copy bandwidth (bytes read + written per second) of a buffer
    far larger than the cache: the ceiling memory-bound kernels are compared against."""
    spec = GPU_COPY if device.type == "cuda" else CPU_COPY
    src = torch.ones(spec["bytes"], dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = time_call(lambda: dst.copy_(src), device, spec["repeats"], spec["warmup"])
    return {"gbps": 2 * spec["bytes"] / (t.median_ms * 1e-3) / 1e9, "bytes": spec["bytes"],
            "median_ms": t.median_ms, "method": f"Tensor.copy_, {timing_method(device)}"}


def device_info(device: torch.device) -> dict:
    """What ran the benchmark: name, versions, compute capability, memory."""
    info = {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "name": platform.processor() or platform.machine() or "cpu", "capability": None,
            "memory_bytes": None, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_bytes=props.total_memory)
    return info
