// The CPU backend singleton and its memory primitives.
#include "backends/cpu/cpu_backend.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace tide::cpu {

CpuBackend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

namespace {

constexpr size_t kAlignment = 64;  // a cache line, and what AVX-512 loads like

size_t physical_memory_bytes() {
  static const size_t bytes = [] {
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page_size > 0 ? static_cast<size_t>(pages) * page_size : SIZE_MAX;
  }();
  return bytes;
}

// A number from a one-line file such as /sys/fs/cgroup/memory.max; false if
// the file is missing or holds something else ("max").
bool read_number_file(const char* path, size_t& value) {
  std::ifstream file(path);
  unsigned long long number = 0;
  if (!(file >> number)) return false;
  value = static_cast<size_t>(number);
  return true;
}

// Memory the kernel can still give this process: MemAvailable plus free
// swap (/proc/meminfo), and no more than its cgroup's limit leaves. SIZE_MAX
// where the system does not say.
size_t available_memory_bytes() {
  size_t available = SIZE_MAX;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  size_t mem = 0, swap = 0;
  bool found = false;
  while (std::getline(meminfo, line)) {
    unsigned long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) {
      mem = static_cast<size_t>(kib) * 1024;
      found = true;
    } else if (std::sscanf(line.c_str(), "SwapFree: %llu kB", &kib) == 1) {
      swap = static_cast<size_t>(kib) * 1024;
    }
  }
  if (found) available = mem + swap;
  size_t limit = 0, current = 0;
  if (read_number_file("/sys/fs/cgroup/memory.max", limit) &&
      read_number_file("/sys/fs/cgroup/memory.current", current))
    available = std::min(available, limit > current ? limit - current : 0);
  return available;
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

[[noreturn]] void fail_allocation(size_t nbytes) {
  fail("allocate: cannot allocate {} bytes ({:.2f} GiB) on cpu", nbytes,
       static_cast<double>(nbytes) / kGiB);
}

// Size classes of the large-block cache: requests of kLargeBlock bytes or more
// are rounded up to a multiple of 1/8 of the next power of two (so the waste
// stays under 25%), and a training loop's repeated shapes hit the same class.
size_t large_class_size(size_t nbytes) {
  size_t pow2 = std::bit_ceil(nbytes);
  size_t granule = std::max<size_t>(pow2 / 8, 4096);
  return (nbytes + granule - 1) / granule * granule;
}

void* malloc_aligned(size_t nbytes) {
  void* raw = std::malloc(nbytes + kAlignment);
  if (raw == nullptr) [[unlikely]]
    fail_allocation(nbytes);
  // malloc returns 16-byte aligned memory, so there are 16..64 spare bytes
  // before the aligned address: room for the header (malloc's own pointer).
  auto aligned = (reinterpret_cast<uintptr_t>(raw) + kAlignment) & ~(kAlignment - 1);
  reinterpret_cast<void**>(aligned)[-1] = raw;
  return reinterpret_cast<void*>(aligned);
}

void free_aligned(void* ptr) {
  std::free(static_cast<void**>(ptr)[-1]);
}

}  // namespace

// Small blocks: one plain malloc each, over-allocated by 64 bytes for
// alignment; they come from glibc's per-thread cache (about 20 ns for a
// malloc/free pair). Large blocks (>= kLargeBlock, 32 KiB): glibc serves them with
// fresh mmap'd or trimmed pages, and touching fresh pages costs a page fault
// per 4 KiB (15% of an exact-likelihood solve was page faults), so freed large
// blocks are kept in per-size-class free lists, up to kMaxCachedBytes in all,
// and handed out again.
void* CpuBackend::allocate(size_t nbytes) {
  // Linux overcommits, so malloc may "succeed" for sizes that can never be
  // backed; refuse anything larger than the machine's memory up front.
  if (nbytes > physical_memory_bytes()) [[unlikely]]
    fail_allocation(nbytes);
  void* block = nullptr;
  if (nbytes >= kLargeBlock) {
    const size_t size = large_class_size(nbytes);
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(size);
      if (it != cache_.end() && !it->second.empty()) {
        block = it->second.back();
        it->second.pop_back();
        bytes_cached_ -= size;
      }
    }
    if (block == nullptr) {
      // Linux overcommits: a request the machine cannot back would "succeed"
      // and the process be killed later, when the pages are touched. So
      // large requests are checked against the memory still available, after
      // giving this allocator's cached blocks back if they are in the way.
      if (size >= kCheckAvailableBytes && size > available_memory_bytes()) {
        empty_cache();
        const size_t available = available_memory_bytes();
        if (size > available)
          fail(
              "allocate: cannot allocate {} bytes ({:.2f} GiB) on cpu: {:.2f} GiB of memory "
              "available",
              nbytes, static_cast<double>(nbytes) / kGiB, static_cast<double>(available) / kGiB);
      }
      block = malloc_aligned(size);
    }
  } else {
    block = malloc_aligned(nbytes);
  }
  size_t in_use = bytes_in_use_.fetch_add(nbytes, std::memory_order_relaxed) + nbytes;
  size_t peak = peak_bytes_in_use_.load(std::memory_order_relaxed);
  while (in_use > peak &&
         !peak_bytes_in_use_.compare_exchange_weak(peak, in_use, std::memory_order_relaxed)) {
  }
  num_allocations_.fetch_add(1, std::memory_order_relaxed);
  return block;
}

void CpuBackend::deallocate(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  bytes_in_use_.fetch_sub(nbytes, std::memory_order_relaxed);
  if (nbytes >= kLargeBlock) {
    const size_t size = large_class_size(nbytes);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (bytes_cached_ + size <= kMaxCachedBytes) {
      cache_[size].push_back(ptr);
      bytes_cached_ += size;
      return;
    }
  }
  free_aligned(ptr);
}

void CpuBackend::empty_cache() {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  for (auto& [size, blocks] : cache_)
    for (void* block : blocks) free_aligned(block);
  cache_.clear();
  bytes_cached_ = 0;
}

MemoryStats CpuBackend::memory_stats() const {
  MemoryStats stats;
  stats.bytes_in_use = bytes_in_use_.load(std::memory_order_relaxed);
  stats.peak_bytes_in_use = peak_bytes_in_use_.load(std::memory_order_relaxed);
  stats.num_allocations = num_allocations_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  stats.bytes_cached = bytes_cached_;
  return stats;
}

void CpuBackend::reset_peak_memory_stats() {
  peak_bytes_in_use_.store(bytes_in_use_.load(std::memory_order_relaxed),
                           std::memory_order_relaxed);
}

void CpuBackend::copy_to_host(void* host_dst, const void* src, size_t nbytes) {
  if (nbytes > 0) std::memcpy(host_dst, src, nbytes);
}

void CpuBackend::copy_from_host(void* dst, const void* host_src, size_t nbytes) {
  if (nbytes > 0) std::memcpy(dst, host_src, nbytes);
}

}  // namespace tide::cpu
