#include "backends/cpu/threads.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "backends/types.h"

namespace tide {

namespace {

int initial_num_threads() {
  return cpu::env_int("TIDE_NUM_THREADS", 1, omp_get_max_threads());
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

int env_int(const char* name, int min, int fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(env, &end, 10);
  TIDE_CHECK(*end == '\0' && errno == 0 && value >= min && value <= INT_MAX,
             "{}: expected a whole number from {} to {}, got '{}'", name, min, INT_MAX, env);
  return static_cast<int>(value);
}

SingleOmpThread::SingleOmpThread() : saved_(omp_get_max_threads()) {
  if (saved_ != 1) omp_set_num_threads(1);
}

SingleOmpThread::~SingleOmpThread() {
  if (saved_ != 1) omp_set_num_threads(saved_);
}

}  // namespace cpu
}  // namespace tide
