"""Printing helpers for commands: the CLI prints, the library returns values."""

from __future__ import annotations

import json
import sys
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


def warn(msg: str) -> None:
    typer.echo(f"warning: {msg}", err=True)


def usage_error(msg: str) -> typer.Exit:
    """Print a one-line usage error and return the exit (code 2) to raise."""
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code=2)


def runtime_error(msg: str) -> typer.Exit:
    """Print a one-line runtime error and return the exit (code 1) to raise."""
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code=1)


def resolve_cli_config(preset, config, overrides, default_preset: str = "shapes"):
    """Resolve preset + file + --set overrides, echoing every override (nanoGPT habit)."""
    from flowtok.config import resolve_config

    for o in overrides or []:
        typer.echo(f"override: {o}", err=True)
    return resolve_config(preset or default_preset, config, list(overrides or []))


def is_tty() -> bool:
    return sys.stderr.isatty()
