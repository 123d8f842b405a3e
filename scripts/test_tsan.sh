#!/usr/bin/env bash
# Builds Tide with ThreadSanitizer in its own build directory and runs the
# threaded tests under it: Tide's CPU thread pool (tests/test_thread_pool.cpp),
# several std::threads sampling and computing exact log-likelihoods with one
# shared model (tests/test_concurrency.cpp), the oneDNN plan cache hit from
# concurrent callers, a plan built on one thread run from two others, and
# matmuls cut into chunks on the pool (tests/test_backend_cpu.cpp).
# Any TSan report fails the run.
#
#   ./scripts/test_tsan.sh
#
# The kernels run on Tide's pool with two threads (TIDE_NUM_THREADS=2): its
# workers are plain std::threads synchronised through instrumented atomics,
# so TSan sees every hand-off. oneDNN runs with one OpenMP thread inside the
# pool's tasks, so Debian's libgomp (not built with TSan, whose own
# synchronisation TSan cannot see) never starts a team.
#
# Built with clang (CXX, default clang++): with GCC 12's libtsan the
# instrumented shared libraries crash while the dynamic loader relocates them
# (Debian 12, kernel 6.x), before any test runs. Clang's -fopenmp would link
# LLVM's libomp beside the libgomp that oneDNN needs: two OpenMP runtimes in
# one process, and TSan reports libomp's uninstrumented per-thread set-up as
# races. So the build uses libgomp, as a GCC build does.
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
  -DOpenMP_CXX_FLAGS=-fopenmp=libgomp -DOpenMP_CXX_LIB_NAMES=gomp \
  -DOpenMP_gomp_LIBRARY=/usr/lib/x86_64-linux-gnu/libgomp.so.1 \
  -DTIDE_WITH_CUDA=OFF -DTIDE_BUILD_TESTS=ON -DTIDE_BUILD_BENCH=OFF -DTIDE_BUILD_EXAMPLES=OFF
# Only the libraries and the threaded tests (tests/CMakeLists.txt).
cmake --build "$BUILD_DIR" -j "$JOBS" --target tide_tsan_tests

export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
export TIDE_NUM_THREADS=2
tests="$BUILD_DIR/tests/tide_tsan_tests"
"$tests" "[threads]"
"$tests" "[concurrency]"
"$tests" "oneDNN plans: bounded cache*"
"$tests" "oneDNN plans built on one thread*"
"$tests" "matmul results do not depend on the thread count"
echo "test_tsan.sh: no ThreadSanitizer report"
