#!/usr/bin/env bash
# The GPU check (issue 5): on a machine with an NVIDIA GPU, build Tide with
# CUDA for sm_90 (+ PTX), run the op conformance suite and the flow tests on
# CUDA, the CUDA backend's own tests (tide_cuda_tests, with the cuda_graph
# captures), smoke-test the `tide` command on CUDA (eager and --cuda-graph),
# run the GPU benchmarks side by side with PyTorch (eager and CUDA-graph Tide
# rows), and print one short table. About 8 minutes at most on a 16-core
# machine with one H200: every step has a timeout and the whole run a budget.
#
# Usage: tests/gpu/check.sh [--cpu|--dry-run]
#   --cpu, --dry-run (or TIDE_GPU_CHECK_ALLOW_CPU=1): no GPU needed; the same
#       steps on the CPU (device cpu, tiny benchmark sizes), to test this script.
#       A step that needs a GPU (exit 77: tide_cuda_tests) is "NOT RUN" there,
#       not a failure; on a GPU machine it is a failure.
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
    77)
      # Needs a GPU: expected in CPU mode, a failure of the GPU check otherwise.
      if [ "$CPU_MODE" = 1 ]; then
        RESULTS+=("NOT RUN (exit 77: $(grep -m1 SKIPPED "$log" | cut -c1-80))")
        rc=0
      else
        RESULTS+=("SKIPPED (exit 77: $(grep -m1 SKIPPED "$log" | cut -c1-80))") FAILED=1
      fi
      ;;
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

# tide_cuda_tests exists only in a CUDA build. It adds about 23 CPU-seconds
# (three test files, measured without ccache on the 2-core build machine), a
# few seconds of wall time on 16 cores next to the CUDA backend's kernels.
build() {
  local targets=(tide_conformance tide_bench_gpu tide)
  [ "$WITH_CUDA" = ON ] && targets+=(tide_cuda_tests)
  cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}"
}

conformance() {
  "$BUILD/tests/tide_conformance" --device "$DEVICE" "$@"
}

# The CUDA backend's own tests (tests/cuda/: memory, errors, Philox, ops
# against the CPU, and test_cuda_flow_graph.cpp's captured training, solver
# and likelihood steps against eager runs). Exit 77: not run (built without
# CUDA, or no GPU), which step() reports as NOT RUN in CPU mode.
cuda_tests() {
  local exe=$BUILD/tests/tide_cuda_tests
  if [ "$WITH_CUDA" != ON ]; then
    echo "SKIPPED: built without CUDA (TIDE_GPU_CHECK_WITH_CUDA=$WITH_CUDA), no tide_cuda_tests"
    return 77
  fi
  [ -x "$exe" ] || { echo "error: $exe missing (did the build step fail?)"; return 1; }
  "$exe"
  local rc=$?
  [ "$rc" = 77 ] && echo "SKIPPED: tide_cuda_tests found no CUDA device"
  return "$rc"
}

# compare_npy LABEL A B TOL: prints "compare: LABEL <max |a - b| / (1 + |b|)>"
# for two .npy files and fails when that is above TOL (inf: only printed).
compare_npy() {
  "$PY" - "$@" <<'EOF'
import sys
import numpy as np
label, a_path, b_path, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
a, b = np.load(a_path).astype(np.float64), np.load(b_path).astype(np.float64)
if a.shape != b.shape:
    sys.exit(f"compare: {label}: {a_path} has shape {a.shape}, {b_path} {b.shape}")
diff = float(np.max(np.abs(a - b) / (1 + np.abs(b)))) if a.size else 0.0
ok = diff <= tol
verdict = "" if tol == float("inf") else (" ok" if ok else f" ABOVE {tol:g}")
print(f"compare: {label} {diff:.1e}{verdict}")
sys.exit(0 if ok else 1)
EOF
}

# The `tide` command end to end on the device: train there, then sample,
# compute log-likelihoods and evaluate the trained model. Then --cuda-graph:
# sampling and log-likelihoods (fixed-step RK4, which a graph can capture)
# must equal the eager runs on the same model and inputs to 1e-5; a model
# trained with --cuda-graph (same seed) equals the eager one up to rounding
# that 300 Adam steps amplify, so its samples' distance is only printed.
cli_smoke() {
  local tide=$BUILD/tools/tide work=$OUT_DIR/cli
  rm -rf "$work" && mkdir -p "$work" && cd "$work" || return 1
  local dev=(--device "$DEVICE") train=(--data 8gaussians --steps 300 --batch 512 --width 64 --seed 1)
  local rk4=(--solver rk4 --steps 50) data=(--data 8gaussians --n 500)
  "$tide" train "${dev[@]}" "${train[@]}" --out model.safetensors || return 1
  "$tide" sample --model model.safetensors "${dev[@]}" --n 2000 --out x1.npy || return 1
  "$tide" loglik --model model.safetensors "${dev[@]}" "${data[@]}" --out logp.npy || return 1
  "$tide" eval --model model.safetensors "${dev[@]}" --data 8gaussians || return 1
  "$tide" eval --model model.safetensors "${dev[@]}" --cuda-graph "${rk4[@]}" --data 8gaussians ||
    return 1
  "$tide" plot --model model.safetensors "${dev[@]}" --cuda-graph --density --resolution 40 \
    --out density.png || return 1
  echo "--- --cuda-graph"
  "$tide" train "${dev[@]}" --cuda-graph "${train[@]}" --out model-graph.safetensors || return 1
  for graph in "" --cuda-graph; do
    "$tide" sample --model model.safetensors "${dev[@]}" ${graph:+"$graph"} "${rk4[@]}" --n 2000 --seed 2 \
      --out "x1-rk4${graph:+-graph}.npy" || return 1
    "$tide" loglik --model model.safetensors "${dev[@]}" ${graph:+"$graph"} "${rk4[@]}" "${data[@]}" \
      --out "logp-rk4${graph:+-graph}.npy" || return 1
  done
  "$tide" sample --model model-graph.safetensors "${dev[@]}" "${rk4[@]}" --n 2000 --seed 2 \
    --out x1-rk4-graph-trained.npy || return 1
  compare_npy "sample graph/eager" x1-rk4-graph.npy x1-rk4.npy 1e-5 || return 1
  compare_npy "loglik graph/eager" logp-rk4-graph.npy logp-rk4.npy 1e-5 || return 1
  compare_npy "graph-trained/eager-trained samples" x1-rk4-graph-trained.npy x1-rk4.npy inf
}

bench() {
  "$PY" "$ROOT/bench/compare_gpu.py" "$BUILD" --device "$DEVICE" ${BENCH_FLAG:+"$BENCH_FLAG"} \
    --json "$OUT_DIR/bench.json"
}

# The steps run under timeout(1) in a child bash, which needs them exported.
export ROOT OUT_DIR BUILD DEFAULT_BUILD DEVICE WITH_CUDA BENCH_FLAG JOBS PY
export CPU_MODE
export -f gpu_info configure build conformance cuda_tests compare_npy cli_smoke bench

step gpu-info 30 gpu_info
step configure 90 configure
step build 300 build
step conformance 120 conformance '~[flow]'
step flow-tests 60 conformance '[flow]'
step cuda-tests 90 cuda_tests
step benchmarks 180 bench
step cli-smoke 90 cli_smoke

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
      conformance | flow-tests | cuda-tests)
        detail=$(grep -E '^(All tests passed|test cases|tide_conformance: [0-9]+ comparisons)' "${LOGS[$i]}" |
          tr '\n' ' ' | cut -c1-110)
        ;;
      cli-smoke)
        detail=$(grep '^compare: ' "${LOGS[$i]}" | sed 's/^compare: //' | paste -sd ';' | cut -c1-110)
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
    if r.get("counts") is False:  # of eager/CUDA graph, the faster row counts for the target
        ratio += ", not counted (the other Tide row is faster)"
    print(f"| bench: {r['label']} | {ratio} | | Tide {cell(r['name'], r['tide'])}, "
          f"PyTorch {cell(r['name'], r['torch'])}{'; ' + r['note'] if r['note'] else ''} |")
EOF
  fi
} | tee "$OUT_DIR/summary.md"

if [ "$FAILED" != 0 ]; then
  echo
  echo "FAILURES (the first lines of each; full logs in $OUT_DIR):"
  for i in "${!NAMES[@]}"; do
    case ${RESULTS[$i]} in ok | "NOT RUN (exit 77"*) continue ;; esac
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
