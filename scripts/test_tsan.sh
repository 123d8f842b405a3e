#!/usr/bin/env bash
# Builds Tide with ThreadSanitizer in its own build directory and runs the
# threaded tests under it: several std::threads sampling and computing exact
# log-likelihoods with one shared model (tests/test_concurrency.cpp), the
# oneDNN plan cache hit from concurrent callers, and a plan built on one thread
# run from two others (tests/test_backend_cpu.cpp).
# Any TSan report fails the run.
#
#   ./scripts/test_tsan.sh
#
# The kernels run with one OpenMP thread (TIDE_NUM_THREADS=1,
# OMP_NUM_THREADS=1): Debian's libgomp is not built with TSan, so TSan cannot
# see the synchronisation in its thread pool and reports races between the
# pool's threads that are not there. With one OpenMP thread every parallel
# region runs on the application thread that opened it, so the only threads
# are the test's own, and every report is about Tide.
#
# Built with clang (CXX, default clang++): with GCC 12's libtsan the
# instrumented shared libraries crash while the dynamic loader relocates them
# (Debian 12, kernel 6.x), before any test runs.
#
# Environment: TIDE_TSAN_BUILD_DIR (default build-tsan), TIDE_JOBS (parallel
# compile jobs, default: CPU count), CXX.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${TIDE_TSAN_BUILD_DIR:-build-tsan}
JOBS=${TIDE_JOBS:-$(nproc)}

./scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DTIDE_SANITIZE=thread \
  -DTIDE_WITH_CUDA=OFF -DTIDE_BUILD_TESTS=ON -DTIDE_BUILD_BENCH=OFF -DTIDE_BUILD_EXAMPLES=OFF
# Only the libraries and the threaded tests (tests/CMakeLists.txt).
cmake --build "$BUILD_DIR" -j "$JOBS" --target tide_tsan_tests

export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
export TIDE_NUM_THREADS=1 OMP_NUM_THREADS=1
tests="$BUILD_DIR/tests/tide_tsan_tests"
"$tests" "[concurrency]"
"$tests" "oneDNN plans: bounded cache*"
"$tests" "oneDNN plans built on one thread*"
echo "test_tsan.sh: no ThreadSanitizer report"
