"""CUDA-graph sampling for the product path: capture a whole sampling call once per input shape,
then replay it (one launch for every kernel of every Euler step).

``GraphedSampler(fn)`` wraps a function of tensors (and hashable constants such as steps and
guidance) whose body never syncs with the host (flowtok.flow.sampler.euler_sample is written so).
Per key (each tensor's shape, dtype and device, and the constants) it copies the inputs into
static buffers, captures ``fn`` on them, and on later calls copies the new inputs in, replays and
returns a copy of the output. At most ``max_shapes`` graphs are kept (least recently used go).

``graph_mode(requested, device)`` validates the user's choice: ``auto`` uses graphs on CUDA only,
``on`` demands CUDA, ``off`` never; ``check_compile(compile, device)`` likewise for torch.compile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

from flowtok.errors import ConfigError

GRAPH_MODES = ("auto", "on", "off")
Capture = Callable[[Callable[[], torch.Tensor]], tuple[Callable[[], None], torch.Tensor]]


def graph_mode(requested: str, device: torch.device | str) -> bool:
    """Whether to sample through CUDA graphs: ``auto`` on CUDA only, ``on`` (CUDA required), ``off``."""
    if requested not in GRAPH_MODES:
        raise ConfigError(f"--cuda-graph {requested!r}: choose one of {', '.join(GRAPH_MODES)}")
    cuda = torch.device(device).type == "cuda"
    if requested == "on" and not cuda:
        raise ConfigError(f"--cuda-graph on needs a CUDA device, got {torch.device(device).type}; "
                          "use --cuda-graph auto or off")
    return requested != "off" and cuda


def check_compile(compile: bool, device: torch.device | str) -> bool:
    """--compile is for CUDA (Inductor on a CPU takes minutes to build and gains little)."""
    if compile and torch.device(device).type != "cuda":
        raise ConfigError(f"--compile needs a CUDA device, got {torch.device(device).type}")
    return compile


def capture_cuda_graph(fn: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
    """Warm ``fn`` up on a side stream, capture it in a CUDA graph; -> (replay, static output)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # lazy inits, cuBLAS workspaces, Triton autotuning: not in the graph
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph.replay, out


class GraphedSampler:
    """``fn(*args)`` replayed from a CUDA graph captured once per input key (see module doc)."""

    def __init__(self, fn: Callable[..., torch.Tensor], capture: Capture = capture_cuda_graph,
                 max_shapes: int = 8):
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes}")
        self.fn, self._capture, self.max_shapes = fn, capture, max_shapes
        self._graphs: OrderedDict[tuple, tuple[list[Any], Callable[[], None], torch.Tensor]] = (
            OrderedDict())
        self.captures = 0  # graphs captured so far (evicted ones included)
        self.replays = 0

    @staticmethod
    def key(args: tuple) -> tuple:
        out: list[Hashable] = []
        for a in args:
            if isinstance(a, torch.Tensor):
                out.append(("tensor", tuple(a.shape), a.dtype, str(a.device)))
            else:
                hash(a)  # constants are part of the key: they must be hashable
                out.append(("const", a))
        return tuple(out)

    def __len__(self) -> int:
        return len(self._graphs)

    def __call__(self, *args) -> torch.Tensor:
        key = self.key(args)
        entry = self._graphs.get(key)
        if entry is None:
            static = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
            replay, out = self._capture(lambda: self.fn(*static))
            entry = (static, replay, out)
            self._graphs[key] = entry
            self.captures += 1
            while len(self._graphs) > self.max_shapes:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        static, replay, out = entry
        for buf, a in zip(static, args):
            if isinstance(a, torch.Tensor):
                buf.copy_(a)
        replay()
        self.replays += 1
        return out.clone()  # the static output is overwritten by the next replay
