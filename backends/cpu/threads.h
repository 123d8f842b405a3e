// The number of threads Tide's CPU kernels (and the oneDNN primitives they call)
// may use.
#pragma once

namespace tide {

// Sets the thread count for every later CPU op, on every application thread.
// n < 1 is an error. The default is $TIDE_NUM_THREADS if set (anything but a
// whole number >= 1 there is an error), else OpenMP's default
// ($OMP_NUM_THREADS, else the number of cores).
void set_num_threads(int n);
int get_num_threads();

namespace cpu {

// The environment variable `name` as an int >= min, or `fallback` when it is
// unset or empty; anything else throws tide::Error naming the variable.
int env_int(const char* name, int min, int fallback);

// Tide's threads are its own pool (thread_pool.h); oneDNN, built on OpenMP,
// must not start a team of its own. OpenMP's thread count is a per-thread
// setting (backends.md, section 5), so this sets it to 1 on the calling thread
// for the guard's lifetime and then restores the application's value.
class SingleOmpThread {
 public:
  SingleOmpThread();
  ~SingleOmpThread();
  SingleOmpThread(const SingleOmpThread&) = delete;
  SingleOmpThread& operator=(const SingleOmpThread&) = delete;

 private:
  int saved_;
};

}  // namespace cpu
}  // namespace tide
