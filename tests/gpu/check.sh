#!/usr/bin/env bash
# The GPU check (issue 5): on a machine with an NVIDIA GPU, build Tide with
# CUDA for sm_90 (+ PTX), run the op conformance suite and the flow tests on
# CUDA, smoke-test the `tide` command on CUDA, run the GPU benchmarks side by
# side with PyTorch, and print one short table. About 8 minutes at most on a
# 16-core machine with one H200: every step has a timeout and the whole run a
# budget.
#
# Usage: tests/gpu/check.sh [--cpu|--dry-run]
#   --cpu, --dry-run (or TIDE_GPU_CHECK_ALLOW_CPU=1): no GPU needed; the same
#       steps on the CPU (device cpu, tiny benchmark sizes), to test this script.
# Environment:
#   OUT                          log directory (default ./gpu-check-out)
#   TIDE_GPU_BUILD_DIR           build directory (default <repo>/build-gpu-check, emptied
#                                first unless TIDE_GPU_CHECK_REUSE_BUILD=1; a directory
#                                given here is reconfigured, never emptied)
#   TIDE_GPU_CHECK_BUDGET        seconds for the whole run (default 470)
#   TIDE_JOBS                    parallel compile jobs (default: all cores)
#   TIDE_GPU_CHECK_WITH_CUDA     ON/OFF: build the CUDA backend (default ON; OFF with --cpu)
#   TIDE_PYTHON                  a python3 with torch (default python3, else /usr/bin/python3)
# Exit status: 0 every step passed; 1 a step failed or timed out (all steps
# still run; each is listed with its log); 2 bad usage; 3 no NVIDIA GPU found
# (nothing was run).
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CPU_MODE=${TIDE_GPU_CHECK_ALLOW_CPU:-0}
for arg in "$@"; do
  case "$arg" in
    --cpu | --dry-run) CPU_MODE=1 ;;
    -h | --help)
      sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "check.sh: unknown argument '$arg' (expected --cpu or --dry-run)" >&2
      exit 2
      ;;
  esac
done

OUT_DIR=${OUT:-$PWD/gpu-check-out}
DEFAULT_BUILD=$ROOT/build-gpu-check
BUILD=${TIDE_GPU_BUILD_DIR:-$DEFAULT_BUILD}
BUDGET=${TIDE_GPU_CHECK_BUDGET:-470}
JOBS=${TIDE_JOBS:-$(nproc)}
mkdir -p "$OUT_DIR"
START=$(date +%s)

if [ "$CPU_MODE" = 1 ]; then
  DEVICE=cpu
  WITH_CUDA=${TIDE_GPU_CHECK_WITH_CUDA:-OFF}
  BENCH_FLAG=--quick
  # Thousands of small ops on a possibly busy machine: no spinning OpenMP threads.
  export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
  echo "check.sh: CPU mode: the GPU check's steps on the CPU (tests this script, measures nothing)"
else
  DEVICE=cuda
  WITH_CUDA=${TIDE_GPU_CHECK_WITH_CUDA:-ON}
  BENCH_FLAG=
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "check.sh: no NVIDIA GPU found (nvidia-smi missing or lists no GPU); nothing was run."
    echo "check.sh: run with --cpu to exercise the same steps on the CPU."
    exit 3
  fi
fi

# A python with torch for the PyTorch side of the benchmarks.
PY=${TIDE_PYTHON:-python3}
if ! "$PY" -c 'import torch' >/dev/null 2>&1 && /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  PY=/usr/bin/python3
fi

# --- steps ----------------------------------------------------------------------
# step NAME TIMEOUT CMD...: runs CMD with its output in $OUT_DIR/NN-NAME.log,
# within TIMEOUT seconds and what is left of the budget; records the result.
NAMES=()
RESULTS=()
SECONDS_TAKEN=()
LOGS=()
FAILED=0
n=0
step() {
  local name=$1 limit=$2
  shift 2
  n=$((n + 1))
  local log
  log=$OUT_DIR/$(printf '%02d' "$n")-$name.log
  local left=$((BUDGET - ($(date +%s) - START)))
  [ "$limit" -gt "$((left - 5))" ] && limit=$((left - 5))
  NAMES+=("$name")
  LOGS+=("$log")
  if [ "$limit" -lt 5 ]; then
    RESULTS+=("NOT RUN (budget spent)")
    SECONDS_TAKEN+=(0)
    FAILED=1
    echo "== $name: not run, the ${BUDGET} s budget is spent" | tee "$log"
    return 1
  fi
  echo "== $name (timeout ${limit} s): $*" | tee "$log"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" bash -c '"$@"' "$name" "$@" >>"$log" 2>&1
  rc=$?
  SECONDS_TAKEN+=($(($(date +%s) - t0)))
  case $rc in
    0) RESULTS+=("ok") ;;
    124 | 137) RESULTS+=("TIMEOUT after ${limit} s") FAILED=1 ;;
    77) RESULTS+=("SKIPPED (exit 77: $(grep -m1 SKIPPED "$log" | cut -c1-80))") FAILED=1 ;;
    *) RESULTS+=("FAILED (exit $rc)") FAILED=1 ;;
  esac
  echo "== $name: ${RESULTS[-1]} in ${SECONDS_TAKEN[-1]} s (log: $log)"
  return $rc
}

gpu_info() {
  if [ "$DEVICE" = cuda ]; then
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
  else
    echo "CPU mode: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  fi
  command -v nvcc >/dev/null && nvcc --version | tail -2
  cmake --version | head -1
  "$PY" -c 'import sys, torch; print(sys.executable, "torch", torch.__version__, "cuda",
torch.version.cuda, "available", torch.cuda.is_available())' || echo "no torch in $PY"
  (cd "$ROOT" && git log -1 --format='commit %H %s' 2>/dev/null && git status --short | head -20)
}

configure() {
  # A fresh build in the script's own directory; a directory given by
  # TIDE_GPU_BUILD_DIR is only reconfigured, never deleted.
  if [ "$BUILD" = "$DEFAULT_BUILD" ] && [ "${TIDE_GPU_CHECK_REUSE_BUILD:-0}" != 1 ]; then
    rm -rf "$BUILD"
  fi
  local launcher=()
  command -v ccache >/dev/null &&
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  # CMAKE_CUDA_ARCHITECTURES=90 compiles SASS for sm_90 and embeds compute_90
  # PTX (CMake's default for a plain number: "90-real" + "90-virtual").
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" \
    -DTIDE_WITH_CUDA="$WITH_CUDA" -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DTIDE_BUILD_TESTS=ON -DTIDE_BUILD_BENCH=OFF -DTIDE_BUILD_GPU_BENCH=ON \
    -DTIDE_BUILD_EXAMPLES=OFF
}

build() {
  cmake --build "$BUILD" -j "$JOBS" --target tide_conformance tide_bench_gpu tide
}

conformance() {
  "$BUILD/tests/tide_conformance" --device "$DEVICE" "$@"
}

# The `tide` command end to end on the device: train there, then sample,
# compute log-likelihoods and evaluate the trained model.
cli_smoke() {
  local tide=$BUILD/tools/tide work=$OUT_DIR/cli
  rm -rf "$work" && mkdir -p "$work" && cd "$work" || return 1
  "$tide" train --device "$DEVICE" --data 8gaussians --steps 300 --batch 512 --width 64 \
    --seed 1 --out model.safetensors || return 1
  "$tide" sample --model model.safetensors --n 2000 --out x1.npy || return 1
  "$tide" loglik --model model.safetensors --data 8gaussians --n 500 --out logp.npy || return 1
  "$tide" eval --model model.safetensors --data 8gaussians || return 1
}

bench() {
  "$PY" "$ROOT/bench/compare_gpu.py" "$BUILD" --device "$DEVICE" ${BENCH_FLAG:+"$BENCH_FLAG"} \
    --json "$OUT_DIR/bench.json"
}

# The steps run under timeout(1) in a child bash, which needs them exported.
export ROOT OUT_DIR BUILD DEFAULT_BUILD DEVICE WITH_CUDA BENCH_FLAG JOBS PY
export -f gpu_info configure build conformance cli_smoke bench

step gpu-info 30 gpu_info
step configure 90 configure
step build 300 build
step conformance 120 conformance '~[flow]'
step flow-tests 60 conformance '[flow]'
step benchmarks 180 bench
step cli-smoke 60 cli_smoke

# --- the table -------------------------------------------------------------------
TOTAL=$(($(date +%s) - START))
{
  echo
  echo "GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), device $DEVICE: $(
    if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name --format=csv,noheader | head -1
    else echo "CPU mode (no GPU)"; fi), ${TOTAL} s"
  echo
  echo "| step | result | seconds | detail |"
  echo "|---|---|---|---|"
  for i in "${!NAMES[@]}"; do
    detail=""
    case ${NAMES[$i]} in
      conformance | flow-tests)
        detail=$(grep -E '^(All tests passed|test cases|tide_conformance: [0-9]+ comparisons)' "${LOGS[$i]}" |
          tr '\n' ' ' | cut -c1-110)
        ;;
    esac
    echo "| ${NAMES[$i]} | ${RESULTS[$i]} | ${SECONDS_TAKEN[$i]} | ${detail} |"
  done
  if [ -f "$OUT_DIR/bench.json" ]; then
    "$PY" - "$OUT_DIR/bench.json" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
def cell(name, s):
    if not s:
        return "n/a"
    return f"{1 / s:,.0f}/s" if name.startswith("train/") else (f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s")
for r in data["rows"]:
    ratio = f"{r['ratio']:.2f}x vs PyTorch (target {r['target']}x)" if r.get("ratio") else "n/a"
    if data["quick"] and r.get("ratio"):
        ratio += ", quick sizes: no verdict"
    print(f"| bench: {r['label']} | {ratio} | | Tide {cell(r['name'], r['tide'])}, "
          f"PyTorch {cell(r['name'], r['torch'])}{'; ' + r['note'] if r['note'] else ''} |")
EOF
  fi
} | tee "$OUT_DIR/summary.md"

if [ "$FAILED" != 0 ]; then
  echo
  echo "FAILURES (the first lines of each; full logs in $OUT_DIR):"
  for i in "${!NAMES[@]}"; do
    [ "${RESULTS[$i]}" = ok ] && continue
    echo "--- ${NAMES[$i]}: ${RESULTS[$i]} (${LOGS[$i]})"
    # Catch2 failures, CMake/compiler errors, or else the end of the log.
    if grep -qE 'FAILED:|error|Error' "${LOGS[$i]}"; then
      grep -E -A6 'FAILED:|error:|Error' "${LOGS[$i]}" | head -40
    else
      tail -15 "${LOGS[$i]}"
    fi
  done
  exit 1
fi
echo "check.sh: all steps passed"
exit 0
