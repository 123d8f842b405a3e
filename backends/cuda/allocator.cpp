// The CUDA caching allocator (see allocator.h).
#include "backends/cuda/allocator.h"

#include <cuda_runtime_api.h>

#include "backends/cuda/check.h"

namespace tide::cuda {

namespace {

constexpr size_t kMinBlock = 512;
constexpr size_t kLargeBlock = size_t{1} << 20;

}  // namespace

size_t CachingAllocator::round_size(size_t nbytes) {
  if (nbytes <= kMinBlock) return kMinBlock;
  if (nbytes <= kLargeBlock) {
    size_t size = kMinBlock;
    while (size < nbytes) size <<= 1;
    return size;
  }
  return (nbytes + kLargeBlock - 1) / kLargeBlock * kLargeBlock;
}

CachingAllocator::~CachingAllocator() {
  // The process-wide backend is never destroyed (it would outlive the CUDA
  // runtime at exit); this runs only for backends made by tests.
  std::lock_guard<std::mutex> lock(mutex_);
  free_cached_locked();
}

void* CachingAllocator::take_cached(size_t size, size_t& block_size) {
  auto it = free_.lower_bound(size);
  if (it == free_.end()) return nullptr;
  // Small classes must match exactly; a large block may be up to 1/8 bigger.
  const size_t limit = size < kLargeBlock ? size : size + size / 8;
  if (it->first > limit) return nullptr;
  void* ptr = it->second;
  block_size = it->first;
  free_.erase(it);
  bytes_cached_ -= block_size;
  return ptr;
}

void* CachingAllocator::allocate(size_t nbytes) {
  const size_t size = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mutex_);
  size_t block_size = size;
  void* ptr = take_cached(size, block_size);
  if (ptr == nullptr) {
    cudaError_t status = cudaMalloc(&ptr, size);
    if (status == cudaErrorMemoryAllocation && !capturing_) {
      // Give the cached blocks back to the driver and try once more.
      (void)cudaGetLastError();
      free_cached_locked();
      status = cudaMalloc(&ptr, size);
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();  // clear the error so later calls do not see it
      fail(
          "allocate: cannot allocate {} bytes ({:.2f} GiB) on {}: {} ({}); {} bytes in use, {} "
          "cached",
          nbytes, static_cast<double>(nbytes) / (1024.0 * 1024.0 * 1024.0), device_,
          cudaGetErrorName(status), cudaGetErrorString(status), bytes_in_use_, bytes_cached_);
    }
  }
  live_[ptr] = Block{block_size, nbytes, capturing_};
  bytes_in_use_ += nbytes;
  if (bytes_in_use_ > peak_bytes_in_use_) peak_bytes_in_use_ = bytes_in_use_;
  ++num_allocations_;
  return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  TIDE_CHECK(it != live_.end(), "deallocate: {} does not own pointer {} ({} bytes)", device_, ptr,
             nbytes);
  const Block block = it->second;
  live_.erase(it);
  bytes_in_use_ -= block.requested;
  bytes_cached_ += block.size;
  if (graphs_alive_ > 0 && (capturing_ || block.from_capture)) {
    held_.emplace_back(ptr, block.size);
  } else {
    free_.emplace(block.size, ptr);
  }
}

MemoryStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  MemoryStats stats;
  stats.bytes_in_use = bytes_in_use_;
  stats.peak_bytes_in_use = peak_bytes_in_use_;
  stats.bytes_cached = bytes_cached_;
  stats.num_allocations = num_allocations_;
  return stats;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  peak_bytes_in_use_ = bytes_in_use_;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  TIDE_CHECK(!capturing_, "empty_cache: not allowed during graph capture");
  free_cached_locked();
}

void CachingAllocator::free_cached_locked() {
  // cudaFree waits for the device, so blocks still used by queued kernels are
  // safe to release.
  for (const auto& [size, ptr] : free_) {
    cudaFree(ptr);
    bytes_cached_ -= size;
  }
  free_.clear();
}

void CachingAllocator::begin_capture() {
  std::lock_guard<std::mutex> lock(mutex_);
  TIDE_CHECK(!capturing_, "begin_capture: a capture is already running on {}", device_);
  capturing_ = true;
  ++graphs_alive_;
}

void CachingAllocator::end_capture(bool graph_created) {
  std::lock_guard<std::mutex> lock(mutex_);
  capturing_ = false;
  if (!graph_created) --graphs_alive_;
  if (graphs_alive_ == 0) {  // a failed capture with no other graph: release now
    for (const auto& [ptr, size] : held_) free_.emplace(size, ptr);
    held_.clear();
  }
}

void CachingAllocator::graph_destroyed() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (--graphs_alive_ > 0) return;
  for (const auto& [ptr, size] : held_) free_.emplace(size, ptr);
  held_.clear();
  // Blocks from captures that are still alive become ordinary blocks.
  for (auto& [ptr, block] : live_) block.from_capture = false;
}

}  // namespace tide::cuda
