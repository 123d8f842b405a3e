// The CPU backend singleton and its memory primitives.
#include "backends/cpu/cpu_backend.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

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

[[noreturn]] void fail_allocation(size_t nbytes) {
  fail("allocate: cannot allocate {} bytes ({:.2f} GiB) on cpu", nbytes,
       static_cast<double>(nbytes) / (1024.0 * 1024.0 * 1024.0));
}

}  // namespace

// One plain malloc per block, over-allocated by 64 bytes: the aligned pointer
// handed out keeps malloc's own pointer in the 8 bytes just before it. Small
// blocks then come from glibc's per-thread cache (about 20 ns for a
// malloc/free pair), which made a separate free-list cache unnecessary.
void* CpuBackend::allocate(size_t nbytes) {
  // Linux overcommits, so malloc may "succeed" for sizes that can never be
  // backed; refuse anything larger than the machine's memory up front.
  if (nbytes > physical_memory_bytes()) [[unlikely]]
    fail_allocation(nbytes);
  void* raw = std::malloc(nbytes + kAlignment);
  if (raw == nullptr) [[unlikely]]
    fail_allocation(nbytes);
  // malloc returns 16-byte aligned memory, so there are 16..64 spare bytes
  // before the aligned address: room for the header.
  auto aligned = (reinterpret_cast<uintptr_t>(raw) + kAlignment) & ~(kAlignment - 1);
  reinterpret_cast<void**>(aligned)[-1] = raw;
  return reinterpret_cast<void*>(aligned);
}

void CpuBackend::deallocate(void* ptr, size_t /*nbytes*/) {
  if (ptr != nullptr) std::free(static_cast<void**>(ptr)[-1]);
}

void CpuBackend::copy_to_host(void* host_dst, const void* src, size_t nbytes) {
  if (nbytes > 0) std::memcpy(host_dst, src, nbytes);
}

void CpuBackend::copy_from_host(void* dst, const void* host_src, size_t nbytes) {
  if (nbytes > 0) std::memcpy(dst, host_src, nbytes);
}

}  // namespace tide::cpu
