#!/usr/bin/env bash
# One command for a session with a GPU: what the machine has, the CUDA C++ build, the GPU
# tests and the three benchmarks, each time-boxed, each result written as JSON under $OUT
# the moment it exists, so a run cut short still returns what it measured. Then
# `flowtok bench report DIR` turns the files into the tables of benchmarks/RESULTS.md.
#
#   bash scripts/gpu_check.sh                  # on the device: H100/H200, writes to $OUT
#   bash scripts/gpu_check.sh --budget 570     # the same, finished inside a 600 s call
#   bash scripts/gpu_check.sh --device cpu --preset tiny --out /tmp/gc   # CPU rehearsal
#
# Runs from the checkout (PYTHONPATH=.:kernels), whether or not flowtok is pip-installed;
# never reaches the network (PIP_NO_INDEX, HF offline). Wheels in wheels/ (never committed,
# see README "GPU check in one call") are installed first with pip --no-index.
#
# Steps and their budgets on one H100/H200 (torch 2.11, Triton 3.6), in seconds; the total
# is 650, inside 11 minutes. Each step runs under `timeout` for min(its budget, what is left
# of --budget); a step with under 10 s left is recorded as skipped. A step that fails or is
# cut is recorded too, and the next one runs.
#   00 env       20  flowtok doctor --json --no-model: versions, GPU, csrc, kernel dispatch
#   01 build    120  csrc/ by CMake (python -m flowtok_kernels.build); if that fails,
#                    torch.utils.cpp_extension (python -m flowtok_kernels.build_cpp_extension)
#   02 pytest   120  pytest -m gpu (its JUnit XML summarised into the record)
#   03 kernels  150  flowtok bench kernels (saves the measured dispatch the later steps use)
#   04 train     60  flowtok bench train --preset XL
#   05 sample   180  flowtok bench sample --preset XL --batch 64 --dtype bf16 --compare
# The cheap training bench runs before the long sampling comparison, so a tight --budget
# cuts the comparison rather than both.
#
# Files in the output folder (7, under the device's limit of 8): 00_env.json … 05_sample.json
# (schema flowtok.gpu_check/1, flowtok/bench/report.py: status, exit code, seconds, the
# step's --json output as "result", the end of its stderr) and gpu_check.log.
#
# Options:
#   --out DIR        output folder (default: $OUT, else out/gpu_check)
#   --device D       cuda (default) or cpu; cpu is a rehearsal: small repeats, fp32, and
#                    600 s per step, 3600 in all, for a shared CPU (about 20 s when idle)
#   --preset P       preset of the train and sample benches (default XL; on cpu tiny)
#   --budget S       total seconds for all steps (default 660; on cpu 3600)
#   --only LIST      comma list of steps to run (default: all), e.g. --only build,pytest
#   --step-budget STEP:S  one step's own budget in seconds (repeatable), e.g. sample:500 for a
#                    call that runs only the sampling comparison (torch.compile rows take minutes)
#   --tests PATHS    what `pytest -m gpu` collects (default: tests)
#   --python PY      interpreter (default: $PYTHON, else python3, else python)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
COMMAND_LINE="bash scripts/gpu_check.sh${*:+ $*}"

OUT_DIR="${OUT:-out/gpu_check}"
DEVICE=cuda
PRESET=""
TOTAL_BUDGET=""
ONLY=""
STEP_BUDGETS=()
TESTS="tests"
PY="${PYTHON:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT_DIR="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --preset) PRESET="$2"; shift 2 ;;
    --budget) TOTAL_BUDGET="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --step-budget) STEP_BUDGETS+=("$2"); shift 2 ;;
    --tests) TESTS="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cuda:*|cpu) ;; *) echo "gpu_check: --device cuda or cpu" >&2; exit 2 ;; esac
[[ "$TOTAL_BUDGET" =~ ^[0-9]*$ ]] || { echo "gpu_check: --budget takes seconds" >&2; exit 2; }
if [ -z "$PY" ]; then
  PY="$(command -v python3 || command -v python)" || { echo "gpu_check: no python" >&2; exit 1; }
fi
mkdir -p "$OUT_DIR" || exit 1
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
LOG="$OUT_DIR/gpu_check.log"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [ "$DEVICE" = cpu ]; then
  PRESET="${PRESET:-tiny}"
  TOTAL_BUDGET="${TOTAL_BUDGET:-3600}"
  PLAN="env:600,build:600,pytest:600,kernels:600,train:600,sample:600"
  KERNELS_ARGS=(--repeats 1 --warmup 0 --no-save-dispatch --modes fwd)
  TRAIN_ARGS=(--batch 4 --repeats 1 --warmup 0)
  SAMPLE_ARGS=(--batch 4 --dtype fp32 --repeats 1 --warmup 0)
else
  PRESET="${PRESET:-XL}"
  TOTAL_BUDGET="${TOTAL_BUDGET:-660}"
  PLAN="env:20,build:120,pytest:120,kernels:150,train:60,sample:180"
  KERNELS_ARGS=()
  TRAIN_ARGS=()
  SAMPLE_ARGS=(--batch 64 --dtype bf16)
fi
for step in ${ONLY//,/ }; do
  [[ ",$PLAN" == *",$step:"* ]] || { echo "gpu_check: --only: no step $step" >&2; exit 2; }
done
for override in "${STEP_BUDGETS[@]}"; do
  [[ "$override" =~ ^([a-z]+):([0-9]+)$ && ",$PLAN" == *",${BASH_REMATCH[1]}:"* ]] ||
    { echo "gpu_check: --step-budget takes STEP:SECONDS with a known step, got $override" >&2; exit 2; }
  PLAN="$(sed -E "s/(^|,)${BASH_REMATCH[1]}:[0-9]+/\\1${BASH_REMATCH[1]}:${BASH_REMATCH[2]}/" <<<"$PLAN")"
done
RESERVE_S=5     # kept back from --budget for writing the last record
MIN_STEP_S=10   # a step given less than this is skipped, not started

export PYTHON="$PY"
export PYTHONPATH="$ROOT:$ROOT/kernels${PYTHONPATH:+:$PYTHONPATH}"
export PIP_NO_INDEX=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1

now_ms() { date +%s%3N; }
STARTED_MS="$(now_ms)"
log() { printf '%s\n' "$*" >>"$LOG"; }

# --- what travels into every record (flowtok.bench.report.record_from_env reads GC_*)
GPU="$(timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader 2>/dev/null | head -n 1)"
COMMIT="${GC_COMMIT:-}"  # a copy of the tree without .git: GC_COMMIT=<hash> bash scripts/…
if [ -z "$COMMIT" ]; then
  COMMIT="$(git rev-parse --short HEAD 2>/dev/null)"
  [ -n "$COMMIT" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] \
    && COMMIT="$COMMIT+local changes"
fi
WHEELS=""
if compgen -G "wheels/*.whl" >/dev/null; then
  # brought by hand (README): the package and those of its dependencies the device lacks
  if "$PY" -m pip install --no-index --no-deps wheels/*.whl >>"$LOG" 2>&1 \
     || "$PY" -m pip install --no-index --no-deps --user wheels/*.whl >>"$LOG" 2>&1; then
    WHEELS="installed: $(cd wheels && ls -- *.whl | tr '\n' ' ')"
  else
    WHEELS="pip install --no-index failed (see gpu_check.log)"
  fi
fi
export GC_OUT="$OUT_DIR" GC_PLAN="$PLAN" GC_TOTAL_BUDGET="$TOTAL_BUDGET" GC_PYTHON="$PY" \
  GC_COMMAND_LINE="$COMMAND_LINE" GC_STARTED="$(date +%Y-%m-%dT%H:%M:%S%z)" GC_GPU="$GPU" \
  GC_COMMIT="${COMMIT:-unknown (no git)}" GC_WHEELS="$WHEELS"
log "== $COMMAND_LINE"
log "   python $PY; GPU ${GPU:-none seen by nvidia-smi}; commit ${COMMIT:-unknown}"
log "   ${WHEELS:-no wheels/ to install}"

budget_of() { tr ',' '\n' <<<"$PLAN" | sed -n "s/^$1://p"; }
index_of() { tr ',' '\n' <<<"$PLAN" | grep -n "^$1:" | cut -d: -f1 | awk '{print $1 - 1}'; }
selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# The step's record (flowtok/bench/report.py, stdlib only); should even that fail to run, a
# minimal record written here, so that no step ends without a file.
write_record() {  # STEP SHOWN_COMMAND RC SECONDS BUDGET [SKIPPED_REASON]
  local index status=failed file
  index="$(index_of "$1")"
  GC_INDEX="$index" GC_STEP="$1" GC_STEP_COMMAND="$2" GC_RC="$3" GC_SECONDS="$4" \
  GC_BUDGET="$5" GC_SKIPPED="${6:-}" GC_STDOUT="$WORK/$1.out" GC_STDERR="$WORK/$1.err" \
  GC_JUNIT="$([ "$1" = pytest ] && echo "$WORK/junit.xml")" \
    "$PY" -c 'from flowtok.bench.report import record_from_env; record_from_env()' \
    2>>"$LOG" && return 0
  [ "$3" = 0 ] && status=ok
  [ -n "${6:-}" ] && status=skipped
  file="$OUT_DIR/$(printf %02d "$index")_$1.json"
  printf '{"schema": "flowtok.gpu_check/1", "index": %d, "step": "%s", "status": "%s", ' \
    "$index" "$1" "$status" >"$file"
  printf '"exit_code": %d, "seconds": %s, "budget_s": %d, "result": null, "run": {}, ' \
    "$3" "$4" "$5" >>"$file"
  printf '"reason": "the record writer failed (see gpu_check.log)"}\n' >>"$file"
}

# run_step STEP SHOWN_COMMAND CMD...: time-boxed, output to $WORK, record and log written at once
run_step() {
  local step="$1" shown="$2"; shift 2
  selected "$step" || return 0
  local budget elapsed left limit t0 rc secs
  budget="$(budget_of "$step")"
  elapsed=$(( ($(now_ms) - STARTED_MS) / 1000 ))
  left=$(( TOTAL_BUDGET - elapsed - RESERVE_S ))
  limit=$(( budget < left ? budget : left ))
  log ""
  log "== $(printf %02d "$(index_of "$step")") $step: $shown (budget ${budget} s)"
  if [ "$limit" -lt "$MIN_STEP_S" ]; then
    : >"$WORK/$step.out"; : >"$WORK/$step.err"
    write_record "$step" "$shown" 0 0 "$budget" \
      "no time left: ${elapsed} s of --budget ${TOTAL_BUDGET} s used"
    log "-- skipped (no time left)"
    return 0
  fi
  log "   time limit ${limit} s"
  t0="$(now_ms)"
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$step.out" 2>"$WORK/$step.err"
  rc=$?
  secs="$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN { printf "%.2f", (b - a) / 1000 }')"
  write_record "$step" "$shown" "$rc" "$secs" "$limit"
  log "-- exit $rc after $secs s"
  tail -n 30 "$WORK/$step.err" >>"$LOG"
  head -c 1 "$WORK/$step.out" | grep -q '{' || tail -n 30 "$WORK/$step.out" >>"$LOG"
}

# CMake first; torch.utils.cpp_extension when CMake fails (e.g. its CUDA toolkit lookup).
# Progress goes to stderr; stdout is one JSON line saying which builder produced the library.
build_csrc() {
  local cmake fallback=null by=null
  "$PYTHON" -m flowtok_kernels.build >&2
  cmake=$?
  if [ "$cmake" = 0 ]; then
    by='"cmake"'
  else
    echo "gpu_check: the CMake build failed (exit $cmake); trying torch.utils.cpp_extension" >&2
    "$PYTHON" -m flowtok_kernels.build_cpp_extension >&2
    fallback=$?
    [ "$fallback" = 0 ] && by='"torch.utils.cpp_extension"'
  fi
  printf '{"cmake_exit": %d, "cpp_extension_exit": %s, "built_by": %s}\n' "$cmake" "$fallback" "$by"
  [ "$by" != null ]
}
export -f build_csrc

FT=("$PY" -m flowtok_cli)
DEV=(--device "$DEVICE")
run_step env "flowtok doctor --json --no-model" "${FT[@]}" doctor --json --no-model
run_step build "python -m flowtok_kernels.build || python -m flowtok_kernels.build_cpp_extension" \
  bash -c build_csrc
run_step pytest "pytest -m gpu $TESTS" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
  --continue-on-collection-errors --junitxml="$WORK/junit.xml" $TESTS
run_step kernels "flowtok bench kernels ${KERNELS_ARGS[*]} ${DEV[*]} --json" \
  "${FT[@]}" bench kernels "${KERNELS_ARGS[@]}" "${DEV[@]}" --json
run_step train "flowtok bench train --preset $PRESET ${TRAIN_ARGS[*]} ${DEV[*]} --json" \
  "${FT[@]}" bench train --preset "$PRESET" "${TRAIN_ARGS[@]}" "${DEV[@]}" --json
run_step sample "flowtok bench sample --preset $PRESET ${SAMPLE_ARGS[*]} --compare ${DEV[*]} --json" \
  "${FT[@]}" bench sample --preset "$PRESET" "${SAMPLE_ARGS[@]}" --compare "${DEV[@]}" --json

total="$(awk -v a="$STARTED_MS" -v b="$(now_ms)" 'BEGIN { printf "%.0f", (b - a) / 1000 }')"
log ""
log "== done in $total s; tables: flowtok bench report $OUT_DIR"
echo "gpu_check: done in $total s; records in $OUT_DIR; tables: flowtok bench report $OUT_DIR"
