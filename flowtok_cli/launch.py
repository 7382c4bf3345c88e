"""`--nproc N` of the train commands: run the same command line under torch.distributed.run
(torchrun) with N processes on this machine, instead of this process training itself."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from flowtok.errors import ConfigError

NprocOpt = Annotated[int, typer.Option(
    "--nproc", min=1, help="Processes on this machine (one per GPU): re-runs this command under "
    "torchrun; for several machines call torchrun yourself (docs/scale-out.md).")]


def _strip_nproc(argv: list[str]) -> list[str] | None:
    out, i, found = [], 0, False
    while i < len(argv):
        if argv[i] == "--nproc":
            found, i = True, i + 2
            continue
        if argv[i].startswith("--nproc="):
            found, i = True, i + 1
            continue
        out.append(argv[i])
        i += 1
    return out if found else None


def relaunch(nproc: int) -> None:
    """Return when this process should train (1 process, or already under torchrun); otherwise
    run torchrun with ``nproc`` copies of this command and exit with its status."""
    if nproc <= 1:
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--nproc inside torchrun: torchrun already chose the processes")
    args = _strip_nproc(sys.argv[1:])
    if args is None:
        raise ConfigError("--nproc needs the command line it was given; run "
                          "`torchrun --nproc-per-node N -m flowtok_cli train …` instead")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "flowtok_cli", *args]
    typer.echo(f"launching: {' '.join(cmd[1:])}", err=True)
    raise typer.Exit(code=subprocess.call(cmd))
