#include "backends/cpu/threads.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "backends/types.h"

namespace tide {

namespace {

int initial_num_threads() {
  if (const char* env = std::getenv("TIDE_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return n;
  }
  return omp_get_max_threads();
}

std::atomic<int>& requested_threads() {
  static std::atomic<int> n{initial_num_threads()};
  return n;
}

// What this application thread last passed to omp_set_num_threads (0: never).
thread_local int t_applied_threads = 0;

}  // namespace

void set_num_threads(int n) {
  TIDE_CHECK(n >= 1, "set_num_threads: the thread count must be at least 1, got {}", n);
  requested_threads().store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  return requested_threads().load(std::memory_order_relaxed);
}

namespace cpu {

void sync_omp_threads(int limit) {
  int n = std::min(get_num_threads(), std::max(limit, 1));
  if (t_applied_threads != n) {
    omp_set_num_threads(n);
    t_applied_threads = n;
  }
}

}  // namespace cpu
}  // namespace tide
