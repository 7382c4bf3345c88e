"""Printing helpers for commands: the CLI prints, the library returns values."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def print_table(rows: list[tuple[str, str]], title: str | None = None) -> None:
    """Two-column key/value table."""
    if title:
        typer.echo(title)
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        typer.echo(f"  {k:<{width}}  {v}")


_json_errors = False  # set by --json: errors go to stderr as one JSON object, not a text line


def set_json_errors(on: bool) -> bool:
    """--json's callback (the app resets it per run): a script reading JSON gets JSON errors."""
    global _json_errors
    _json_errors = bool(on)
    return on


def echo_error(msg: str, code: int, **extra: Any) -> None:
    """One error on stderr: ``error: msg``, or with --json ``{"error": msg, "exit_code": code}``."""
    if _json_errors:
        typer.echo(json.dumps({"error": msg, "exit_code": code, **extra}, default=str), err=True)
    else:
        typer.echo(f"error: {msg}", err=True)


def warn(msg: str) -> None:
    typer.echo(f"warning: {msg}", err=True)


def usage_error(msg: str) -> typer.Exit:
    """Print a one-line usage error and return the exit (code 2) to raise."""
    echo_error(msg, 2)
    return typer.Exit(code=2)


def runtime_error(msg: str) -> typer.Exit:
    """Print a one-line runtime error and return the exit (code 1) to raise."""
    echo_error(msg, 1)
    return typer.Exit(code=1)


def resolve_cli_config(preset, config, overrides, default_preset: str = "shapes"):
    """Resolve preset + file + --set overrides, echoing every override (nanoGPT habit)."""
    from flowtok.config import resolve_config

    for o in overrides or []:
        typer.echo(f"override: {o}", err=True)
    return resolve_config(preset or default_preset, config, list(overrides or []))


def check_out_dir(out: Path) -> list[Path]:
    """Create the output folder or raise a ConfigError (exit 2) that says why it cannot be used:
    a file in the way, no permission, a parent that is a file. Returns the folders it created
    (outermost first), so a command that fails before writing can remove them again."""
    import os

    from flowtok.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is a file; pass a folder for -o")
    created = [p for p in reversed([out, *out.parents]) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot create the output folder ({e.strerror})") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"{out}: not writable; pass another folder with -o")
    return created


def remove_empty(created: list[Path]) -> None:
    """Remove the folders ``check_out_dir`` created, innermost first, if still empty: a command
    that failed before writing anything leaves no empty -o folder behind."""
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return


def describe_missing(path: Path) -> str:
    """Why ``path`` is not a readable regular file, in one phrase that starts with the path: no
    such file, a folder, a symlink loop, a broken symlink, or not a regular file."""
    import errno
    import os
    import stat

    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return f"{path}: a symlink loop (the link leads back to itself); fix or remove the link"
        if os.path.islink(path):
            return f"{path}: a broken symlink (its target {os.readlink(path)} does not exist)"
        if e.errno == errno.ENOENT:
            return f"{path}: no such file"
        return f"{path}: cannot be read ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return f"{path}: is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file (a device, pipe or socket)"
    return f"{path}: a file"


def is_tty() -> bool:
    return sys.stderr.isatty()


def fit_and_report(trainer, out, resume: bool, max_minutes, json_out: bool, title: str,
                   rows_first: list[tuple[str, str]] | None = None) -> None:
    """Run ``trainer.fit``, print the result (table or JSON); exit 130 after SIGINT."""
    import signal

    from safetensors import SafetensorError

    check_out_dir(out)
    if resume and not (out / "checkpoints" / "latest").is_file():
        warn(f"{out}: no checkpoint to resume from; starting from step 0")
    try:
        result = trainer.fit(resume=resume, max_minutes=max_minutes)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the loop started
        typer.echo(f"interrupted; the last checkpoint in {out / 'checkpoints'} is intact; "
                   "rerun with --resume to continue", err=True)
        raise typer.Exit(code=128 + signal.SIGINT) from None
    except OSError as e:  # e.g. a full disk while appending to log.jsonl
        raise runtime_error(f"{e.filename or out}: {e.strerror or e}; the last checkpoint is "
                            "intact; fix this and rerun with --resume") from None
    except SafetensorError as e:  # e.g. a full disk while exporting OUT/model
        reason = " ".join(str(e).split())[:200]
        raise runtime_error(f"{out}: could not write a weights file ({reason}); the last "
                            "checkpoint is intact; fix this and rerun with --resume") from None
    result["model"] = str(out / "model")
    scale = getattr(trainer, "scale", None)  # torchrun: rank 0 alone reports
    if scale is not None:
        result.update(world_size=scale.info.world, global_batch=scale.global_batch(
            trainer.cfg.batch_size))
        if not scale.is_main:
            return
    if json_out:
        print_json(result)
    else:
        rows = list(rows_first or []) + [
            ("steps", str(result["step"])), ("stopped", result["stopped"]),
            ("minutes", f"{result['minutes']:.1f}"), ("model", result["model"])]
        rows += [(k, f"{v:.4g}") for k, v in result["eval"].items()]
        print_table(rows, title=title)
    if result["stopped"] == "interrupted":
        raise typer.Exit(code=128 + signal.SIGINT)
