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

}  // namespace

void set_num_threads(int n) {
  TIDE_CHECK(n >= 1, "set_num_threads: the thread count must be at least 1, got {}", n);
  requested_threads().store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  return requested_threads().load(std::memory_order_relaxed);
}

namespace cpu {

SingleOmpThread::SingleOmpThread() : saved_(omp_get_max_threads()) {
  if (saved_ != 1) omp_set_num_threads(1);
}

SingleOmpThread::~SingleOmpThread() {
  if (saved_ != 1) omp_set_num_threads(saved_);
}

}  // namespace cpu
}  // namespace tide
