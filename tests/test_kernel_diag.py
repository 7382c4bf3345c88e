"""scripts/kernel_diag.py, rehearsed on the CPU: one JSON line per case, each case in its own
process, errors small where the kernel is right and a crashing case reported, not fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "kernel_diag.py"


def run(*args: str, **env: str) -> list[dict]:
    root = SCRIPT.parents[1]
    e = dict(os.environ, PYTHONPATH=f"{root}:{root / 'kernels'}", **env)
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--small", *args],
                       capture_output=True, text=True, timeout=300, env=e, check=True)
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_sdpa_case_matches_the_reference_forward_and_backward():
    (row,) = run("--backend", "sdpa", "--jobs", "1")
    assert row["case"] == "attention:sdpa:bwd+qkv+d96"
    assert row["err"] < 1e-2 and max(row["grad_err"]) < 2e-2, row
    assert min(row["grad_scale"]) > 0.1


def test_interpreted_triton_one_tile_forward_matches_in_fp16():
    (row,) = run("--case", "attention:triton:fwd+one", TRITON_INTERPRET="1", DIAG_FP16="1")
    assert row["err"] < 5e-3 < row["ref_scale"], row


def test_a_case_that_fails_is_reported_with_its_error_and_the_rest_still_run():
    rows = run("--backend", "cuda", "--jobs", "2")  # no csrc build on this machine
    assert len(rows) == sum(c.split(":")[1] == "cuda" for c in _cases())
    assert all(r.get("rc") and r["error"] for r in rows), rows


def _cases() -> list[str]:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import kernel_diag
    finally:
        sys.path.pop(0)
    return kernel_diag.CASES
