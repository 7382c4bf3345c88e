"""The records of scripts/gpu_check.sh and `flowtok bench report`: one JSON file per step, and the
markdown tables for benchmarks/RESULTS.md made from a folder of them.

Stdlib only (no torch): the script writes each record with this module the moment its step
ends, even on a machine where torch or the CLI's packages do not import. A record
(schema ``flowtok.gpu_check/1``), file ``NN_step.json``::

    schema, index, step, command, status (ok | failed | timeout | skipped), exit_code, seconds,
    budget_s, finished, reason (why it failed / was cut / skipped; "" when ok),
    result (the step's --json output; pytest: its JUnit summary; None when there was none),
    log_tail (the end of its stderr, and of stdout when that was not JSON),
    run {command_line, plan [{index, step, budget_s}], budget_s, started, python,
         python_version, versions {package: version or None}, gpu, commit, wheels}

``load_report(dir)`` reads a folder of records into one dict (steps in plan order, missing
ones named as such, and the issue-25 targets checked against what was measured);
``render_markdown`` turns that dict into the tables.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

from flowtok.atomic import write_text_atomic
from flowtok.errors import DataError

SCHEMA = "flowtok.gpu_check/1"
REPORT_SCHEMA = "flowtok.bench.report/1"
RECORD_NAME = re.compile(r"^(\d\d)_([a-z0-9_]+)\.json$")
TIMEOUT_CODES = (124, 137)  # coreutils timeout: 124 after TERM, 137 (128 + KILL) after --kill-after
LOG_TAIL_CHARS = 4000
# what flowtok and the script need (pyproject's dependencies, pytest): None in a record's
# run.versions is a package the machine lacks, to bring as a wheel (README, GPU check)
VERSION_PACKAGES = ("torch", "triton", "typer", "safetensors", "numpy", "pillow", "tqdm",
                    "pyyaml", "transformers", "tokenizers", "pytest", "hypothesis")


# ----------------------------------------------------------------------------- writing records


def parse_plan(plan: str) -> list[dict]:
    """``"env:20,build:120"`` -> [{index 0, step env, budget_s 20}, {index 1, ...}]."""
    steps = [item.split(":") for item in plan.split(",") if item.strip()]
    return [{"index": i, "step": name.strip(), "budget_s": int(budget)}
            for i, (name, budget) in enumerate(steps)]


def package_versions(names: tuple[str, ...] = VERSION_PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata (nothing is imported; None: not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _read(path: str | Path | None) -> str:
    if not path or not Path(path).is_file():
        return ""
    return Path(path).read_text(encoding="utf-8", errors="replace")


def _json_or_none(text: str):
    """The JSON document a --json command printed, or None (empty, cut off, or not JSON)."""
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None


def junit_summary(path: str | Path) -> dict | None:
    """Counts and failures of a pytest --junitxml file; None when it is missing or unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites)
              for k in ("tests", "failures", "errors", "skipped")}
    failures = []
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            node = case.find(kind)
            if node is not None:
                message = (node.get("message") or node.text or "").strip().splitlines()
                failures.append({"test": f"{case.get('classname')}::{case.get('name')}",
                                 "kind": kind, "message": (message[0] if message else "")[:300]})
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"tests": counts["tests"], "passed": passed, "failed": counts["failures"],
            "errors": counts["errors"], "skipped": counts["skipped"],
            "time_s": sum(float(s.get("time", 0) or 0) for s in suites), "failures": failures}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def make_record(*, index: int, step: str, command: str, exit_code: int, seconds: float,
                budget_s: int, stdout: str | Path | None = None, stderr: str | Path | None = None,
                junit: str | Path | None = None, skipped: str | None = None,
                run: dict | None = None) -> dict:
    """One step's record from its exit code and the files its output went to.

    ``skipped``: the step did not run, and why. A step whose stdout is JSON (the --json
    commands) keeps it as ``result``; a pytest step keeps its JUnit summary.
    """
    out_text, err_text = _read(stdout), _read(stderr)
    result = junit_summary(junit) if junit else _json_or_none(out_text)
    if skipped is not None:
        status, reason = "skipped", skipped
    elif exit_code in TIMEOUT_CODES:
        status, reason = "timeout", f"cut at its {budget_s} s budget (exit {exit_code})"
    elif exit_code != 0:
        status = "failed"
        reason = (f"{result['failed']} failed, {result['errors']} errors of {result['tests']}"
                  if junit and result else
                  _last_line(err_text) or _last_line(out_text) or f"exit {exit_code}")
    else:
        status, reason = "ok", ""
    stdout_is_result = result is not None and not junit
    tail = err_text if stdout_is_result else f"{err_text}\n{out_text}".strip()
    return {"schema": SCHEMA, "index": index, "step": step, "command": command,
            "status": status, "exit_code": exit_code, "seconds": round(seconds, 2),
            "budget_s": budget_s, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "reason": reason, "result": result, "log_tail": tail[-LOG_TAIL_CHARS:],
            "run": run or {}}


def write_record(out_dir: str | Path, record: dict) -> Path:
    """Write ``NN_step.json`` atomically (a run cut mid-write leaves the old file or none)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{record['index']:02d}_{record['step']}.json"
    write_text_atomic(path, json.dumps(record, indent=1, default=str))
    return path


def record_from_env(env: dict[str, str] | None = None) -> Path:
    """What scripts/gpu_check.sh calls after each step: the ``GC_*`` variables it sets become
    one record in ``GC_OUT`` (see the script for their meaning)."""
    e = os.environ if env is None else env
    run = {"command_line": e.get("GC_COMMAND_LINE", ""), "plan": parse_plan(e.get("GC_PLAN", "")),
           "budget_s": int(e.get("GC_TOTAL_BUDGET") or 0), "started": e.get("GC_STARTED", ""),
           "python": e.get("GC_PYTHON", ""), "python_version": platform.python_version(),
           "versions": package_versions(),
           "gpu": e.get("GC_GPU", ""), "commit": e.get("GC_COMMIT", ""),
           "wheels": e.get("GC_WHEELS", "")}
    record = make_record(
        index=int(e["GC_INDEX"]), step=e["GC_STEP"], command=e.get("GC_STEP_COMMAND", ""),
        exit_code=int(e.get("GC_RC") or 0), seconds=float(e.get("GC_SECONDS") or 0),
        budget_s=int(e.get("GC_BUDGET") or 0), stdout=e.get("GC_STDOUT"),
        stderr=e.get("GC_STDERR"), junit=e.get("GC_JUNIT") or None,
        skipped=e.get("GC_SKIPPED") or None, run=run)
    return write_record(e["GC_OUT"], record)


# ----------------------------------------------------------------------------- reading a folder


def load_records(directory: str | Path) -> dict[str, dict]:
    """step name -> record for every ``NN_step.json`` in ``directory``; a file that is not a
    readable record becomes a record with status "unreadable"."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a folder (expected the $OUT of scripts/gpu_check.sh)")
    records: dict[str, dict] = {}
    for path in sorted(directory.iterdir()):
        m = RECORD_NAME.match(path.name)
        if not m:
            continue
        index, step = int(m.group(1)), m.group(2)
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
                raise ValueError(f"not a {SCHEMA} record")
        except (OSError, ValueError) as e:
            rec = {"index": index, "step": step, "status": "unreadable", "reason": str(e)[:200],
                   "result": None, "run": {}}
        records[step] = rec
    if not records:
        raise DataError(f"{directory}: no step records (NN_step.json from scripts/gpu_check.sh)")
    return records


def load_report(directory: str | Path) -> dict:
    """A folder of records as one JSON-ready dict (schema ``flowtok.bench.report/1``)::

        dir, run (from the first record that has it), steps [{index, step, status, seconds,
        budget_s (the time limit it ran under), reason, command}] in plan order (a planned
        step with no file: "missing"),
        records {step: record}, targets [{target, measured, value, goal, met}]
    """
    records = load_records(directory)
    run = next((r["run"] for r in records.values() if r.get("run")), {})
    plan = run.get("plan") or [{"index": r["index"], "step": s, "budget_s": r.get("budget_s")}
                               for s, r in records.items()]
    planned = {p["step"] for p in plan}
    steps = []
    for p in plan + [{"index": r["index"], "step": s, "budget_s": r.get("budget_s")}
                     for s, r in records.items() if s not in planned]:
        r = records.get(p["step"])
        if r is None:
            steps.append({**p, "status": "missing", "seconds": None, "command": "",
                          "reason": "no record: the run ended before this step wrote one"})
        else:
            steps.append({**p, "budget_s": r.get("budget_s", p.get("budget_s")),
                          "status": r["status"], "seconds": r.get("seconds"),
                          "command": r.get("command", ""), "reason": r.get("reason", "")})
    return {"schema": REPORT_SCHEMA, "dir": str(directory), "run": run, "steps": steps,
            "records": records, "targets": check_targets(records)}


# ----------------------------------------------------------------------------- targets (issue 25)


def _result(records: dict, step: str) -> dict:
    r = records.get(step) or {}
    return r.get("result") if isinstance(r.get("result"), dict) else {}


def _kernel_rows(records: dict, op: str, mode: str, providers: tuple[str, ...]) -> list[dict]:
    return [r for r in _result(records, "kernels").get("rows", [])
            if r.get("op") == op and r.get("mode") == mode and r.get("provider") in providers
            and r.get("status") == "ok"]


def _best(rows: list[dict], key: str) -> tuple[float | None, str]:
    rows = [r for r in rows if r.get(key) is not None]
    if not rows:
        return None, "not measured"
    best = max(rows, key=lambda r: r[key])
    return best[key], best["provider"]


def _compare_row(records: dict, name: str) -> dict | None:
    cmp_ = _result(records, "sample").get("compare") or {}
    return next((r for r in cmp_.get("rows", []) if r.get("name") == name
                 and r.get("status") == "ok"), None)


def check_targets(records: dict) -> list[dict]:
    """The speed targets of issue 25 against what the records measured; ``met`` is None where
    nothing was measured. Kernel targets take the faster of the project's own kernels
    (triton, cuda); the sampling and training ones need the XL preset."""
    out = []

    def add(target: str, value: float | None, goal: float, measured: str, unit: str = "x"):
        text = "not measured" if value is None else f"{value:.3g}{unit} ({measured})"
        out.append({"target": target, "measured": text, "value": value, "goal": goal,
                    "met": None if value is None else value >= goal})

    own = ("triton", "cuda")
    for mode, goal in (("fwd", 1.0), ("fwd+bwd", 0.9)):
        v, who = _best(_kernel_rows(records, "attention", mode, own), "vs_fastest_sdpa")
        add(f"attention {mode} >= {goal:.1f}x the fastest SDPA backend", v, goal, who)
    for op in ("layernorm_modulate", "euler_cfg_step"):
        v, who = _best(_kernel_rows(records, op, "fwd", own), "pct_of_ceiling")
        add(f"{op} fwd >= 80% of measured copy bandwidth", v, 80.0, who, unit="%")

    sample = _result(records, "sample")
    xl = sample.get("preset") == "XL"
    graph, plain_c = _compare_row(records, "graph(fused)"), _compare_row(records, "compile(plain)")
    add("graph(fused) >= 1.5x plain eager", (graph or {}).get("ratio_vs_plain"), 1.5,
        "graph(fused) / plain")
    ratio = (plain_c["ms_per_batch"] / graph["ms_per_batch"]
             if graph and plain_c and graph.get("ms_per_batch") else None)
    add("graph(fused) >= 1.1x compile(plain)", ratio, 1.1, "compile(plain) ms / graph(fused) ms")
    e2e = ((sample.get("stages") or {}).get("end_to_end") or {}).get("images_per_s") if xl else None
    add("XL end to end >= 120 img/s (batch 64, bf16)", e2e, 120.0,
        f"batch {sample.get('batch')}, {sample.get('dtype')}", unit=" img/s")
    over = (sample.get("compare") or {}).get("flowtok_over_2d") if xl else None
    add("XL flow stage >= 3.3x the 2D DiT/2 baseline", over, 3.3, "2D ms / fused ms")
    train = _result(records, "train")
    mfu = 100 * train["mfu"] if train.get("preset") == "XL" and train.get("mfu") else None
    add("XL training >= 40% MFU", mfu, 40.0, f"batch {train.get('batch')}, measured ceiling",
        unit="%")
    return out


# ----------------------------------------------------------------------------- markdown


def _n(x, fmt: str = ".3g") -> str:
    return "-" if x is None else format(x, fmt)


def _table(headers: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    return ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows)]


def _device_line(report: dict) -> str:
    run, recs = report["run"], report["records"]
    env = _result(recs, "env")
    dev = next((_result(recs, s)["device"] for s in ("sample", "train", "kernels")
                if _result(recs, s).get("device")), {})
    versions = run.get("versions") or {}
    gpu = env.get("gpu") or run.get("gpu")
    device = f"GPU: {gpu}" if gpu else f"Device: {dev.get('name') or 'unknown'} (no GPU seen)"
    parts = [device,
             f"torch {env.get('torch') or versions.get('torch') or dev.get('torch') or '?'}",
             f"Triton {env.get('triton') or versions.get('triton') or '?'}",
             f"CUDA {env.get('cuda_version') or dev.get('cuda') or '-'}",
             f"Python {env.get('python') or run.get('python_version') or '?'}"]
    return " · ".join(parts)


def _kernels_md(res: dict) -> list[str]:
    ceil, shapes, timing = (res.get(k) or {} for k in ("ceilings", "shapes", "timing"))
    lines = [(f"### bench kernels ({res.get('dtype')}; attention {shapes.get('attention')}, "
             f"rows {shapes.get('rows')})"), "",
             (f"Ceilings: matmul {_n((ceil.get('matmul') or {}).get('tflops'))} TFLOP/s, copy "
             f"{_n((ceil.get('copy') or {}).get('gbps'), '.4g')} GB/s; {timing.get('method')}, "
             f"median of {timing.get('repeats')}."), ""]
    rows, skipped = [], {}
    for r in res.get("rows", []):
        if r.get("status") != "ok":
            skipped.setdefault(f"{r.get('status')}: {r.get('reason')}", []).append(
                f"{r.get('op')} {r.get('mode')} {r.get('provider')}")
            continue
        rows.append([r["op"], r["mode"], r["provider"], _n(r.get("median_ms"), ".4f"),
                     _n(r.get("tflops")), _n(r.get("gbps"), ".4g"),
                     _n(r.get("pct_of_ceiling"), ".1f"), _n(r.get("vs_fastest_sdpa"), ".2f"),
                     _n(r.get("vs_plain"), ".2f")])
    lines += _table(["op", "mode", "provider", "ms", "TFLOP/s", "GB/s", "% ceiling", "vs SDPA",
                     "vs plain"], rows, right=(3, 4, 5, 6, 7, 8))
    if skipped:
        lines += ["", "Not timed:"]
        lines += [f"- {why} ({len(which)}: {', '.join(which)})" for why, which in skipped.items()]
    return lines


def _train_md(res: dict) -> list[str]:
    mem = res.get("peak_memory_bytes")
    ceil = res.get("ceiling") or {}
    row = [res.get("preset"), res.get("batch"), res.get("dtype"), _n(res.get("step_ms"), ".2f"),
           _n(res.get("samples_per_s"), ".1f"), _n(res.get("tflops_per_s")),
           _n(None if res.get("mfu") is None else 100 * res["mfu"], ".1f"),
           _n(None if res.get("mfu_datasheet") is None else 100 * res["mfu_datasheet"], ".1f"),
           _n(None if mem is None else mem / 1024**3, ".2f")]
    return ["### bench train", "",
            *_table(["preset", "batch", "dtype", "step ms", "samples/s", "TFLOP/s",
                     f"MFU % (of {_n(ceil.get('tflops'))} TFLOP/s measured)", "MFU % (datasheet)",
                     "peak GiB"], [row], right=(1, 3, 4, 5, 6, 7, 8))]


def _sample_md(res: dict) -> list[str]:
    labels = {"text": "text encoding", "flow": f"flow ({res.get('steps')} x "
              f"{res.get('cfg_passes')} passes)", "decode": "decoding", "end_to_end": "end to end"}
    rows = []
    for key, label in labels.items():
        s = (res.get("stages") or {}).get(key) or {}
        rows.append([label, _n(s.get("ms_per_batch"), ".2f"), _n(s.get("ms_per_image"), ".3f"),
                     _n(s.get("images_per_s"), ".1f"),
                     _n(None if s.get("flops_per_image") is None else s["flops_per_image"] / 1e9),
                     _n(s.get("tflops_per_s")), _n(s.get("pct_of_ceiling"), ".1f")])
    mem = res.get("peak_memory_bytes")
    lines = [(f"### bench sample (preset {res.get('preset')}, batch {res.get('batch')}, "
             f"{res.get('dtype')}, {(res.get('text_encoder') or {}).get('label')})"), "",
             *_table(["stage", "ms/batch", "ms/image", "img/s", "GFLOP/img", "TFLOP/s",
                      "% ceiling"], rows, right=(1, 2, 3, 4, 5, 6)), "",
             (f"Batch-1 latency {_n(res.get('batch1_latency_ms'), '.2f')} ms; peak memory "
             f"{'-' if mem is None else f'{mem / 1024**3:.2f} GiB'}.")]
    cmp_ = res.get("compare")
    if cmp_:
        rows = [[r.get("name"), r.get("status"), _n(r.get("ms_per_batch"), ".2f"),
                 _n(r.get("images_per_s"), ".1f"), _n(r.get("ratio_vs_plain"), ".2f"),
                 _n(r.get("first_call_s"), ".1f"), (r.get("reason") or "")[:160]]
                for r in cmp_.get("rows", [])]
        lines += ["", f"Compare ({cmp_.get('stage')}, batch {cmp_.get('batch')}):", "",
                  *_table(["variant", "status", "ms/batch", "img/s", "vs plain", "first call s",
                           "note"], rows, right=(2, 3, 4, 5))]
        if cmp_.get("flowtok_over_2d") is not None:
            lines += ["", (f"FlowTok's flow stage is {cmp_['flowtok_over_2d']:.2f}x the 2D-latent "
                      "baseline's speed.")]
    return lines


def _pytest_md(rec: dict) -> list[str]:
    res = rec.get("result") or {}
    if not res:
        return []
    lines = ["### pytest -m gpu", "",
             (f"{res['passed']} passed, {res['failed']} failed, {res['errors']} errors, "
             f"{res['skipped']} skipped ({res['tests']} selected, {res['time_s']:.1f} s).")]
    lines += [f"- {f['kind']}: `{f['test']}`: {f['message']}" for f in res.get("failures", [])]
    return lines


def render_markdown(report: dict) -> str:
    """The report as markdown for benchmarks/RESULTS.md: device and versions, the command,
    one row per step, then each measurement's table and the targets."""
    run, recs = report["run"], report["records"]
    lines = ["## GPU check (scripts/gpu_check.sh)", "", _device_line(report), "",
             (f"Command: `{run.get('command_line') or 'unknown'}` (commit "
             f"{run.get('commit') or 'unknown'}, started {run.get('started') or '?'}, "
             f"budget {run.get('budget_s') or '?'} s)"), ""]
    missing = [name for name, v in (run.get("versions") or {}).items() if v is None]
    if missing:
        lines += [f"Not installed on this machine: {', '.join(missing)}.", ""]
    if run.get("wheels"):
        lines += [f"Wheels from wheels/: {run['wheels']}.", ""]
    rows = [[f"{s['index']:02d}", s["step"], s["status"], _n(s.get("seconds"), ".1f"),
             _n(s.get("budget_s"), "d"), f"`{s['command']}`" if s.get("command") else "",
             (s.get("reason") or "")[:200]] for s in report["steps"]]
    lines += _table(["#", "step", "status", "s", "limit s", "command", "note"], rows,
                    right=(3, 4))
    build = recs.get("build", {}).get("result") or {}
    if build.get("built_by"):
        lines += ["", f"csrc/ built by {build['built_by']}."]
    sections = [_pytest_md(recs["pytest"]) if "pytest" in recs else []]
    for step, render in (("kernels", _kernels_md), ("train", _train_md), ("sample", _sample_md)):
        if _result(recs, step):
            sections.append(render(_result(recs, step)))
    targets = [[t["target"], t["measured"],
                {True: "yes", False: "**no**", None: "-"}[t["met"]]] for t in report["targets"]]
    sections.append(["### Targets (issue 25)", "",
                     *_table(["target", "measured", "met"], targets)])
    for section in sections:
        if section:
            lines += ["", *section]
    return "\n".join(lines) + "\n"
