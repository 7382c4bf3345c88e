"""Ranks leave the process group before interpreter teardown (flowtok.device.leave_process_group):
gloo worker threads alive at exit can abort a rank with SIGABRT, which torchrun reports as a
failed run even when training finished."""

from __future__ import annotations

import torch.distributed as dist

from flowtok.device import leave_process_group


def test_leave_process_group_destroys_the_group_and_is_a_no_op_without_one(tmp_path):
    leave_process_group()  # nothing to leave: no error
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert dist.is_initialized()
    leave_process_group()
    assert not dist.is_initialized()
    leave_process_group()  # twice (atexit after an explicit call): still fine
