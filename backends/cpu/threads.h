// The number of threads Tide's CPU kernels (and the oneDNN primitives they call)
// may use.
#pragma once

namespace tide {

// Sets the thread count for every later CPU op, on every application thread.
// n < 1 is an error. The default is $TIDE_NUM_THREADS if set, else OpenMP's
// default (usually the number of cores).
void set_num_threads(int n);
int get_num_threads();

namespace cpu {

// OpenMP's thread count is a per-thread setting (backends.md, section 5): call
// this on the thread that is about to open a parallel region or run a oneDNN
// primitive, so both use get_num_threads() threads (or `limit`, if smaller:
// work too small to repay waking a thread team). Cheap when nothing changed.
void sync_omp_threads(int limit = 1 << 30);

}  // namespace cpu
}  // namespace tide
