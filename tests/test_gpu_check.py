"""scripts/gpu_check.sh and `flowtok bench report` (issue 25, item 5): every step leaves a JSON
record the moment it ends, failed, cut or skipped steps included, and the report turns a folder
of them into RESULTS.md tables. The CPU rehearsal runs the real script end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flowtok.bench import report as R
from flowtok_cli.app import app
from flowtok_kernels import build_cpp_extension as bce

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ["env", "build", "pytest", "kernels", "train", "sample"]
PLAN = "env:20,build:120,pytest:120,kernels:150,train:60,sample:180"
MAX_FILES = 8  # what one device call brings back
TREE_LIMIT = 60 * 1024**2  # the working tree travels to the device only under 64 MiB


def run_script(out: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLOWTOK_KERNELS_CACHE": "off"}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), "--out", str(out), "--python", sys.executable,
                           *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def records(out: Path) -> dict[str, dict]:
    return {p.stem.split("_", 1)[1]: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def report(*args: str):
    return CliRunner().invoke(app, ["bench", "report", *args], env={"COLUMNS": "200"})


def write(out: Path, step: str, exit_code: int = 0, stdout: str = "", stderr: str = "",
          **kw) -> None:
    so, se = out / f"{step}.out", out / f"{step}.err"
    so.write_text(stdout)
    se.write_text(stderr)
    R.write_record(out, R.make_record(
        index=STEPS.index(step), step=step, command=f"flowtok {step}", exit_code=exit_code,
        seconds=1.5, budget_s=60, stdout=so, stderr=se,
        run={"command_line": "bash scripts/gpu_check.sh", "plan": R.parse_plan(PLAN)}, **kw))


# ----------------------------------------------------------------------------- the script


@pytest.mark.slow
def test_cpu_rehearsal_writes_a_loadable_record_per_step_and_the_report_renders_them(tmp_path):
    out = tmp_path / "out"
    cuda_torch = torch.version.cuda is not None
    # where torch has CUDA the build step would really compile csrc/: left out of the rehearsal
    only = ["--only", ",".join(s for s in STEPS if s != "build")] if cuda_torch else []
    # about 20 s on an idle CPU; the budget is for shared, loaded ones
    proc = run_script(out, "--device", "cpu", "--preset", "tiny", "--budget", "1600",
                      "--tests", "tests/kernels/test_kernel_euler_cfg.py", *only, timeout=1750)
    assert proc.returncode == 0, proc.stderr

    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= MAX_FILES
    expected = [f"{i:02d}_{s}.json" for i, s in enumerate(STEPS)
                if not (cuda_torch and s == "build")]
    assert files == sorted([*expected, "gpu_check.log"])
    recs = records(out)
    for step, rec in recs.items():
        assert rec["schema"] == R.SCHEMA and rec["step"] == step, rec
        assert rec["status"] in ("ok", "failed"), (step, rec["status"], rec["reason"])
        assert rec["run"]["plan"][rec["index"]]["step"] == step
    assert recs["env"]["status"] == "ok" and recs["env"]["result"]["torch"] == torch.__version__
    if not cuda_torch:  # no CUDA to link: the build fails, with why, and the next step still ran
        assert recs["build"]["status"] == "failed" and "CUDA" in recs["build"]["log_tail"]
        assert recs["build"]["result"] == {"cmake_exit": 1, "cpp_extension_exit": 1,
                                           "built_by": None}
    pytest_result = recs["pytest"]["result"]  # -m gpu: collected, skipped without a GPU
    assert recs["pytest"]["status"] == "ok" and pytest_result["tests"] >= 1
    assert pytest_result["skipped"] == pytest_result["tests"] - pytest_result["passed"]
    assert recs["kernels"]["status"] == "ok" and recs["kernels"]["result"]["rows"]
    assert recs["train"]["result"]["preset"] == "tiny" and recs["train"]["result"]["step_ms"] > 0
    assert recs["sample"]["result"]["preset"] == "tiny" and recs["sample"]["result"]["compare"]
    assert "--preset tiny" in recs["sample"]["command"]

    result = report(str(out))
    assert result.exit_code == 0, result.output
    md = result.output
    assert "## GPU check (scripts/gpu_check.sh)" in md
    assert f"torch {torch.__version__}" in md and "--device cpu --preset tiny" in md
    for heading in ("### pytest -m gpu", "### bench kernels", "### bench train",
                    "### bench sample", "### Targets (issue 25)"):
        assert heading in md
    assert ("| 01 | build | missing |" if cuda_torch else "| 01 | build | failed |") in md
    assert "| 05 | sample | ok |" in md
    as_json = json.loads(report(str(out), "--json").output)
    assert [s["step"] for s in as_json["steps"]] == STEPS and as_json["markdown"] == md


def test_a_budget_too_small_for_any_step_records_every_step_as_skipped(tmp_path):
    proc = run_script(tmp_path, "--device", "cpu", "--budget", "12")
    assert proc.returncode == 0, proc.stderr
    recs = records(tmp_path)
    assert list(recs) == STEPS
    for rec in recs.values():
        assert rec["status"] == "skipped" and "no time left" in rec["reason"], rec
        assert rec["run"]["budget_s"] == 12
    assert "skipped (no time left)" in (tmp_path / "gpu_check.log").read_text()


def test_only_runs_the_named_steps(tmp_path):
    run_script(tmp_path, "--device", "cpu", "--budget", "12", "--only", "kernels,train")
    assert list(records(tmp_path)) == ["kernels", "train"]


def test_step_budget_overrides_one_steps_own_budget(tmp_path):
    run_script(tmp_path, "--device", "cpu", "--budget", "12", "--only", "env,train",
               "--step-budget", "train:7")
    plan = {p["step"]: p["budget_s"] for p in records(tmp_path)["env"]["run"]["plan"]}
    assert plan["train"] == 7 and plan["env"] == 600 and plan["sample"] == 600


def test_the_script_rejects_unknown_arguments(tmp_path):
    assert run_script(tmp_path, "--frobnicate").returncode == 2
    assert run_script(tmp_path, "--step-budget", "bench:30").returncode == 2
    assert run_script(tmp_path, "--step-budget", "sample:lots").returncode == 2
    assert run_script(tmp_path, "--device", "tpu").returncode == 2
    assert run_script(tmp_path, "--only", "kernels,bench").returncode == 2
    assert "--budget S" in run_script(tmp_path, "--help").stdout


# ----------------------------------------------------------------------------- records


def test_exit_codes_become_statuses_and_json_output_becomes_the_result(tmp_path):
    write(tmp_path, "kernels", 0, stdout=json.dumps({"rows": []}), stderr="warming up\n")
    write(tmp_path, "train", 124, stdout="", stderr="step 1\n")
    write(tmp_path, "sample", 1, stdout="", stderr="Traceback\nRuntimeError: CUDA out of memory\n")
    recs = records(tmp_path)
    assert recs["kernels"]["status"] == "ok" and recs["kernels"]["result"] == {"rows": []}
    assert recs["train"]["status"] == "timeout" and "60 s" in recs["train"]["reason"]
    assert recs["sample"]["status"] == "failed"
    assert recs["sample"]["reason"] == "RuntimeError: CUDA out of memory"
    assert recs["sample"]["result"] is None and "Traceback" in recs["sample"]["log_tail"]


def test_junit_xml_is_summarised_with_the_failing_tests_named(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest" tests="3" failures="1" errors="0" skipped="1" '
        'time="2.5"><testcase classname="tests.kernels.test_a" name="test_fwd"/>'
        '<testcase classname="tests.kernels.test_a" name="test_bwd"><failure message="assert '
        '0.3 &lt; 0.1">long text</failure></testcase><testcase classname="t" name="s">'
        '<skipped/></testcase></testsuite></testsuites>')
    write(tmp_path, "pytest", 1, stdout="1 failed", junit=xml)
    res = records(tmp_path)["pytest"]["result"]
    assert (res["tests"], res["passed"], res["failed"], res["skipped"]) == (3, 1, 1, 1)
    assert res["failures"] == [{"test": "tests.kernels.test_a::test_bwd", "kind": "failure",
                                "message": "assert 0.3 < 0.1"}]


def test_a_cut_run_reports_the_steps_it_never_reached_as_missing(tmp_path):
    write(tmp_path, "env", 0, stdout=json.dumps({"torch": "2.11.0", "triton": "3.6.0",
                                                  "gpu": "NVIDIA H200", "python": "3.12.3"}))
    write(tmp_path, "build", 0, stdout=json.dumps({"built_by": "torch.utils.cpp_extension"}))
    (tmp_path / "03_kernels.json").write_text('{"schema": "flowtok.gpu_check/1", "ind')  # cut
    result = report(str(tmp_path))
    assert result.exit_code == 0, result.output
    md = result.output
    assert "GPU: NVIDIA H200 · torch 2.11.0 · Triton 3.6.0" in md
    assert "csrc/ built by torch.utils.cpp_extension" in md
    assert "| 02 | pytest | missing |" in md and "| 05 | sample | missing |" in md
    assert "| 03 | kernels | unreadable |" in md
    assert "| attention fwd >= 1.0x the fastest SDPA backend | not measured | - |" in md


def test_targets_take_the_projects_fastest_kernel_and_the_xl_figures(tmp_path):
    rows = [{"op": "attention", "mode": "fwd", "provider": p, "status": "ok",
             "vs_fastest_sdpa": v, "pct_of_ceiling": 50.0}
            for p, v in (("triton", 0.8), ("cuda", 1.2), ("sdpa-flash", 1.0))]
    rows.append({"op": "euler_cfg_step", "mode": "fwd", "provider": "triton", "status": "ok",
                 "vs_fastest_sdpa": None, "pct_of_ceiling": 85.0})
    write(tmp_path, "kernels", 0, stdout=json.dumps({"rows": rows}))
    compare = {"rows": [{"name": "graph(fused)", "status": "ok", "ms_per_batch": 100.0,
                         "ratio_vs_plain": 1.6},
                        {"name": "compile(plain)", "status": "ok", "ms_per_batch": 105.0}],
               "flowtok_over_2d": 4.0}
    write(tmp_path, "sample", 0, stdout=json.dumps({
        "preset": "XL", "batch": 64, "dtype": "bf16", "compare": compare,
        "stages": {"end_to_end": {"images_per_s": 130.0}}}))
    write(tmp_path, "train", 0, stdout=json.dumps({"preset": "XL", "batch": 256, "mfu": 0.35}))
    targets = {t["target"]: t for t in R.load_report(tmp_path)["targets"]}
    attn = targets["attention fwd >= 1.0x the fastest SDPA backend"]
    assert attn["met"] is True and "(cuda)" in attn["measured"]
    assert targets["euler_cfg_step fwd >= 80% of measured copy bandwidth"]["met"] is True
    assert targets["layernorm_modulate fwd >= 80% of measured copy bandwidth"]["met"] is None
    assert targets["graph(fused) >= 1.5x plain eager"]["met"] is True
    assert targets["graph(fused) >= 1.1x compile(plain)"]["met"] is False
    assert targets["XL end to end >= 120 img/s (batch 64, bf16)"]["met"] is True
    assert targets["XL flow stage >= 3.3x the 2D DiT/2 baseline"]["met"] is True
    assert targets["XL training >= 40% MFU"]["met"] is False


def test_report_of_a_folder_without_records_is_a_one_line_error(tmp_path):
    result = report(str(tmp_path))
    assert result.exit_code == 1 and "no step records" in result.output
    assert report(str(tmp_path / "absent")).exit_code == 1


# ----------------------------------------------------------------------------- build fallback


def test_the_cpp_extension_fallback_builds_the_sources_cmake_builds():
    srcs = bce.sources()
    assert [s.name for s in srcs] == ["flowtok_ops.cpp", "attention.cu", "layernorm_modulate.cu",
                                      "gated_residual.cu", "euler_cfg.cu"]
    assert all(s.is_file() for s in srcs)
    assert bce.torch_arch_list("80;90a") == "8.0;9.0a"
    with pytest.raises(bce.BuildError, match="expected one such as"):
        bce.torch_arch_list("sm90")


@pytest.mark.skipif(torch.version.cuda is not None, reason="torch has CUDA here")
def test_the_fallback_refuses_a_cpu_torch_and_says_why(capsys):
    assert bce.main([]) == 1
    assert "CUDA is absent" in capsys.readouterr().err


# ----------------------------------------------------------------------------- what travels


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="not a git checkout")
def test_the_tracked_tree_fits_what_travels_to_the_device_and_wheels_stay_out():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    size = sum((ROOT / n).stat().st_size for n in names if n and (ROOT / n).is_file())
    assert size <= TREE_LIMIT, f"tracked tree {size / 1024**2:.1f} MiB > 60 MiB"
    ignored = subprocess.run(["git", "check-ignore", "-q", "wheels/typer-0.26-py3-none-any.whl"],
                             cwd=ROOT, check=False)
    assert ignored.returncode == 0, "wheels/ must be ignored by git (.gitignore)"
