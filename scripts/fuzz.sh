#!/usr/bin/env bash
# Builds Tide's libFuzzer targets (fuzz/) with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs each for SECONDS (default 60):
#
#   ./scripts/fuzz.sh [SECONDS]              every target
#   ./scripts/fuzz.sh [SECONDS] npy csv      only these (safetensors, npy, csv, cli)
#
# Prints the executions per target and exits non-zero if any target found a
# crash, a sanitizer report, a leak, a hang (-timeout), more memory than
# -rss_limit_mb, or a single allocation over -malloc_limit_mb: inputs are at
# most -max_len bytes, so a reader that allocates what a header claims rather
# than what the file holds is caught. The offending input is saved under
# $BUILD_DIR/fuzz-artifacts/ (add it to fuzz/seeds/TARGET/ as a regression
# case once fixed). Inputs that found new coverage accumulate in
# $BUILD_DIR/fuzz-corpus/TARGET/, so later runs continue where this one left.
#
# Seeds: fuzz/seeds/TARGET/ (valid files, command lines and regression cases),
# the bad-file corpus tests/data/corpus/TARGET/ and the golden files
# tests/data/golden/ (valid .npy and safetensors files).
#
# Environment: TIDE_FUZZ_BUILD_DIR (default build-fuzz), TIDE_JOBS (default:
# CPU count), CXX (default clang++).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then TARGETS=(safetensors npy csv cli); fi
BUILD_DIR=${TIDE_FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${TIDE_JOBS:-$(nproc)}
ROOT=$(pwd)

./scripts/setup.sh
# No tests, benchmarks or examples: only the libraries, tide_cli and fuzz/.
cmake -S . -B "$BUILD_DIR" \
  -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all" \
  -DTIDE_SANITIZE=address,undefined -DTIDE_BUILD_FUZZERS=ON \
  -DTIDE_WITH_CUDA=OFF -DTIDE_BUILD_TESTS=OFF -DTIDE_BUILD_BENCH=OFF -DTIDE_BUILD_EXAMPLES=OFF
cmake --build "$BUILD_DIR" -j "$JOBS" --target "${TARGETS[@]/#/fuzz_}"

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:print_stacktrace=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# The Tide libraries run single-threaded here: no pool workers per input.
export TIDE_NUM_THREADS=1 OMP_NUM_THREADS=1

# The largest input per target: big enough for every seed's structure (the
# golden safetensors model is truncated, its header is what matters), small
# enough that -malloc_limit_mb is far above anything a valid input needs.
max_len() {
  case "$1" in
    safetensors) echo 8192 ;;
    npy) echo 4096 ;;
    csv) echo 4096 ;;
    cli) echo 1024 ;;
  esac
}

failed=()
summary=()
for target in "${TARGETS[@]}"; do
  corpus="$BUILD_DIR/fuzz-corpus/$target"
  artifacts="$BUILD_DIR/fuzz-artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  for dir in "fuzz/seeds/$target" "tests/data/corpus/$target"; do
    if [[ -d $dir ]]; then seeds+=("$ROOT/$dir"); fi
  done
  if [[ $target == npy || $target == safetensors ]]; then seeds+=("$ROOT/tests/data/golden"); fi

  log="$BUILD_DIR/fuzz-$target.log"
  echo "fuzz.sh: fuzz_$target for ${SECONDS_PER_TARGET} s (log: $log)"
  status=0
  "$BUILD_DIR/fuzz/fuzz_$target" "$corpus" "${seeds[@]}" \
    -dict="$ROOT/fuzz/dicts/$target.dict" \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$target")" \
    -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  line="fuzz_$target: ${execs:-?} executions in ${SECONDS_PER_TARGET} s, corpus $(find "$corpus" -type f | wc -l) inputs"
  if ((status != 0)); then
    line+=", FAILED (exit $status): $(grep -m1 -E 'ERROR|SUMMARY|==[0-9]+==' "$log" || echo 'see log')"
    failed+=("$target")
    tail -n 40 "$log" >&2
    echo "fuzz.sh: the failing input is in $artifacts/" >&2
  fi
  summary+=("$line")
done

echo "fuzz.sh: summary"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no crash, leak, hang or over-allocation"
