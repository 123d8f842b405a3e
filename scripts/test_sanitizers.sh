#!/usr/bin/env bash
# Builds Tide with AddressSanitizer and UndefinedBehaviorSanitizer (ASan brings
# LeakSanitizer along) in a second build directory and runs the whole CTest
# suite under them. Any report fails the run: UBSan is built without recovery
# and every sanitizer halts on its first error.
#
#   ./scripts/test_sanitizers.sh
#
# Environment: TIDE_ASAN_BUILD_DIR (default build-asan), TIDE_JOBS (parallel
# compile jobs, default: CPU count). Set CMAKE_CXX_COMPILER_LAUNCHER=ccache to
# cache compiles.
#
# Third-party false positives are suppressed in scripts/sanitizers/*.supp, each
# entry with the reason; Tide's own code gets no suppressions.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${TIDE_ASAN_BUILD_DIR:-build-asan}
JOBS=${TIDE_JOBS:-$(nproc)}
SUPP_DIR=$(pwd)/scripts/sanitizers

./scripts/setup.sh
# -O1: a fraction of -O2's compile time, still fast enough to run the suite;
# no -DNDEBUG, so assertions are checked too.
cmake -S . -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all" \
  -DTIDE_SANITIZE=address,undefined \
  -DTIDE_WITH_CUDA=OFF -DTIDE_BUILD_TESTS=ON -DTIDE_BUILD_BENCH=OFF -DTIDE_BUILD_EXAMPLES=OFF
cmake --build "$BUILD_DIR" -j "$JOBS"

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:print_stacktrace=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$SUPP_DIR/ubsan.supp"
export LSAN_OPTIONS="suppressions=$SUPP_DIR/lsan.supp:print_suppressions=0"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2
