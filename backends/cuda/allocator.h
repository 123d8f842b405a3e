// The CUDA caching allocator.
//
// cudaMalloc and cudaFree are slow (cudaFree also synchronizes the whole
// device), so blocks are never returned to the driver during normal work:
// a freed block goes to a free list of its size class and the next request of
// that class reuses it. Sizes are rounded up to classes:
//   up to 1 MiB   the next power of two, at least 512 bytes
//   above 1 MiB   the next multiple of 1 MiB; a cached block up to 1/8
//                 larger may also serve the request
// Reuse is safe without events because all work runs on the backend's single
// stream: a kernel that uses a reused block is queued after every kernel that
// used it before.
//
// Graph capture: a replayed CUDA graph reads and writes the addresses it was
// captured with. So while any graph is alive (or a capture is running), blocks
// that were freed during a capture, or that were allocated during one, are not
// handed out again; they are held until the last graph is destroyed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"

namespace tide::cuda {

class CachingAllocator {
 public:
  explicit CachingAllocator(Device device) : device_(device) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Throws tide::Error naming the size and the CUDA error when the device is
  // out of memory even after the cache is emptied.
  void* allocate(size_t nbytes);
  void deallocate(void* ptr, size_t nbytes);

  MemoryStats stats() const;
  void reset_peak();
  // cudaFree for every free cached block (not those held for graphs).
  void empty_cache();

  // Graph bookkeeping: a capture begins or ends (graph_created(true) when it
  // produced a graph), a graph is destroyed.
  void begin_capture();
  void end_capture(bool graph_created);
  void graph_destroyed();

  // The size class of a request (see the file comment).
  static size_t round_size(size_t nbytes);

 private:
  struct Block {
    size_t size = 0;       // class size actually reserved
    size_t requested = 0;  // what allocate() was asked for
    bool from_capture = false;
  };

  void* take_cached(size_t size, size_t& block_size);
  void free_cached_locked();

  Device device_;
  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // size -> free block
  std::unordered_map<void*, Block> live_;
  std::vector<std::pair<void*, size_t>> held_;  // freed, reserved for graphs
  bool capturing_ = false;
  int graphs_alive_ = 0;  // instantiated graphs, plus one while capturing

  size_t bytes_in_use_ = 0;
  size_t peak_bytes_in_use_ = 0;
  size_t bytes_cached_ = 0;  // free_ plus held_
  uint64_t num_allocations_ = 0;
};

}  // namespace tide::cuda
