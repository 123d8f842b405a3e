#include "backends/cpu/thread_pool.h"

#include <omp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "backends/cpu/threads.h"
#include "backends/types.h"

static_assert(sizeof(tide::cpu::detail::Job) + sizeof(uint64_t) <= 64,
              "a job and its word share one cache line");

namespace tide::cpu {

namespace {

// How long an idle worker keeps spinning before it sleeps: $TIDE_SPIN_US
// microseconds, default kDefaultSpinUs. Ops of one model step follow each
// other within microseconds, so spinning keeps the workers awake through a
// training or sampling loop, and costs at most this much CPU time after the
// last op. 0 sends them to sleep at once (for machines shared with other
// busy processes): each job then costs its caller a wake-up call (~2 us).
constexpr int kDefaultSpinUs = 2000;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// True on pool workers, and on a caller while its job runs: a parallel loop
// started there runs inline instead of waiting for the pool it is part of.
thread_local bool t_inside_job = false;

// The job word: generation (32 bits) | task count (16) | next unclaimed task
// (16). One atomic word, so a worker that claims a task also learns in the
// same instruction that the job is still the one it woke up for.
struct JobWord {
  static constexpr int kMaxTasks = 0xFFFF;
  static uint32_t generation(uint64_t w) { return static_cast<uint32_t>(w >> 32); }
  static int64_t tasks(uint64_t w) { return static_cast<int64_t>((w >> 16) & 0xFFFF); }
  static int64_t next(uint64_t w) { return static_cast<int64_t>(w & 0xFFFF); }
  // A new job whose task 0 is already the caller's.
  static uint64_t make(uint32_t generation, int64_t tasks) {
    return (uint64_t{generation} << 32) | (static_cast<uint64_t>(tasks) << 16) | 1;
  }
};

class ThreadPool {
 public:
  // Reads $TIDE_SPIN_US on the thread that first uses the pool, so a bad
  // value reaches that caller as a tide::Error.
  ThreadPool()
      : spin_time_(std::chrono::microseconds(cpu::env_int("TIDE_SPIN_US", 0, kDefaultSpinUs))) {}

  // Runs the job with the pool, or returns false if another thread holds it.
  bool try_run(int64_t tasks, const detail::Job& job) {
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    start_workers(std::min<int64_t>(tasks, get_num_threads()) - 1);
    job_ = job;
    error_ = nullptr;
    failed_.store(false, std::memory_order_relaxed);
    finished_.store(0, std::memory_order_relaxed);
    const uint32_t generation = ++generation_;
    word_.store(JobWord::make(generation, tasks), std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    t_inside_job = true;
    // Task 0 is the caller's without a claim: a worker that sees the job at
    // once would otherwise often win it, and which core holds which part of
    // the data would change from call to call.
    // The caller counts its own tasks here and workers theirs in finished_,
    // so that the common ending (a worker has just finished the last task)
    // costs the caller one cache-line transfer, not two.
    call_task(0, tasks);
    int64_t done_here = 1, task;
    while (done_here + finished_.load(std::memory_order_acquire) < tasks &&
           claim(generation, task)) {
      call_task(task, tasks);
      ++done_here;
    }
    t_inside_job = false;
    // Every task is claimed; wait for the ones workers are still running.
    while (done_here + finished_.load(std::memory_order_acquire) < tasks) cpu_relax();
    // Every task has finished (workers wrote error_ before counting theirs).
    std::exception_ptr error = std::move(error_);
    busy_.store(false, std::memory_order_release);
    if (error) std::rethrow_exception(error);
    return true;
  }

  int workers() {
    std::lock_guard<std::mutex> lock(start_mutex_);
    return static_cast<int>(workers_.size());
  }

 private:
  // Claims the next task of job `generation`; false when it has none left
  // (or a newer job replaced it). After a successful claim job_ stays valid
  // until this task is counted in finished_.
  bool claim(uint32_t generation, int64_t& task, int64_t* tasks = nullptr) {
    uint64_t word = word_.load(std::memory_order_acquire);
    for (;;) {
      if (JobWord::generation(word) != generation || JobWord::next(word) >= JobWord::tasks(word))
        return false;
      if (word_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        task = JobWord::next(word);
        if (tasks) *tasks = JobWord::tasks(word);
        return true;
      }
    }
  }

  // Runs one task. An exception must not escape a worker (std::terminate)
  // nor leave the caller's frame while workers still use its closure, so the
  // first one is kept for the caller to rethrow once every task has finished.
  void call_task(int64_t task, int64_t tasks) noexcept {
    try {
      job_.call(job_.closure, task, tasks);
    } catch (...) {
      if (!failed_.exchange(true, std::memory_order_relaxed)) error_ = std::current_exception();
    }
  }

  // A worker's task: counted in finished_ when done.
  void run_task(int64_t task, int64_t tasks) {
    call_task(task, tasks);
    finished_.fetch_add(1, std::memory_order_release);
  }

  void start_workers(int64_t wanted) {
    if (wanted <= started_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> lock(start_mutex_);
    while (static_cast<int64_t>(workers_.size()) < wanted) {
      const int index = static_cast<int>(workers_.size());
      // The worker's first job is the next one published: the caller
      // publishes only after this returns.
      const uint32_t seen = JobWord::generation(word_.load(std::memory_order_relaxed));
      workers_.emplace_back([this, index, seen] { worker_main(index, seen); });
      // Never joined: the pool lives until the process exits (see pool()).
      workers_.back().detach();
    }
    started_.store(static_cast<int>(workers_.size()), std::memory_order_release);
  }

  void worker_main(int index, uint32_t seen) {
    // oneDNN primitives called from a task must not open an OpenMP team.
    omp_set_num_threads(1);
    t_inside_job = true;
    for (;;) {
      seen = wait_for_job(seen);
      // Workers beyond the current thread count sit this job out.
      if (index + 1 >= get_num_threads()) continue;
      int64_t task, tasks;
      while (claim(seen, task, &tasks)) run_task(task, tasks);
    }
  }

  // Returns the generation of a job newer than `seen`: spins, then sleeps.
  uint32_t wait_for_job(uint32_t seen) {
    const auto deadline = std::chrono::steady_clock::now() + spin_time_;
    for (int spins = 1; spin_time_.count() > 0; ++spins) {
      const uint32_t generation = JobWord::generation(word_.load(std::memory_order_acquire));
      if (generation != seen) return generation;
      cpu_relax();
      if (spins % 64 == 0 && std::chrono::steady_clock::now() > deadline) break;
    }
    std::unique_lock<std::mutex> lock(sleep_mutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    uint32_t generation;
    wake_.wait(lock, [&] {
      generation = JobWord::generation(word_.load(std::memory_order_seq_cst));
      return generation != seen;
    });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return generation;
  }

  // The published job, in one cache line. Workers read job_ only after
  // claiming a task.
  const std::chrono::microseconds spin_time_;
  alignas(64) std::atomic<uint64_t> word_{0};
  detail::Job job_{};
  alignas(64) std::atomic<int64_t> finished_{0};
  std::atomic<bool> failed_{false};  // a task threw: error_ holds the first exception
  std::exception_ptr error_;
  alignas(64) std::atomic<bool> busy_{false};
  uint32_t generation_ = 0;  // written only by the thread holding busy_
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::mutex start_mutex_;
  std::atomic<int> started_{0};
  std::vector<std::thread> workers_;
};

// Created on first use and never destroyed: workers may still be spinning
// while static destructors run at exit.
ThreadPool& pool() {
  static ThreadPool* instance = new ThreadPool;
  return *instance;
}

}  // namespace

namespace detail {

void run_job(int64_t tasks, const Job& job) {
  TIDE_CHECK(tasks <= JobWord::kMaxTasks, "run_tasks: at most {} tasks per job, got {}",
             JobWord::kMaxTasks, tasks);
  const bool parallel = tasks > 1 && get_num_threads() > 1 && !t_inside_job;
  if (parallel && pool().try_run(tasks, job)) return;
  for (int64_t i = 0; i < tasks; ++i) job.call(job.closure, i, tasks);
}

}  // namespace detail

int pool_workers() {
  return pool().workers();
}

}  // namespace tide::cpu
