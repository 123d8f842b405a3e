// Tide's CPU thread pool (backends/cpu/thread_pool.h) and the loops on it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "backends/cpu/loops.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/threads.h"

using namespace tide;
using namespace tide::cpu;

namespace {

struct ThreadCount {
  int saved = get_num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
};

}  // namespace

TEST_CASE("run_tasks runs every task exactly once", "[threads]") {
  for (int threads : {1, 2, 3, 8}) {
    ThreadCount guard(threads);
    for (int64_t tasks : {1, 2, 3, 7, 64, 1000}) {
      INFO(threads << " threads, " << tasks << " tasks");
      std::vector<std::atomic<int>> runs(tasks);
      std::atomic<int64_t> wrong_count{0};
      // Many jobs in a row: a worker late for one job must not touch the next.
      for (int job = 0; job < 50; ++job) {
        run_tasks(tasks, [&runs, &wrong_count, tasks](int64_t i, int64_t n) {
          if (n != tasks) wrong_count.fetch_add(1);
          runs[i].fetch_add(1);
        });
      }
      CHECK(wrong_count.load() == 0);
      for (int64_t i = 0; i < tasks; ++i) REQUIRE(runs[i].load() == 50);
    }
  }
  CHECK_THROWS_WITH(run_tasks(70000, [](int64_t, int64_t) {}), Catch::Contains("run_tasks"));
}

TEST_CASE("run_tasks uses the pool's threads up to the thread count", "[threads]") {
  ThreadCount guard(2);
  std::set<std::thread::id> seen;
  std::mutex mutex;
  // Each task waits (up to 10 s) until both have started, so two threads
  // must run them.
  std::atomic<int> started{0};
  run_tasks(2, [&](int64_t, int64_t) {
    started.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 2 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    std::lock_guard<std::mutex> lock(mutex);
    seen.insert(std::this_thread::get_id());
  });
  CHECK(seen.size() == 2);
  CHECK(pool_workers() >= 1);

  // One thread: everything on the caller.
  ThreadCount one(1);
  std::set<std::thread::id> alone;
  run_tasks(8, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mutex);
    alone.insert(std::this_thread::get_id());
  });
  CHECK(alone == std::set<std::thread::id>{std::this_thread::get_id()});
}

TEST_CASE("nested jobs and concurrent callers run inline and finish", "[threads]") {
  ThreadCount guard(2);
  SECTION("a parallel loop inside a task") {
    std::vector<std::atomic<int>> hits(4 * 1000);
    run_tasks(4, [&](int64_t i, int64_t) {
      parallel_for(1000, 1, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) hits[i * 1000 + j].fetch_add(1);
      });
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
  }
  SECTION("four application threads share the pool") {
    std::vector<std::thread> callers;
    std::vector<int64_t> sums(4, 0);
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&sums, t] {
        for (int job = 0; job < 200; ++job) {
          std::vector<int64_t> parts(16, 0);
          run_tasks(16, [&parts](int64_t i, int64_t) { parts[i] = i + 1; });
          for (int64_t p : parts) sums[t] += p;
        }
      });
    }
    for (auto& c : callers) c.join();
    for (int64_t s : sums) CHECK(s == 200 * (16 * 17 / 2));
  }
}

TEST_CASE("an exception in a task reaches the caller after the job, and the pool goes on",
          "[threads]") {
  for (int threads : {1, 2, 3}) {
    ThreadCount guard(threads);
    INFO(threads << " threads");
    for (int64_t thrower : {0, 1, 5}) {
      INFO("task " << thrower << " throws");
      std::atomic<int> running{0}, finished{0};
      try {
        run_tasks(8, [&, thrower](int64_t i, int64_t) {
          running.fetch_add(1);
          if (i == thrower) {
            running.fetch_sub(1);
            throw std::runtime_error("task " + std::to_string(i) + " failed");
          }
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          finished.fetch_add(1);
          running.fetch_sub(1);
        });
        FAIL("expected the task's exception");
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "task " + std::to_string(thrower) + " failed");
      }
      // Nothing still runs once the exception has arrived.
      CHECK(running.load() == 0);
      CHECK(finished.load() <= 7);
    }
    // Two tasks throwing: one exception arrives.
    CHECK_THROWS_WITH(run_tasks(4,
                                [](int64_t i, int64_t) {
                                  if (i >= 2) throw std::runtime_error("late task failed");
                                }),
                      "late task failed");
    // The pool still runs whole jobs afterwards.
    std::vector<std::atomic<int>> runs(64);
    run_tasks(64, [&runs](int64_t i, int64_t) { runs[i].fetch_add(1); });
    for (auto& r : runs) REQUIRE(r.load() == 1);
  }
}

TEST_CASE("parallel_for covers 0..n once in chunks of at least the grain", "[threads]") {
  for (int threads : {1, 2, 5}) {
    ThreadCount guard(threads);
    for (int64_t n : {0, 1, 15, 8192, 8193, 100000}) {
      for (int64_t grain : {1, 1000, 8192}) {
        INFO(threads << " threads, n " << n << ", grain " << grain);
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> chunks{0}, short_chunks{0};
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          chunks.fetch_add(1);
          if (e - b < std::min(grain, n)) short_chunks.fetch_add(1);
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
        CHECK(short_chunks.load() == 0);
        CHECK(chunks.load() <= threads);
        CHECK(chunks.load() ==
              (n == 0 ? 0 : std::min<int64_t>(threads, std::max<int64_t>(1, n / grain))));
      }
    }
  }
}
