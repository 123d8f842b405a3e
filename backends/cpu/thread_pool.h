// Tide's CPU threads: the calling thread plus a pool of get_num_threads() - 1
// workers, shared by every parallel loop and oneDNN primitive.
//
// Why not OpenMP (which Debian's oneDNN is built on)? Opening a parallel
// region in libgomp costs about 0.8 us here, which is as long as adding two
// 256x64 tensors takes; a worker that spins on one cache line picks up work in
// about 0.15 us. Tide therefore owns its threads, and every oneDNN primitive
// runs with one OpenMP thread inside one of Tide's tasks (onednn.cpp), as the
// threadpool build of oneDNN would run under TensorFlow. With no OpenMP team
// ever started, no libgomp thread spins against these workers.
//
// How a job runs:
//   - the caller publishes it (a generation number and a task count in one
//     atomic word) and starts claiming tasks itself at once;
//   - workers claim the remaining tasks one at a time, so the caller never
//     waits for a worker that has not started (on a loaded machine a worker
//     may be descheduled; the caller then simply runs its tasks too);
//   - the caller returns when every task has finished.
// Which thread runs which task never changes a result: callers cut the work
// into tasks by size alone, and every task writes its own outputs.
//
// An idle worker spins for $TIDE_SPIN_US microseconds (default 2000), then
// sleeps on a condition variable.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace tide::cpu {

namespace detail {

// A job as the pool stores it: a call and the task's closure, copied into the
// same 64-byte cache line as the job's counters when it is small and
// trivially copyable (else a pointer to it). A worker then fetches everything
// it needs in one cache-line transfer; chasing references into the caller's
// stack would cost a transfer (~0.1 us here) per level.
struct Job {
  static constexpr size_t kInlineBytes = 48;
  void (*call)(const void* closure, int64_t task, int64_t tasks);
  alignas(8) unsigned char closure[kInlineBytes];
};

void run_job(int64_t tasks, const Job& job);

}  // namespace detail

// Runs task(i, tasks) for every i in [0, tasks) on the calling thread and up to
// get_num_threads() - 1 workers, and returns when all have run. Called from
// inside a task, or while another application thread's job holds the pool,
// the tasks run one after another on the calling thread. If a task throws,
// run_tasks rethrows that exception (the first, if several throw) on the
// caller once no task is running any more; tasks not yet started may or may
// not run. task must not wait for another task (they may all run on the
// caller); capturing by value (small closures) lets workers start sooner.
template <typename Fn>
void run_tasks(int64_t tasks, const Fn& task) {
  detail::Job job;
  if constexpr (sizeof(Fn) <= detail::Job::kInlineBytes && std::is_trivially_copyable_v<Fn>) {
    std::memcpy(job.closure, &task, sizeof(Fn));
    job.call = [](const void* closure, int64_t i, int64_t n) {
      (*static_cast<const Fn*>(closure))(i, n);
    };
  } else {
    const Fn* pointer = &task;
    std::memcpy(job.closure, &pointer, sizeof pointer);
    job.call = [](const void* closure, int64_t i, int64_t n) {
      const Fn* fn;
      std::memcpy(&fn, closure, sizeof fn);
      (*fn)(i, n);
    };
  }
  detail::run_job(tasks, job);
}

// Pool workers that exist now (for tests: they start at first use).
int pool_workers();

}  // namespace tide::cpu
