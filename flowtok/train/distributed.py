"""Scale-out for the one trainer: torchrun process groups, DDP / FSDP2, data split by rank,
gradient accumulation, rank-0-only side effects, and full (unsharded) checkpoint state.

A run has ``slots = world_size * grad_accum`` micro-batches per optimizer step. Micro-batch
``a`` of rank ``r`` is slot ``a * world + r``: the task's ``batch(step, generator, slot=,
slots=)`` returns that slice of the step's global batch, and the global RNGs are reseeded from
(seed, step, slot) before it, so every random draw of a slot is the same whichever process runs
it. Hence 2 processes x 1 micro-batch and 1 process x 2 micro-batches train the same weights (up
to the order of the gradient sum), and a checkpoint resumes under any world size.

With one process and ``grad_accum == 1`` nothing here changes the trainer: the step is the
plain single-process step, bit for bit as before (``ScaleOut.active`` is False).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from flowtok.config import TrainConfig
from flowtok.device import init_process_group, move_to
from flowtok.errors import ConfigError

STEP_SEED_STRIDE = 1_000_003  # generator seed for step s: seed * stride + s
SLOT_SEED_STRIDE = 1_000_003  # global RNG seed of (step, slot): (seed * stride + step) * 4099 + slot


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator a task's ``batch(step, generator)`` gets: seeded by (seed, step) alone."""
    return torch.Generator().manual_seed(seed * STEP_SEED_STRIDE + step)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def slot_seed(seed: int, step: int, slot: int) -> int:
    return ((seed * SLOT_SEED_STRIDE + step) * 4099 + slot) % (2**63)


def task_batch(task: Any, step: int, generator: torch.Generator, slot: int, slots: int) -> Any:
    """Slot ``slot`` of ``slots`` of the step's global batch (the task's own batch when 1 slot)."""
    if slots == 1:
        return task.batch(step, generator)
    params = inspect.signature(task.batch).parameters
    if "slot" not in params or "slots" not in params:
        raise ConfigError(f"{type(task).__name__} cannot split its batches across processes or "
                          "micro-batches (its batch() takes no slot/slots); run one process with "
                          "train.grad_accum=1")
    return task.batch(step, generator, slot=slot, slots=slots)


class _LossModule(nn.Module):
    """All trainable modules under one root whose forward is the task's loss, so DDP / FSDP see
    every parameter and the task keeps calling its own modules."""

    def __init__(self, task: Any, modules: dict[str, nn.Module]):
        super().__init__()
        self.mods = nn.ModuleDict(modules)
        self._task = task

    def forward(self, batch: Any, step: int):
        return self._task.loss(batch, step)


class _ShardedEMA:
    """EMA for FSDP: the shadow weights live as this rank's local shards (no communication per
    step); ``materialize`` all-gathers them into ``module``, a full unsharded twin used for
    evaluation, export and checkpoints."""

    def __init__(self, ema, live: nn.Module, keep_twin: bool):
        self.decay, self.num_updates, self.module = ema.decay, ema.num_updates, ema.module
        self._live, self._keep = live, keep_twin
        if not keep_twin:  # only rank 0 reads the twin: elsewhere it waits in host memory
            self.module.to("cpu")
        self.shards = [_local(p).detach().clone() for p in live.parameters()]

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        torch._foreach_lerp_(self.shards, [_local(p.detach()) for p in module.parameters()],
                             1.0 - d)
        for eb, b in zip(self.module.buffers(), module.buffers()):
            eb.copy_(b)

    @torch.no_grad()
    def materialize(self) -> None:
        """Collective: every rank must call it."""
        from torch.distributed.tensor import DTensor

        for twin, live, shard in zip(self.module.parameters(), self._live.parameters(),
                                     self.shards):
            full = shard  # a replicated (scalar) parameter is whole on every rank
            if isinstance(live, DTensor):
                full = DTensor.from_local(shard, live.device_mesh, live.placements,
                                          shape=live.shape, stride=live.stride()).full_tensor()
            if self._keep:
                twin.copy_(full)

    @torch.no_grad()
    def reshard(self) -> None:
        """After loading full weights into ``module``: take this rank's shards from it."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        for i, (twin, live) in enumerate(zip(self.module.parameters(), self._live.parameters())):
            full = twin.detach().to(live.device)
            self.shards[i] = (distribute_tensor(full, live.device_mesh, live.placements,
                                                src_data_rank=None).to_local()
                              if isinstance(live, DTensor) else full.clone())


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


@torch.no_grad()
def _clip_mixed(params: list[torch.Tensor], max_norm: float) -> float:
    """clip_grad_norm_ over sharded (DTensor) and whole gradients together; returns the norm."""
    from torch.distributed.tensor import DTensor
    from torch.nn.utils import clip_grads_with_norm_, get_total_norm

    sharded = [p for p in params if p.grad is not None and isinstance(p.grad, DTensor)]
    whole = [p for p in params if p.grad is not None and not isinstance(p.grad, DTensor)]
    parts = [_full(get_total_norm([p.grad for p in g])).float().reshape(())
             for g in (sharded, whole) if g]
    total = torch.linalg.vector_norm(torch.stack(parts)) if parts else torch.zeros(())
    for group in (sharded, whole):
        if group:
            clip_grads_with_norm_(group, max_norm, total.to(group[0].grad.device))
    return float(total)


@torch.no_grad()
def _broadcast_from_rank0(modules: list[nn.Module]) -> None:
    """Every rank starts from rank 0's weights, however each process initialised them."""
    import torch.distributed as dist

    for m in modules:
        for t in m.state_dict().values():
            dist.broadcast(t, src=0)


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class _FullModuleView:
    """A sharded module as checkpoint code sees it: full tensors in, full tensors out."""

    def __init__(self, module: nn.Module, gathered: dict[str, torch.Tensor] | None = None):
        self.module, self.gathered = module, gathered

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.gathered if self.gathered is not None else {
            k: _full(v) for k, v in self.module.state_dict().items()}

    def load_state_dict(self, sd: dict[str, torch.Tensor], strict: bool = True):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        return set_model_state_dict(self.module, sd, options=StateDictOptions(
            full_state_dict=True, strict=strict))


class _FullOptimizerView:
    """The optimizer's id-keyed state dict with full tensors (the single-process format)."""

    def __init__(self, optimizer: torch.optim.Optimizer, gathered: dict | None = None):
        self.optimizer, self.gathered = optimizer, gathered

    def state_dict(self) -> dict:
        if self.gathered is not None:
            return self.gathered
        sd = self.optimizer.state_dict()
        return {"state": {pid: {k: _full(v) if torch.is_tensor(v) else v for k, v in st.items()}
                          for pid, st in sd["state"].items()},
                "param_groups": sd["param_groups"]}

    def load_state_dict(self, sd: dict) -> None:
        from torch.distributed.tensor import DTensor, distribute_tensor

        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        state = {}
        for pid, st in sd["state"].items():
            p = params[int(pid)]
            state[pid] = {
                k: distribute_tensor(v.to(p.device), p.device_mesh, p.placements,
                                     src_data_rank=None)
                if torch.is_tensor(v) and isinstance(p, DTensor) and v.shape == p.shape else v
                for k, v in st.items()}
        self.optimizer.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


class ScaleOut:
    """What the trainer does differently with several processes or micro-batches."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        if cfg.grad_accum < 1:
            raise ConfigError(f"train.grad_accum must be >= 1, got {cfg.grad_accum}")
        if cfg.parallel not in ("ddp", "fsdp"):
            raise ConfigError(f"train.parallel {cfg.parallel!r}: use ddp or fsdp")
        self.info = init_process_group(device)
        if device.type == "cuda" and self.info.world > 1 and device.index is None:
            device = torch.device("cuda", self.info.local_rank)
        if device.type == "cuda" and self.info.world > 1:
            torch.cuda.set_device(device)  # NCCL collectives use the current device
        self.device, self.accum = device, cfg.grad_accum
        self.slots = self.info.world * cfg.grad_accum
        self.active = self.slots > 1
        self.fsdp = cfg.parallel == "fsdp" and self.info.world > 1
        self.root: nn.Module | None = None  # _LossModule, wrapped in DDP or sharded
        self.replicated: list[nn.Parameter] = []  # FSDP: parameters it leaves whole
        self.ddp: nn.Module | None = None

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    # ------------------------------------------------------------------ set-up

    def wrap(self, task: Any, modules: dict[str, nn.Module], ema: dict | None) -> None:
        """DDP (default) or FSDP2 over all trainable modules; call before building the optimizer
        (FSDP replaces the parameters) and after building the EMA (its copies stay full)."""
        if not self.active:
            return
        self.root = _LossModule(task, modules)
        if self.info.world == 1:
            return
        _broadcast_from_rank0(list(modules.values()) + [e.module for e in (ema or {}).values()])
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            if not ema:
                raise ConfigError("train.parallel=fsdp needs EMA (ema_decay > 0): rank 0 "
                                  "evaluates and exports the full EMA copy")

            # fully_shard cannot split 0-dim parameters (e.g. a loss temperature): they stay
            # whole on every rank and their gradients are averaged by _average_replicated
            scalars = {p for p in self.root.parameters() if p.ndim == 0}
            self.replicated = [p for p in scalars if p.requires_grad]
            for sub in list(self.root.modules()):
                if isinstance(sub, nn.ModuleList):  # transformer blocks: one shard unit each
                    for block in sub:
                        fully_shard(block, ignored_params=scalars or None)
            fully_shard(self.root, ignored_params=scalars or None)
            if ema:
                for k in list(ema):
                    ema[k] = _ShardedEMA(ema[k], modules[k], keep_twin=self.is_main)
        else:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # find_unused_parameters: some parameters (a discriminator before gan_start, the
            # caption head of a t2i model) get no gradient in some steps
            self.ddp = DistributedDataParallel(self.root, device_ids=ids,
                                               broadcast_buffers=False,
                                               find_unused_parameters=True)

    # ------------------------------------------------------------------ one step

    def forward_backward(self, task: Any, step: int, *, seed: int, params: list[torch.Tensor],
                         grad_clip: float, autocast: Callable[[], AbstractContextManager]
                         ) -> tuple[torch.Tensor, dict[str, float], bool, float]:
        """Forward + backward of one optimizer step of ``task`` and the clipped gradient norm
        of ``params`` (``grad_clip`` <= 0: no clipping); ``autocast()`` wraps each forward.

        Returns (loss, logs, finite, grad_norm); ``finite`` False means: skip this step.
        Loss and logs are averaged over the step's micro-batches and ranks.
        """
        clip = grad_clip if grad_clip > 0 else float("inf")
        if not self.active:  # the single-process step, unchanged
            batch = move_to(task.batch(step, batch_generator(seed, step)), self.device)
            with autocast():
                loss, logs = task.loss(batch, step)
            finite = bool(torch.isfinite(loss))
            grad_norm = float("nan")
            if finite:
                loss.backward()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
                finite = math.isfinite(grad_norm)
            return loss, logs, finite, grad_norm

        model = self.ddp if self.ddp is not None else self.root
        losses, sums = [], {}
        for micro in range(self.accum):
            slot = micro * self.info.world + self.info.rank
            torch.manual_seed(slot_seed(seed, step, slot))
            batch = move_to(task_batch(task, step, batch_generator(seed, step), slot,
                                       self.slots), self.device)
            sync = self.ddp is None or micro == self.accum - 1
            with (nullcontext() if sync else self.ddp.no_sync()), autocast():
                loss, logs = model(batch, step)
            # Backward even when the loss is NaN: the NaN reaches every rank's gradients through
            # the all-reduce, so all ranks skip the step together instead of deadlocking.
            with nullcontext() if sync else self.ddp.no_sync():
                (loss / self.accum).backward()
            losses.append(loss.detach().float())
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v) / self.accum
        local = torch.stack(losses).mean()
        stats = torch.stack([local.nan_to_num(0.0, 0.0, 0.0),
                             (~torch.isfinite(local)).float()]).to(self.device)
        if self.info.world > 1:
            import torch.distributed as dist

            dist.all_reduce(stats)
        loss = stats[0] / self.info.world
        if self.fsdp:
            self._average_replicated()
            grad_norm = _clip_mixed(params, clip)
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        finite = bool(stats[1] == 0) and math.isfinite(grad_norm)
        if not finite:
            loss = torch.tensor(float("nan"))
        return loss, sums, finite, grad_norm

    def _average_replicated(self) -> None:
        """FSDP: average the gradients of the parameters it does not manage (as DDP would)."""
        import torch.distributed as dist

        if not self.replicated:
            return
        grads = torch.stack([p.grad.detach().reshape(()) if p.grad is not None
                             else torch.zeros((), device=p.device) for p in self.replicated])
        used = torch.tensor([p.grad is not None for p in self.replicated],
                            dtype=torch.float32, device=grads.device)
        dist.all_reduce(grads)
        dist.all_reduce(used)
        for p, g, u in zip(self.replicated, grads / self.info.world, used):
            p.grad = g.reshape(p.shape).to(p.dtype) if u > 0 else None

    # ------------------------------------------------------------------ checkpoints / eval

    def sync_ema(self, ema: dict | None) -> None:
        """FSDP: gather the sharded EMA into its full twins (collective) before eval / save."""
        if self.fsdp and ema:
            for e in ema.values():
                e.materialize()

    def checkpoint_views(self, modules: dict[str, nn.Module], ema_modules: dict | None,
                         optimizer: torch.optim.Optimizer, gather: bool):
        """What checkpoint code reads (``gather``: collective, every rank) or loads into: the
        objects themselves, or under FSDP views that speak full, unsharded state dicts."""
        if not self.fsdp:
            return modules, ema_modules, optimizer
        mods = {}
        for k, m in modules.items():
            view = _FullModuleView(m)
            mods[k] = _FullModuleView(m, view.state_dict() if gather else None)
        opt = _FullOptimizerView(optimizer)
        if gather:
            opt = _FullOptimizerView(optimizer, opt.state_dict())
        return mods, ema_modules, opt

    def after_load(self, ema: dict | None) -> None:
        if self.fsdp and ema:
            for e in ema.values():
                e.reshard()

    def global_batch(self, per_device: int) -> int:
        return per_device * self.slots


def agree(flag: bool) -> bool:
    """True on every rank when it is True on any rank (stop signals, time boxes); no
    communication with one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
