"""The layering holds and the code is lint-clean: the import-linter contracts in pyproject.toml
(CLI -> library -> kernels; data, eval and bench never import train; no import cycles) and ruff,
run as `make lint` runs them."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    """The console script installed beside this Python (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (make setup installs the dev extras)")
    return found


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_import_contracts_are_kept():
    result = _run([_tool("lint-imports"), "--no-cache"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_ruff_finds_nothing():
    result = _run([_tool("ruff"), "check", "flowtok", "flowtok_cli", "kernels", "tests"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
