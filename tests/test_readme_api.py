"""The README's Python example runs as pasted, on the shipped default model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks(section: str) -> list[str]:
    """The ```python blocks under the README heading ``section``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.DOTALL)


def test_the_python_api_example_runs_as_pasted_on_the_shipped_model(tmp_path):
    from flowtok.pipeline import default_model_path

    if default_model_path() is None:
        pytest.skip("this install ships no default model")
    [example] = _python_blocks("Python API")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    res = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=env, check=False)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "cat.png").is_file()
    assert (tmp_path / "my_model" / "config.json").is_file()
    first, second = res.stdout.splitlines()
    # the comments in the example show what it prints
    shown = re.findall(r"print\(.*?\)\s+# (\[.*?\])", example)
    assert first == shown[0]
    assert second.startswith("['")
